"""Losses of eq. (9): hand-computed mu-law L1 and eq. (10), VGG-16 loading (offline) and perceptual loss."""
from __future__ import annotations

import math
import urllib.error
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from smarthdr_cli.errors import InputError
from smarthdr_cli.tonemap import mu_law
from smarthdr_cli.train import losses
from smarthdr_cli.train.losses import PerceptualLoss, VGG16Features, load_vgg16, mu_l1, uncertainty_loss

CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)


def row(*values: float, requires_grad: bool = False) -> torch.Tensor:
    """A 1 x 1 x 1 x n image."""
    return torch.tensor(values, dtype=torch.float64).view(1, 1, 1, -1).requires_grad_(requires_grad)


def t(value: float) -> float:
    return math.log1p(5000 * value) / math.log1p(5000)


def test_mu_l1_by_hand_with_and_without_masks():
    pred, target = row(0.01, 1.0), row(0.0, 0.5)
    first, second = t(0.01), 1.0 - t(0.5)
    assert mu_l1(pred, target).item() == pytest.approx((first + second) / 2)
    assert mu_l1(pred, target, row(1, 0)).item() == pytest.approx(first)
    assert mu_l1(pred, target, torch.tensor([[[[False, True]]]])).item() == pytest.approx(second)
    assert mu_l1(pred, target, row(1, 1)).item() == pytest.approx((first + second) / 2)


def test_mask_broadcasts_over_channels_and_averages_kept_elements_only():
    pred = torch.zeros(2, 3, 2, 2)
    target = torch.zeros(2, 3, 2, 2)
    target[0, :, 0, 0] = 1.0  # one kept pixel differs by 1 in all three channels
    target[1, :, 1, 1] = 1.0  # a dropped pixel differs too
    mask = torch.zeros(2, 1, 2, 2)
    mask[0, 0, 0, 0] = mask[0, 0, 0, 1] = 1.0
    assert mu_l1(pred, target, mask).item() == pytest.approx(0.5)  # 3 of 6 kept elements differ by 1


def test_all_zero_mask_gives_a_connected_zero():
    pred = row(0.2, 0.7, requires_grad=True)
    sigma = row(0.3, 0.3, requires_grad=True)
    for loss in (mu_l1(pred, row(0.0, 0.0), row(0, 0)), uncertainty_loss(pred, row(0.0, 0.0), sigma, row(0, 0))):
        assert loss.item() == 0.0 and loss.grad_fn is not None
        loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred)) and torch.equal(sigma.grad, torch.zeros_like(sigma))


def test_uncertainty_loss_by_hand_and_eps():
    pred, target, sigma = row(0.5, 0.0), row(0.0, 0.0), row(0.5, 0.25)
    pixel = [0.25 / (2 * 0.25) + 0.5 * math.log(0.25), 0.0 + 0.5 * math.log(0.0625)]
    assert uncertainty_loss(pred, target, sigma, eps=0.0, domain="linear").item() == pytest.approx(sum(pixel) / 2)
    assert uncertainty_loss(pred, target, sigma, row(1, 0), eps=0.0, domain="linear").item() == pytest.approx(pixel[0])
    var = 0.25 + 0.1
    with_eps = 0.25 / (2 * var) + 0.5 * math.log(var)
    assert uncertainty_loss(pred, target, sigma, row(1, 0), eps=0.1, domain="linear").item() == pytest.approx(with_eps)
    # the default eps keeps a collapsed sigma finite
    assert math.isfinite(uncertainty_loss(pred, target, row(0.0, 0.0)).item())


def test_uncertainty_loss_mu_domain_compares_tone_mapped_values():
    pred, target, sigma = row(0.05, 0.3), row(0.01, 0.4), row(0.2, 0.1)
    expected = uncertainty_loss(mu_law(pred), mu_law(target), sigma, domain="linear")
    assert uncertainty_loss(pred, target, sigma).item() == pytest.approx(expected.item())
    with pytest.raises(InputError, match="domain"):
        uncertainty_loss(pred, target, sigma, domain="log")


def test_uncertainty_gradient_reaches_sigma_only_where_the_mask_keeps():
    pred = row(0.3, 0.6, requires_grad=True)
    sigma = row(0.2, 0.2, requires_grad=True)
    uncertainty_loss(pred, row(0.1, 0.1), sigma, row(1, 0)).backward()
    assert sigma.grad[..., 0].item() != 0.0 and sigma.grad[..., 1].item() == 0.0
    assert pred.grad[..., 0].item() != 0.0 and pred.grad[..., 1].item() == 0.0


def test_eq10_is_smallest_where_sigma_squared_matches_the_squared_error():
    error, eps = 0.3, 1e-6
    best = math.sqrt(error**2 - eps)
    sigmas = torch.linspace(0.001, 0.9, 8991, dtype=torch.float64)  # steps of 1e-4
    per_sigma = [uncertainty_loss(row(error), row(0.0), s.view(1, 1, 1, 1), eps=eps, domain="linear") for s in sigmas]
    assert sigmas[int(torch.stack(per_sigma).argmin())].item() == pytest.approx(best, abs=2e-4)
    at = torch.tensor(best, dtype=torch.float64, requires_grad=True)
    uncertainty_loss(row(error), row(0.0), at.view(1, 1, 1, 1), eps=eps, domain="linear").backward()
    assert abs(at.grad.item()) < 1e-9  # analytic minimum: zero gradient


# --- VGG-16 -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg() -> VGG16Features:
    torch.manual_seed(0)
    return VGG16Features()


def torchvision_state(vgg: VGG16Features) -> dict[str, torch.Tensor]:
    """What torchvision's vgg16().state_dict() holds: features up to conv5_3 plus a classifier."""
    state = dict(vgg.state_dict())
    for index in (24, 26, 28):
        state[f"features.{index}.weight"] = torch.zeros(512, 512, 3, 3)
        state[f"features.{index}.bias"] = torch.zeros(512)
    state["classifier.0.weight"] = torch.zeros(4, 2)
    state["classifier.0.bias"] = torch.zeros(4)
    return state


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_vgg_has_torchvisions_names_and_is_frozen(vgg):
    expected = [f"features.{i}.{kind}" for i in CONV_INDICES for kind in ("weight", "bias")]
    assert list(vgg.state_dict()) == expected
    assert len(vgg.features) == 23  # stops after relu4_3
    assert not any(p.requires_grad for p in vgg.parameters())
    assert not vgg.train().training


def test_load_pth_full_torchvision_dict_and_safetensors_features_only(vgg, tmp_path: Path):
    pth = tmp_path / "vgg16.pth"
    torch.save(torchvision_state(vgg), pth)
    assert_same_weights(load_vgg16(pth), vgg)
    features_only = {k.removeprefix("features."): v.contiguous() for k, v in vgg.state_dict().items()}
    sft = tmp_path / "vgg16.safetensors"
    save_file(features_only, str(sft))
    loaded = load_vgg16(sft, download=False)
    assert_same_weights(loaded, vgg)
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_bad_weight_files_are_input_errors_naming_the_file(vgg, tmp_path: Path):
    state = dict(vgg.state_dict())
    state["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(state, tmp_path / "shapes.pth")
    with pytest.raises(InputError, match="shapes.pth"):
        load_vgg16(tmp_path / "shapes.pth")
    state = dict(vgg.state_dict())
    del state["features.21.bias"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "missing.safetensors"))
    with pytest.raises(InputError, match="missing.safetensors.*features.21.bias"):
        load_vgg16(tmp_path / "missing.safetensors")
    torch.save({"features.0.weight": "not a tensor"}, tmp_path / "strings.pt")
    with pytest.raises(InputError, match="strings.pt"):
        load_vgg16(tmp_path / "strings.pt")
    torch.save(Path("an arbitrary pickled object"), tmp_path / "pickle.pth")
    with pytest.raises(InputError, match="pickle.pth"):  # weights_only: never unpickled
        load_vgg16(tmp_path / "pickle.pth")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(InputError, match="garbage.safetensors"):
        load_vgg16(tmp_path / "garbage.safetensors")
    with pytest.raises(InputError, match="weights.bin"):
        (tmp_path / "weights.bin").write_bytes(b"")
        load_vgg16(tmp_path / "weights.bin")
    with pytest.raises(InputError, match="no such"):
        load_vgg16(tmp_path / "absent.pth")


def test_download_failure_and_no_download_are_one_line_input_errors(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(InputError) as info:
        load_vgg16(None)
    message = str(info.value)
    assert "--vgg-weights" in message and "--no-perceptual" in message and "no route to host" in message
    assert "\n" not in message

    def hash_mismatch(*args, **kwargs):
        raise RuntimeError('invalid hash value (expected "397923af", got "deadbeef")')

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", hash_mismatch)
    with pytest.raises(InputError, match="invalid hash"):
        load_vgg16(None)

    def must_not_run(*args, **kwargs):
        raise AssertionError("download attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", must_not_run)
    with pytest.raises(InputError, match="--no-perceptual"):
        load_vgg16(None, download=False)


def test_download_uses_torchvisions_file_with_hash_check(vgg, monkeypatch):
    calls = []

    def fake(url, **kwargs):
        calls.append((url, kwargs))
        return torchvision_state(vgg)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake)
    assert_same_weights(load_vgg16(None), vgg)
    (url, kwargs), = calls
    assert url == losses.VGG16_URL == "https://download.pytorch.org/models/vgg16-397923af.pth"
    assert kwargs["check_hash"] is True and kwargs["weights_only"] is True


def test_perceptual_loss_zero_iff_equal_and_masked_region_ignored(vgg):
    loss = PerceptualLoss(vgg)
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, 24, 20, generator=generator)
    pred = target.clone()
    assert loss(pred, target).item() == 0.0
    pred[:, :, 4:10, 6:12] = torch.rand(2, 3, 6, 6, generator=generator)
    pred.requires_grad_(True)
    value = loss(pred, target)
    assert value.item() > 0.0
    value.backward()
    assert pred.grad.abs().sum() > 0 and all(p.grad is None for p in vgg.parameters())
    mask = torch.ones(2, 1, 24, 20)
    mask[:, :, 4:10, 6:12] = 0.0
    assert loss(pred, target, mask).item() == 0.0
    assert loss(pred, target, mask.bool()).item() == 0.0


def test_half_precision_inputs_are_lossed_in_float32():
    pred, target = torch.rand(1, 3, 4, 4).bfloat16(), torch.rand(1, 3, 4, 4).bfloat16()
    sigma = torch.full((1, 3, 4, 4), 1e-4).half()  # eq. (10) would overflow float16 here
    for loss in (mu_l1(pred, target), uncertainty_loss(pred, target, sigma)):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert mu_l1(pred, target).item() == pytest.approx(mu_l1(pred.float(), target.float()).item())
