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

Min-max is set by the extreme tail: at bench scale the normalised pixel scores sat at p50 0.08,
p90 0.12, p99 0.46 (issue 15), so tau 0.4 kept ~97% and the pixel mask was inert. The "rank" normalisation
replaces a score by its quantile among all scores of the pass (from a fixed-size sample kept by
`collect_stats`), so tau is the share dropped whatever the distribution. Each `SceneMask` carries
a histogram of its normalised scores per level, so a pass can report their quantiles
(`score_quantiles`) and show whether a threshold bites.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from smarthdr_cli.bracket import GAMMA
from smarthdr_cli.data.grid import grid_origins
from smarthdr_cli.errors import InputError
from smarthdr_cli.preprocess import gamma_correct
from smarthdr_cli.tonemap import MU, mu_law

NORMALISATIONS = ("global", "scene", "rank")
# "rank": at most this many scores per level are kept from a pass (exact below it, a uniform
# random sample above it: the quantiles are then off by ~0.5/sqrt(RANK_SAMPLE), about 0.0005).
RANK_SAMPLE = 1 << 20
# Bins over [0, 1] of each scene's normalised scores per level: quantiles to ~0.001.
HIST_BINS = 1000


@dataclass(frozen=True)
class MaskSettings:
    """Which levels run, their thresholds and the patch grid (the seed: 0.4, 0.4, 64 px, stride 32).

    `normalisation` "global" is the seed's (one range over all pseudo labels of a pass);
    "scene" normalises each pseudo label by its own range, so every scene loses its worst part;
    "rank" replaces each score by its quantile among all scores of the pass at its level (patch
    means among all patches, pixel scores among all pixels; the share of them strictly below), so
    tau is the share dropped: tau 0.4 keeps the best 60% of patches and of pixels whatever the
    distribution of the judge's sigma. Tied scores share one quantile, so a tie that straddles
    the cut is kept whole (at most tau is dropped; all-equal scores keep everything).
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
    """The ranges of one pass over all pseudo labels: per-pixel scores and per-patch means.

    For "rank" also a sorted sample of each level's scores (all of them up to `RANK_SAMPLE`, a
    uniform random subset beyond), from which a score's quantile in the pass is read; None for
    the other normalisations and for a disabled level. Equality compares the ranges only.
    """

    pixel_min: float
    pixel_max: float
    patch_min: float
    patch_max: float
    pixel_sample: np.ndarray | None = field(default=None, compare=False, repr=False)
    patch_sample: np.ndarray | None = field(default=None, compare=False, repr=False)


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
    # (HIST_BINS,) int64 counts of the normalised scores over [0, 1] per enabled level, for
    # `score_quantiles`; None where the level is off or the masks were read back from disk
    patch_hist: np.ndarray | None = None
    pixel_hist: np.ndarray | None = None


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


class _Reservoir:
    """A uniform random sample of at most `size` values of a stream of arrays (bottom-k of random
    keys), in bounded memory however long the pass; seeded, so a pass always masks the same way."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.keys = np.empty(0, dtype=np.float32)
        self.values: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values).reshape(-1)
        keys = self.rng.random(values.size, dtype=np.float32)
        if self.keys.size == self.size:  # full: only keys below the current k-th can enter
            below = keys < self.keys.max()
            keys, values = keys[below], values[below]
        if self.values is not None:
            keys, values = np.concatenate([self.keys, keys]), np.concatenate([self.values, values])
        if keys.size > self.size:
            chosen = np.argpartition(keys, self.size - 1)[: self.size]
            keys, values = keys[chosen], values[chosen]
        self.keys, self.values = keys, values

    def sorted(self) -> np.ndarray:
        assert self.values is not None
        return np.sort(self.values)


def collect_stats(score_maps: Iterable[np.ndarray], settings: MaskSettings, sample_size: int = RANK_SAMPLE) -> MaskStats:
    """First pass: the ranges of the pixel scores and patch means over all (H, W) score maps
    (and, for "rank", a sample of at most `sample_size` scores per enabled level)."""
    pixel_lo = patch_lo = np.inf
    pixel_hi = patch_hi = -np.inf
    ranked = settings.normalisation == "rank"
    pixels = _Reservoir(sample_size) if ranked and settings.pixel else None
    patches = _Reservoir(sample_size) if ranked and settings.patch else None
    for scores in score_maps:
        means = patch_means(scores, _origins(scores, settings), settings.size)
        pixel_lo, pixel_hi = min(pixel_lo, float(np.min(scores))), max(pixel_hi, float(np.max(scores)))
        patch_lo, patch_hi = min(patch_lo, float(means.min())), max(patch_hi, float(means.max()))
        if pixels is not None:
            pixels.add(np.asarray(scores, dtype=np.float32))
        if patches is not None:
            patches.add(means)
    if not np.isfinite([pixel_lo, pixel_hi, patch_lo, patch_hi]).all():
        raise InputError("no pseudo labels to mask (or their uncertainty maps are not finite)")
    return MaskStats(
        pixel_lo, pixel_hi, patch_lo, patch_hi,
        pixel_sample=pixels.sorted() if pixels is not None else None, patch_sample=patches.sorted() if patches is not None else None,
    )


def normalise(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Min-max normalisation to [0, 1] (clipped, for values outside a range from another pass).

    A flat range (hi <= lo) maps everything to 0, i.e. below any threshold: with no contrast in
    the uncertainty there is nothing to tell the reliable parts from the others, so all is kept.
    """
    if hi <= lo:
        return np.zeros_like(values)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def rank(values: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """float64 quantile of each value in a sorted `sample`: the share of it strictly below.

    The "rank" normalisation's score; `scene_mask` reaches the same masks and histograms
    without it, by comparing with a few order statistics of the sample (faster on big maps)."""
    return np.searchsorted(sample, values, side="left") / float(sample.size)


def _count_below(share: float, n: int) -> int:
    """The smallest integer m with m >= share * n, robust to the rounding of share * n."""
    x = share * n
    nearest = round(x)
    return int(nearest) if abs(x - nearest) <= 1e-9 * max(n, 1) else int(np.ceil(x))


def _ranked(values: np.ndarray, sample: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep (quantile < 1 - tau) and the histogram of the quantiles, from order statistics.

    With c(v) = #(sample < v): c(v) < m  <=>  v <= sample[m - 1], so the mask is one comparison
    with a cut-off and the histogram's bin j starts at sample[ceil(j n / B) - 1]."""
    n = sample.size
    m = _count_below(1.0 - tau, n)
    keep = values <= sample[m - 1] if m >= 1 else np.zeros(values.shape, dtype=bool)
    starts = np.array([_count_below(j / HIST_BINS, n) for j in range(1, HIST_BINS)])  # each >= 1 for n >= 1
    edges = sample[starts - 1]
    bins = np.searchsorted(edges, np.asarray(values).reshape(-1), side="left")
    return keep, np.bincount(bins, minlength=HIST_BINS)


def _level(values: np.ndarray, level: str, stats: MaskStats | None, settings: MaskSettings) -> tuple[np.ndarray, np.ndarray]:
    """One level's keep mask and the histogram of its normalised scores."""
    tau = settings.tau_patch if level == "patch" else settings.tau_pixel
    if settings.normalisation == "rank":
        sample = getattr(stats, f"{level}_sample", None)
        if sample is None:
            raise ValueError(f"rank normalisation needs the {level} sample of the whole pass (collect_stats with rank)")
        return _ranked(values, sample, tau)  # tau: the share dropped
    if settings.normalisation == "global":
        lo, hi = getattr(stats, f"{level}_min"), getattr(stats, f"{level}_max")
    else:
        lo, hi = values.min(), values.max()
    normalised = normalise(values, float(lo), float(hi))
    return normalised < tau, histogram(normalised)


def histogram(normalised: np.ndarray) -> np.ndarray:
    """(HIST_BINS,) int64 counts of values in [0, 1] (1 in the last bin)."""
    bins = np.minimum((np.asarray(normalised).reshape(-1) * HIST_BINS).astype(np.int64), HIST_BINS - 1)
    return np.bincount(np.maximum(bins, 0), minlength=HIST_BINS)


def score_quantiles(histograms: Sequence[np.ndarray], quantiles: Sequence[float] = (0.5, 0.9, 0.99)) -> list[float] | None:
    """Quantiles of the normalised scores of many scenes from their summed histograms (linear
    within a bin, so within 1 / HIST_BINS); None without any histogram or counts."""
    if not histograms:
        return None
    counts = np.sum(histograms, axis=0, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return None
    cumulative = np.concatenate([[0.0], np.cumsum(counts)])
    result = []
    for q in quantiles:
        target = q * total
        index = int(np.clip(np.searchsorted(cumulative, target, side="left") - 1, 0, HIST_BINS - 1))
        inside = (target - cumulative[index]) / counts[index] if counts[index] > 0 else 0.0
        result.append(float(np.clip((index + inside) / HIST_BINS, 0.0, 1.0)))
    return result


def scene_mask(scores: np.ndarray, stats: MaskStats | None, settings: MaskSettings) -> SceneMask:
    """Second pass: the patch (eq. 11) and pixel (eq. 12) masks of one (H, W) score map.

    `stats` is the range (and for "rank" the score sample) of the whole pass: required for
    "global" and "rank", ignored for "scene", which uses this map's own range.
    """
    if settings.normalisation != "scene" and stats is None:
        raise ValueError(f"{settings.normalisation} normalisation needs the MaskStats of the whole pass (collect_stats)")
    height, width = scores.shape
    origins = _origins(scores, settings)
    patch_keep = np.ones(len(origins), dtype=bool)
    pixel = np.ones((height, width), dtype=bool)
    patch_hist = pixel_hist = None
    if settings.patch:
        patch_keep, patch_hist = _level(patch_means(scores, origins, settings.size), "patch", stats, settings)
    if settings.pixel:
        pixel, pixel_hist = _level(np.asarray(scores, dtype=np.float32), "pixel", stats, settings)
    covered = _coverage(origins[patch_keep], settings.size, height, width)
    kept_fraction = float(np.count_nonzero(covered & pixel)) / float(height * width)
    return SceneMask(origins=origins, patch_keep=patch_keep, pixel=pixel, kept_fraction=kept_fraction, patch_hist=patch_hist, pixel_hist=pixel_hist)


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
