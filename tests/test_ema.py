"""The mean teacher: a frozen copy of the student, then eq. (3) after every student step."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from smarthdr_cli.model import GFHDR
from smarthdr_cli.model.config import PRESETS
from smarthdr_cli.train.ema import ema_update, make_teacher


def student() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    net.train()
    return net


def change(net: nn.Module) -> None:
    """A stand-in for an optimiser step and a forward pass that moves the running statistics."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
        net[1].running_mean.add_(1.0)
        net[1].num_batches_tracked.add_(3)


def test_teacher_is_a_frozen_copy():
    s = student()
    t = make_teacher(s)
    assert not t.training and s.training
    assert all(not p.requires_grad for p in t.parameters()) and all(p.requires_grad for p in s.parameters())
    for (name, a), (_, b) in zip(t.state_dict().items(), s.state_dict().items()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), name


def changed_after_copy():
    """A student, its teacher, the teacher's state, and the student changed after the copy."""
    s = student()
    t = make_teacher(s)
    before = {k: v.clone() for k, v in t.state_dict().items()}
    change(s)
    return s, t, before


def test_one_update_by_hand_and_buffers_copied():
    s, t, before = changed_after_copy()
    ema_update(t, s, 0.75)
    for name, _ in s.named_parameters():
        expected = 0.75 * before[name] + 0.25 * s.state_dict()[name]
        assert torch.allclose(t.state_dict()[name], expected, atol=1e-6, rtol=0), name
    for name, buffer in s.named_buffers():
        assert torch.equal(t.state_dict()[name], buffer), name


def test_alpha_zero_copies_and_alpha_one_keeps():
    s, t, before = changed_after_copy()
    ema_update(t, s, 1.0)
    for name, _ in s.named_parameters():
        assert torch.equal(t.state_dict()[name], before[name]), name
    ema_update(t, s, 0.0)
    for name, value in s.state_dict().items():
        assert torch.equal(t.state_dict()[name], value), name
    assert all(p.grad is None for p in t.parameters())


def test_bad_alpha_and_mismatched_networks():
    s = student()
    with pytest.raises(ValueError):
        ema_update(make_teacher(s), s, 1.5)
    with pytest.raises(ValueError):
        ema_update(nn.Sequential(nn.Linear(3, 2)), nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)), 0.9)


def test_gfhdr_teacher_follows_its_student():
    torch.manual_seed(0)
    s = GFHDR(PRESETS["tiny"])
    t = make_teacher(s)
    with torch.no_grad():
        for p in s.parameters():
            p.add_(0.1)
    ema_update(t, s, 0.999)
    name, value = next(iter(t.named_parameters()))
    assert torch.allclose(value, dict(s.named_parameters())[name] - 0.1 * 0.999, atol=1e-6)
