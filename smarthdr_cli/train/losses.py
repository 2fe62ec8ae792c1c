"""The losses of eq. (9): mu-law L1 (eqs. 5, 7), VGG-16 perceptual (eqs. 6, 8), uncertainty (eq. 10).

All of them compare tone-mapped images (eq. 4), as the seed and GFHDR do: HDR images are seen
after tone mapping, and in the linear domain the few bright pixels would dominate every loss.
Each takes an optional mask (N, 1, H, W) (or anything that broadcasts to the images, bool or
float): the pixel-level mask of eq. (12), which keeps unreliable pseudo-label pixels out of the
losses on pseudo-labeled data.
"""
from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from smarthdr_cli.errors import InputError
from smarthdr_cli.tonemap import MU, mu_law

LAMBDA_V = 0.01  # weight of the perceptual loss in eq. (9), GFHDR's value
UNCERTAINTY_EPS = 1e-6  # added to sigma^2 in both terms of eq. (10)
DOMAINS = ("mu", "linear")
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _precise(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor in at least float32, whatever autocast produced.

    A bfloat16 loss would round every tone-mapped value by up to ~0.4% (PSNR-mu 44 dB is an RMS
    error of 0.006), and float16 overflows in eq. (10) where sigma is small.
    """
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `values` over the kept elements (mask broadcast to `values`, 0 = dropped).

    A mask that keeps nothing gives a zero still attached to the graph of `values`, so that a
    batch whose pseudo labels are all masked out can go through `backward()` like any other.
    """
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype).expand_as(values)
    kept = weights.sum()
    total = (values * weights).sum()
    return total / kept.clamp_min(1e-12)  # nothing kept: total is exactly 0; no host sync to check


def mu_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, mu: float = MU) -> torch.Tensor:
    """Eqs. (5) and (7): mean |T(pred) - T(target)| over the kept pixels, all channels."""
    return masked_mean((mu_law(_precise(pred), mu) - mu_law(_precise(target), mu)).abs(), mask)


def uncertainty_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    sigma: torch.Tensor,
    mask: torch.Tensor | None = None,
    eps: float = UNCERTAINTY_EPS,
    domain: str = "mu",
    mu: float = MU,
) -> torch.Tensor:
    """Eq. (10): mean of (h_pred - h)^2 / (2 sigma^2) + log(sigma^2) / 2 over the kept pixels.

    `sigma` (N, 3, H, W) is the judge's output, in (0, 1) after its sigmoid. The variance is
    sigma^2 + eps in both terms (the seed leaves stability open): a sigmoid that saturates
    towards 0 would otherwise divide by ~1e-18. The default 1e-6 floors sigma at 1e-3, a
    quarter of one 8-bit step of the tone-mapped image, so it never binds where it matters.
    Per pixel the loss is smallest at sigma^2 + eps = (h_pred - h)^2: sigma learns the error.

    `domain` "mu" (default) compares mu-law tone-mapped values (eq. 4), like every other loss:
    the errors and sigma then live on the scale that eqs. (5)-(8), the masks' thresholds and the
    people looking at the images see; "linear" compares the HDR values themselves.
    Gradients reach both `pred` and `sigma`. Like `mu_l1`, computed in (at least) float32.
    """
    if domain not in DOMAINS:
        raise InputError(f"uncertainty loss domain must be one of {', '.join(DOMAINS)}, got {domain!r}")
    pred, target, sigma = _precise(pred), _precise(target), _precise(sigma)
    if domain == "mu":
        pred, target = mu_law(pred, mu), mu_law(target, mu)
    variance = sigma.square() + eps
    per_pixel = (pred - target).square() / (2.0 * variance) + 0.5 * torch.log(variance)
    return masked_mean(per_pixel, mask)


class VGG16Features(nn.Module):
    """VGG-16 (Simonyan and Zisserman 2014) up to relu4_3, laid out as torchvision's `vgg16().features`.

    The parameter names (`features.0.weight` ... `features.21.bias`) are torchvision's, so its
    published ImageNet weights load as they are. Frozen: the loss trains the HDR network only.
    Input: RGB in [0, 1] (tone-mapped images), normalised here with ImageNet's mean and std.
    Output: the activations at relu1_2, relu2_2, relu3_3 and relu4_3 (Johnson et al. 2016).
    """

    LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
    TAPS = (3, 8, 15, 22)  # indices of relu1_2, relu2_2, relu3_3, relu4_3 in `features`

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for spec in self.LAYERS:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(spec), kernel_size=3, padding=1), nn.ReLU()]
                channels = int(spec)
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG16Features":
        """Stays in eval mode whatever its parent does: a fixed feature extractor."""
        return super().train(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = (image - self.mean) / self.std
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.TAPS:
                taps.append(x)
        return taps


class PerceptualLoss(nn.Module):
    """Eqs. (6) and (8): sum over the four VGG-16 layers of the mean L1 between features.

    Both inputs are already tone-mapped (T(.) of eq. 4), in [0, 1]. With a mask, both images are
    multiplied by it before VGG, which removes the dropped pixels' content from the comparison;
    it is an approximation, since a feature's receptive field also reaches kept pixels near the
    masked ones (and sees the same zeros in both images).
    """

    def __init__(self, vgg: VGG16Features) -> None:
        super().__init__()
        self.vgg = vgg

    def forward(self, pred_mu: torch.Tensor, target_mu: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            weights = mask.to(pred_mu.dtype)
            pred_mu, target_mu = pred_mu * weights, target_mu * weights
        with torch.no_grad():  # the target is a label: no graph through VGG for it
            target_features = self.vgg(target_mu)
        pred_features = self.vgg(pred_mu)
        return sum(F.l1_loss(p, t) for p, t in zip(pred_features, target_features))  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def _features_state(state: object, source: str) -> dict[str, torch.Tensor]:
    """The `features.*` tensors up to relu4_3 from a full torchvision state dict or a features-only one."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{source}: not a VGG-16 state dict (a mapping of names to tensors)")
    kept: dict[str, torch.Tensor] = {}
    last = VGG16Features.TAPS[-1]
    for name, tensor in state.items():
        name = str(name)
        if name.startswith("classifier."):
            continue
        if not name.startswith("features."):
            name = "features." + name  # saved from `vgg16().features`
        parts = name.split(".")
        if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) > last:
            continue  # conv5 of the full network: not needed up to relu4_3
        kept[name] = tensor
    return kept


def _build(state: object, source: str) -> VGG16Features:
    vgg = VGG16Features()
    features = _features_state(state, source)
    try:
        missing, unexpected = vgg.load_state_dict(features, strict=False)
    except RuntimeError as exc:  # shape mismatches
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else "shape mismatch"
        raise InputError(f"{source}: not VGG-16 weights ({detail[:160]})") from None
    if missing or unexpected:
        names = ", ".join((list(missing) + list(unexpected))[:3])
        raise InputError(f"{source}: not VGG-16 weights (missing or unexpected {names})")
    return vgg.requires_grad_(False).eval()


def _read_file(path: Path) -> object:
    if not path.is_file():
        raise InputError(f"{path}: no such VGG-16 weights file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"{path}: not a valid safetensors file ({_first_line(exc)})") from None
    if suffix in (".pth", ".pt"):
        try:  # weights_only: tensors and plain containers, never arbitrary pickled objects
            return torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, OSError, EOFError, RuntimeError, ValueError) as exc:
            raise InputError(f"{path}: not a readable PyTorch weights file ({_first_line(exc)})") from None
    raise InputError(f"{path}: VGG-16 weights must be a .safetensors, .pth or .pt file")


def load_vgg16(path: Path | None, *, download: bool = True) -> VGG16Features:
    """The frozen VGG-16 of the perceptual loss, from `path` or torchvision's published weights.

    With no path, torchvision's file (VGG16_URL, ImageNet) is fetched through torch.hub, which
    looks in its cache first ($TORCH_HOME/hub/checkpoints), so one download serves later offline
    runs; the file's sha256 prefix in its name is checked. Any failure, or `download=False`
    with nothing given, is an InputError that tells the user how to go on.
    """
    if path is not None:
        return _build(_read_file(Path(path)), str(path))
    advice = "pass --vgg-weights PATH (torchvision's vgg16-397923af.pth) or train with --no-perceptual"
    if not download:
        raise InputError(f"VGG-16 weights are needed for the perceptual loss; {advice}")
    try:
        state = torch.hub.load_state_dict_from_url(
            VGG16_URL, progress=False, check_hash=True, weights_only=True, map_location="cpu"
        )
    except (urllib.error.URLError, OSError, RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise InputError(f"VGG-16 weights could not be downloaded ({_first_line(exc)}); {advice}") from None
    return _build(state, VGG16_URL)
