"""Bi-level uncertain area masking of pseudo labels, eqs. (11) and (12) of the seed.

Per pseudo label the judge gives a 3-channel uncertainty map sigma. Two levels:

* patch (eq. 11): the mean of the map over each training patch (the grid of
  `data.grid.grid_origins` with the training size and stride), min-max normalised over all
  patches of all pseudo labels of one pass, S_pa; a patch stays in the unlabeled sampling pool
  iff S_pa < tau_pa.
* pixel (eq. 12): the RGB mean of the map per pixel, min-max normalised over all pixels of all
  pseudo labels of the pass, S_pi; a pixel takes part in the losses iff S_pi < tau_pi.

The seed leaves S == tau open; we drop it (strict <). Both levels keep everything when
disabled. The global normalisation needs the range over every pseudo label before any mask can
be made, and 69 full-size maps do not fit in memory as float32, so the API has two passes over
maps that may be memory-mapped: `collect_stats` (ranges), then `scene_mask` per map.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from smarthdr_cli.bracket import GAMMA
from smarthdr_cli.data.grid import grid_origins
from smarthdr_cli.errors import InputError
from smarthdr_cli.preprocess import gamma_correct
from smarthdr_cli.tonemap import MU, mu_law

NORMALISATIONS = ("global", "scene")


@dataclass(frozen=True)
class MaskSettings:
    """Which levels run, their thresholds and the patch grid (the seed: 0.4, 0.4, 64 px, stride 32).

    `normalisation` "global" is the seed's (one range over all pseudo labels of a pass);
    "scene" normalises each pseudo label by its own range, so every scene loses its worst part.
    """

    patch: bool = True
    pixel: bool = True
    tau_patch: float = 0.4
    tau_pixel: float = 0.4
    size: int = 64
    stride: int = 32
    normalisation: str = "global"

    def __post_init__(self) -> None:
        for name in ("tau_patch", "tau_pixel"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise InputError(f"mask threshold {name} must be in (0, 1], got {value}")
        if self.size < 1 or self.stride < 1:
            raise InputError(f"patch size and stride must be positive, got {self.size} and {self.stride}")
        if self.normalisation not in NORMALISATIONS:
            raise InputError(f"mask normalisation must be one of {', '.join(NORMALISATIONS)}, got {self.normalisation!r}")


@dataclass
class MaskStats:
    """The ranges of one pass over all pseudo labels: per-pixel scores and per-patch means."""

    pixel_min: float
    pixel_max: float
    patch_min: float
    patch_max: float


@dataclass
class SceneMask:
    """The masks of one pseudo label.

    `kept_fraction` is the share of the scene's pixels the student can learn from: pixels that
    lie in at least one kept patch AND are kept by the pixel mask, over all H x W pixels.
    """

    origins: np.ndarray  # (N, 2) int64 (top, left) patch corners, `grid_origins`
    patch_keep: np.ndarray  # (N,) bool, eq. (11)
    pixel: np.ndarray  # (H, W) bool, eq. (12)
    kept_fraction: float


def pixel_scores(uncertainty: np.ndarray) -> np.ndarray:
    """(H, W) float32 RGB mean of an (H, W, 3) uncertainty map ((H, W) is taken as already averaged).

    Non-finite values count as maximal uncertainty (1, the top of the judge's sigmoid): one NaN
    would otherwise spread through the integral image to every patch below and right of it.
    """
    if uncertainty.ndim == 3 and uncertainty.shape[-1] == 3:
        scores = uncertainty.mean(axis=-1, dtype=np.float32)
    elif uncertainty.ndim == 2:
        scores = np.asarray(uncertainty, dtype=np.float32)
    else:
        raise ValueError(f"uncertainty map must be HxWx3 or HxW, got shape {uncertainty.shape}")
    if not np.isfinite(scores).all():
        scores = np.nan_to_num(scores, nan=1.0, posinf=1.0, neginf=0.0)
    return scores


def patch_means(scores: np.ndarray, origins: np.ndarray, size: int) -> np.ndarray:
    """(N,) float64 mean of `scores` over each size x size patch, from one float64 integral image."""
    integral = np.zeros((scores.shape[0] + 1, scores.shape[1] + 1), dtype=np.float64)
    np.cumsum(scores, axis=0, dtype=np.float64, out=integral[1:, 1:])
    np.cumsum(integral[1:, 1:], axis=1, out=integral[1:, 1:])
    top, left = origins[:, 0], origins[:, 1]
    sums = integral[top + size, left + size] - integral[top, left + size] - integral[top + size, left] + integral[top, left]
    return sums / float(size * size)


def _origins(scores: np.ndarray, settings: MaskSettings) -> np.ndarray:
    return grid_origins(scores.shape[0], scores.shape[1], settings.size, settings.stride)


def collect_stats(score_maps: Iterable[np.ndarray], settings: MaskSettings) -> MaskStats:
    """First pass: the ranges of the pixel scores and patch means over all (H, W) score maps."""
    pixel_lo = patch_lo = np.inf
    pixel_hi = patch_hi = -np.inf
    for scores in score_maps:
        means = patch_means(scores, _origins(scores, settings), settings.size)
        pixel_lo, pixel_hi = min(pixel_lo, float(np.min(scores))), max(pixel_hi, float(np.max(scores)))
        patch_lo, patch_hi = min(patch_lo, float(means.min())), max(patch_hi, float(means.max()))
    if not np.isfinite([pixel_lo, pixel_hi, patch_lo, patch_hi]).all():
        raise InputError("no pseudo labels to mask (or their uncertainty maps are not finite)")
    return MaskStats(pixel_lo, pixel_hi, patch_lo, patch_hi)


def normalise(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Min-max normalisation to [0, 1] (clipped, for values outside a range from another pass).

    A flat range (hi <= lo) maps everything to 0, i.e. below any threshold: with no contrast in
    the uncertainty there is nothing to tell the reliable parts from the others, so all is kept.
    """
    if hi <= lo:
        return np.zeros_like(values)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def scene_mask(scores: np.ndarray, stats: MaskStats | None, settings: MaskSettings) -> SceneMask:
    """Second pass: the patch (eq. 11) and pixel (eq. 12) masks of one (H, W) score map.

    `stats` is the range of the whole pass (required for "global" normalisation, ignored for
    "scene", which uses this map's own range).
    """
    if settings.normalisation == "global" and stats is None:
        raise ValueError("global normalisation needs the MaskStats of the whole pass (collect_stats)")
    height, width = scores.shape
    origins = _origins(scores, settings)
    patch_keep = np.ones(len(origins), dtype=bool)
    pixel = np.ones((height, width), dtype=bool)
    if settings.patch:
        means = patch_means(scores, origins, settings.size)
        lo, hi = (stats.patch_min, stats.patch_max) if settings.normalisation == "global" else (means.min(), means.max())
        patch_keep = normalise(means, float(lo), float(hi)) < settings.tau_patch
    if settings.pixel:
        lo, hi = (stats.pixel_min, stats.pixel_max) if settings.normalisation == "global" else (scores.min(), scores.max())
        pixel = normalise(np.asarray(scores, dtype=np.float32), float(lo), float(hi)) < settings.tau_pixel
    covered = _coverage(origins[patch_keep], settings.size, height, width)
    kept_fraction = float(np.count_nonzero(covered & pixel)) / float(height * width)
    return SceneMask(origins=origins, patch_keep=patch_keep, pixel=pixel, kept_fraction=kept_fraction)


def _coverage(origins: np.ndarray, size: int, height: int, width: int) -> np.ndarray:
    """(H, W) bool: pixels inside at least one of the patches, by a 2-D difference array."""
    marks = np.zeros((height + 1, width + 1), dtype=np.int32)
    top, left = origins[:, 0], origins[:, 1]
    np.add.at(marks, (top, left), 1)
    np.add.at(marks, (top + size, left), -1)
    np.add.at(marks, (top, left + size), -1)
    np.add.at(marks, (top + size, left + size), 1)
    return marks.cumsum(axis=0).cumsum(axis=1)[:height, :width] > 0


def reference_disagreement(
    pseudo_hdr: np.ndarray,
    reference_ldr: np.ndarray,
    exposure_ref: float,
    gamma: float = GAMMA,
    saturation: float = 0.95,
    mu: float = MU,
) -> np.ndarray:
    """(H, W) float32 score of SMAE's pseudo-label selection (APSS), for the seed's Table 4.

    Our reading of APSS: a pseudo label is trusted where it agrees with the reference frame
    brought to the HDR domain by eq. (1), x_ref^gamma / t_ref, compared after the mu-law (eq. 4)
    as |T(pseudo) - T(x~_ref)| averaged over RGB; pixels where the reference is saturated (any
    channel >= `saturation`) carry no information and score 0, which is the blind spot the seed
    criticises. `exposure_ref` must be on the scale of the HDR labels, as in the network input.
    A drop-in replacement for `pixel_scores(sigma)`: the same bi-level masking applies.
    """
    if pseudo_hdr.shape != reference_ldr.shape or pseudo_hdr.ndim != 3 or pseudo_hdr.shape[-1] != 3:
        raise ValueError(f"pseudo label {pseudo_hdr.shape} and reference {reference_ldr.shape} must both be HxWx3")
    reference = np.asarray(reference_ldr, dtype=np.float32)
    linear = gamma_correct(np.clip(reference, 0.0, None), np.float32(exposure_ref), gamma)
    pseudo = np.clip(np.asarray(pseudo_hdr, dtype=np.float32), 0.0, None)
    disagreement = np.abs(mu_law(pseudo, mu) - mu_law(linear, mu)).mean(axis=-1, dtype=np.float32)
    disagreement[(reference >= saturation).any(axis=-1)] = 0.0
    return pixel_scores(disagreement)
