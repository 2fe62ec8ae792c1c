"""The mean teacher (Tarvainen and Valpola 2017): the teacher is an EMA of the student, eq. (3)."""
from __future__ import annotations

import copy

import torch
from torch import nn


def make_teacher(student: nn.Module) -> nn.Module:
    """The teacher at the start of the semi-supervised stage: a copy of the student (seed, "Details").

    It only ever runs inference (pseudo labels and their uncertainty), so it is frozen and in
    eval mode: no gradients are kept for it and GFHDR's stochastic depth is off.
    """
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """Eq. (3), after each student step: theta_t <- alpha theta_t + (1 - alpha) theta_s.

    Buffers (no gradients, e.g. running statistics) are copied from the student. alpha = 1
    leaves the teacher as it is and alpha = 0 makes it an exact copy (lerp is exact at 0 and 1).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"EMA alpha must be in [0, 1], got {alpha}")
    for (name_t, theta_t), (name_s, theta_s) in zip(teacher.named_parameters(), student.named_parameters(), strict=True):
        if name_t != name_s:
            raise ValueError(f"teacher and student differ: parameter {name_t} vs {name_s}")
        theta_t.lerp_(theta_s.to(theta_t.dtype), 1.0 - alpha)
    for (name_t, buffer_t), (name_s, buffer_s) in zip(teacher.named_buffers(), student.named_buffers(), strict=True):
        if name_t != name_s:
            raise ValueError(f"teacher and student differ: buffer {name_t} vs {name_s}")
        buffer_t.copy_(buffer_s)
