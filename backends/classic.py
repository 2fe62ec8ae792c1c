"""`classic`: a non-learned merge with reference-guided ghost rejection (numpy, OpenCV filters, numba kernels).

Each frame is mapped to radiance by eq. (1), `L_i = x_i ** 2.2 / t_i`, and every frame of the
bracket is averaged with weights `w(x_i) / var(L_i)`: the inverse variance of the radiance each
frame gives there (its LDR noise and quantisation step carried through the curve, and its
sensor noise: about `t` for LDR-limited frames, `t^2` for read-noise-limited ones; for frames
that alignment warped also their registration error at edges), so that each added frame
lowers the noise where it can be trusted to; `w` falls to 0 towards clipping and towards the frame's black
floor. A non-reference pixel joins only where it agrees with the reference:

  each frame's pixel defines an interval of radiances consistent with it,
  `[(x - b - k s)^g, (x + k s)^g] / t` with s the frame's noise level (widened by the sensor's
  linear-domain noise near black) and b its black floor. Both ends can be open: above where the
  frame clips (any brighter radiance gives the same code), below where it sits at its black floor
  (a film base, a scanner's or a JPEG's lifted black, crushed shadows: the pixel says only "at
  most this bright"). A non-reference pixel whose interval misses the reference's shows something
  else (a moving object): it is dropped, together with a small neighbourhood.

So the reference is always used where it is well exposed, and a clipped, noisy or black reference
is filled from the frames that are consistent with it. Where every agreeing frame clips, the
highest clipped radiance among them stays, neutral: clipped channels carry no colour, so the
result turns grey as the shortest agreeing frame approaches clipping (smoothly, not pixel by
pixel). The result never shows content the reference frame contradicts.

The black floor is measured, not assumed to be 0: the level where a frame's darkest codes pile up
(a low percentile holding a noticeable share of the pixels), accepted when it is a floor and not
a flat dark object: two frames of different exposure pile up at the same level, or the pixels
piled there show detail in the next longer frame.
"""
from __future__ import annotations

import contextlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar, Iterable, Iterator, Sequence

import numpy as np

from smarthdr_backends.base import Availability, BackendOptions, MergeResult
from smarthdr_cli.bracket import Bracket, every_frame
from smarthdr_cli.machine import usable_cores

SATURATION = 0.97  # LDR value (gamma domain) from which a pixel counts as clipped
K_SIGMA = 3.0  # how many noise standard deviations two frames may disagree by
RELATIVE_TOLERANCE = 0.12  # exposure-time and response errors of real cameras, in radiance
GHOST_DILATION = 2  # pixels added around every rejected pixel (object edges, JPEG ringing)
BAND_ROWS = 128  # rows merged at a time: 256 took 8% more peak memory at 12 MP (above OpenCV's) and no less time
HALO_ROWS = 12  # the filters' reach: 3x3 mean (1) and dilation (1), ghost dilation (2), the ghost map's Gaussian (8)
GREY_FROM = 0.7  # LDR value of the shortest agreeing 8-bit frame from which highlights start turning neutral
GREY_FROM_DEEP = 0.9  # ... of a 16-bit or RAW frame, whose channels hold their colour up to clipping
STEP_GRID = np.linspace(0.0, 1.0, 513, dtype=np.float32)  # LDR values the quantisation step is tabulated at
# LDR values the per-pixel functions of one value (interval bounds, weights, precision) are
# tabulated at: 1/65535 apart, exact for 16-bit codes and far finer than any noise the merge models.
VALUE_GRID = np.linspace(0.0, 1.0, 65536, dtype=np.float32)
SAMPLE_PIXELS = 2.0e6  # frame statistics (noise, black floor) are taken on at most 2 MP
FLOOR_PERCENTILE = 0.2  # percent of a channel's pixels at or below its candidate black floor
FLOOR_WIDTH = 1.5 / 255  # the pixels within this of that level stand for the floor ...
FLOOR_SHARE = 0.005  # ... and are at least this share of the frame
FLOOR_HIGHEST = 0.35  # no black floor lies above this LDR value (a film base after a response is ~0.2)
FLOOR_MATCH = 3.0 / 255  # two frames' floors this close are one (scene content differs by the exposure ratio)
FLOOR_DETAIL = 8.0 / 255  # least spread (10th to 90th percentile) in the next longer frame that shows hidden detail ...
FLOOR_SPREAD = 4.0  # ... and at least this many times what the floor's own spread and the exposure ratio explain
# Registration error of a frame that alignment warped (px): what the fit leaves and resampling
# blurs, in the precision weight as a variance (this x the radiance gradient)^2. Measured on the
# stratified synthetic test split (bench/README.md, "classic on hand-held scenes"): 1, 2 and 4 px
# all beat 0 by 1.3-2.7 dB on hand-held and standard scenes; 2 is best overall.
REGISTRATION_PX = 2.0
DARK_RAMP = 0.05  # LDR range above floor + noise over which a frame's weight rises to full


@dataclass(frozen=True)
class Noise:
    """A frame's noise: `ldr` in LDR units (quantisation, compression), `linear` in linear units.

    Sensor noise is roughly constant in the linear domain, so in the gamma domain it grows without
    bound towards black; a single LDR-domain level would flag dark pixels of short frames as
    ghosts. Each observation's interval is the union of both.
    """

    ldr: float
    linear: float
    # The quantisation error of the step between neighbouring LDR values the frame holds, on
    # STEP_GRID: an 8-bit frame brought through a response with a toe or a shoulder has codes far
    # apart there, an error no noise estimate sees. None where values are dense (16 bit, warped).
    steps: np.ndarray | None = field(default=None, compare=False, repr=False)

    def ldr_at(self, image: np.ndarray) -> np.ndarray | float:
        """The LDR noise level at each value of `image`: the larger of the noise and the error of
        a uniform quantiser of the local step."""
        import cv2

        if self.steps is None:
            return self.ldr
        # The table's nearest entry (1/512 apart, finer than 8-bit codes; np.interp runs in
        # float64): OpenCV rounds and saturates into 16-bit indices in one pass.
        index = cv2.multiply(np.ascontiguousarray(image, dtype=np.float32), STEP_GRID.size - 1, dtype=cv2.CV_16U)
        return np.maximum(self.steps, np.float32(self.ldr)).take(np.minimum(index, np.uint16(STEP_GRID.size - 1)))


def quantisation_steps(image: np.ndarray) -> np.ndarray | None:
    """Per value on STEP_GRID, the uniform-quantiser standard deviation of the frame's local
    step between populated values (the smaller gap on either side, so a range the scene does not
    fill is no step), the largest over channels; None when the values are dense."""
    pixels = _sample(image).reshape(-1, 3)
    table = np.zeros(STEP_GRID.size, dtype=np.float32)
    for channel in range(3):
        # Values to the nearest 1/65535 (exact for 8- and 16-bit codes) counted in a histogram:
        # np.unique sorts, 10x slower.
        codes = np.rint(np.clip(pixels[:, channel], 0.0, 1.0) * np.float32(65535)).astype(np.uint16)
        counts = np.bincount(codes, minlength=65536)
        populated = np.flatnonzero(counts)
        if populated.size > 1024:
            return None  # not quantised to 8 bits any more (16-bit source, resampled by alignment)
        values = populated[counts[populated] >= 2] / 65535.0  # a stray value between two codes is no level
        if values.size < 2:
            continue
        gaps = np.diff(values)
        local = np.minimum(np.concatenate([gaps[:1], gaps]), np.concatenate([gaps, gaps[-1:]]))
        table = np.maximum(table, np.interp(STEP_GRID, values, local * (0.5 / np.sqrt(3.0))))
    return table


def _with_steps(noise: Noise, image: np.ndarray) -> Noise:
    """`noise` with the frame's quantisation steps, where they anywhere exceed its noise level."""
    steps = quantisation_steps(image)
    return replace(noise, steps=steps) if steps is not None and float(steps.max()) > noise.ldr else noise


@dataclass(frozen=True)
class Floor:
    """A frame's black floor per channel (LDR units): `level` where its darkest codes pile up (0
    without a floor), `edge` the next populated value above it (a pixel at the floor may be
    anything up to there: with a toe or a coarse response that is a long way)."""

    level: np.ndarray
    edge: np.ndarray


def _pow(values: np.ndarray, power: float) -> np.ndarray:
    """`values ** power` for non-negative float32 arrays through OpenCV (SIMD, threaded): numpy's
    float power was half the merge's time at 12 MP."""
    import cv2

    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim == 3 and values.shape[2] > 4:
        return np.power(values, np.float32(power))
    return cv2.pow(values, float(power))


def _grid_index(values: np.ndarray) -> np.ndarray:
    """Each value's nearest entry of VALUE_GRID (rounded half to even, saturated), as numpy's
    native index type; the kernels round the same way (`classic_kernels._grid`)."""
    from smarthdr_backends import classic_kernels as kernels

    values = np.ascontiguousarray(values, dtype=np.float32)
    return kernels.grid_index(values.reshape(-1)).reshape(values.shape)


@dataclass(frozen=True)
class _Bounds:
    """One channel's radiance interval (`_interval`) on VALUE_GRID: at an unfloored pixel, and
    at a floored one (its high end reaches the floor's edge)."""

    low: np.ndarray
    high: np.ndarray
    high_floored: np.ndarray


@dataclass(frozen=True)
class _Tables:
    """A frame's per-pixel functions of one LDR value, on VALUE_GRID, packed as the compiled
    kernels read them (`classic_kernels`): looking a pixel up is one rounding and one load where
    evaluating them cost a dozen element-wise passes and several float powers each."""

    packed_bounds: np.ndarray  # 3 channels x (low, high, high floored) x grid: `_interval` of each channel's 3x3 mean
    pointwise: np.ndarray  # (x^g, dark, weight, trust, variance) x grid, rows as in classic_kernels

    @property
    def bounds(self) -> tuple[_Bounds, ...]:
        return tuple(_Bounds(*channel) for channel in self.packed_bounds)

    @property
    def linear(self) -> np.ndarray:  # x^g
        return self.pointwise[0]

    @property
    def dark(self) -> np.ndarray:  # `_dark_weight`, of the brightest channel
        return self.pointwise[1]

    @property
    def weight(self) -> np.ndarray:  # `_saturation_weight` x `_dark_weight`, of the brightest channel
        return self.pointwise[2]

    @property
    def trust(self) -> np.ndarray:  # `_colour_trust`, of the brightest channel
        return self.pointwise[3]

    @property
    def variance(self) -> np.ndarray:  # `_variance` of x^g, of the grey 3x3 mean
        return self.pointwise[4]


def _tables(exposure: float, noise: Noise, floor: Floor, gamma: float, grey_from: float) -> _Tables:
    none = np.zeros(VALUE_GRID.shape, dtype=bool)
    bounds = np.empty((3, 3, VALUE_GRID.size), dtype=np.float32)
    for channel in range(3):
        plane = _plane(floor, channel)
        bounds[channel, 0], bounds[channel, 1] = _interval(VALUE_GRID, none, none, exposure, noise, plane, gamma)
        bounds[channel, 2] = _interval(VALUE_GRID, none, ~none, exposure, noise, plane, gamma)[1]
    dark = _dark_weight(VALUE_GRID, floor, noise).astype(np.float32)
    pointwise = np.stack([
        _pow(VALUE_GRID, gamma),
        dark,
        (_saturation_weight(VALUE_GRID) * dark).astype(np.float32),
        _colour_trust(VALUE_GRID, grey_from).astype(np.float32),
        _variance(VALUE_GRID, noise, gamma),
    ]).astype(np.float32)
    return _Tables(packed_bounds=bounds, pointwise=np.ascontiguousarray(pointwise))


def _sample(image: np.ndarray) -> np.ndarray:
    """Every step-th pixel of every step-th row: at most SAMPLE_PIXELS (a 12 MP frame gives
    1.35 MP), and a sample's own sample is itself."""
    step = max(1, math.ceil(np.sqrt(image.shape[0] * image.shape[1] / SAMPLE_PIXELS)))
    return np.ascontiguousarray(image[::step, ::step])


def _robust_sigma(values: np.ndarray) -> float:
    """Standard deviation of the residual of a 3x3 median filter (MAD; 1.3 corrects for the filter)."""
    return 1.4826 * float(np.median(np.abs(values))) * 1.3 if values.size >= 100 else 0.0


def noise_level(image: np.ndarray, bits: int = 8, gamma: float = 2.2, floor: Floor | None = None) -> Noise:
    """Robust noise estimate of one frame from the residual of a 3x3 median filter.

    Pixels at the black floor are flat (every one the same code) and would pull the estimate to 0.
    """
    import cv2

    sample = _sample(image)  # the same pixels, averaged after sampling (numpy's axis-2 mean is slow)
    grey = (sample[..., 0] + sample[..., 1] + sample[..., 2]) * np.float32(1.0 / 3.0)
    black = float(np.max(floor.level)) if floor is not None else 0.0
    linear = grey**gamma
    usable = (grey > black + 0.02) & (grey < SATURATION)
    dark = (grey > black + 1.0 / 255) & (grey < 0.3)
    ldr = _robust_sigma((grey - cv2.medianBlur(grey, 3))[usable])
    lin = _robust_sigma((linear - cv2.medianBlur(linear, 3))[dark])
    return Noise(ldr=max(ldr, 1.0 / ((1 << bits) - 1)), linear=lin)


def _floor_candidates(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the candidate floor (a low percentile: the darkest populated codes, not a
    stray ringing or dead pixel) and whether it could be one: low enough, and holding a share
    of the frame that matters."""
    planes = np.ascontiguousarray(_sample(image).reshape(-1, 3).T)  # along rows: 8x faster than down strided columns
    level = np.percentile(planes, FLOOR_PERCENTILE, axis=1).astype(np.float32)
    share = np.count_nonzero(planes <= (level + np.float32(FLOOR_WIDTH))[:, None], axis=1) / planes.shape[1]
    return level, (level <= FLOOR_HIGHEST) & (share >= FLOOR_SHARE)


def _hides_detail(
    image: np.ndarray, longer: np.ndarray, channel: int, level: float, ratio: float, noise: float
) -> bool:
    """Whether the pixels at `level` in `image` show, in the longer frame, far more spread than
    their own spread and the exposure ratio explain (a floor hides detail; a flat dark object
    stays flat), all of it no brighter than the floor allows (a moving object would show
    something brighter behind it)."""
    here = _sample(image[..., channel])
    chosen = here <= level + FLOOR_WIDTH
    if chosen.sum() < 100:
        return False
    there = _sample(longer[..., channel])[chosen]
    own_low, own_high = np.percentile(here[chosen], [10, 90])
    low, high = np.percentile(there, [10, 90])
    needed = max(FLOOR_DETAIL, FLOOR_SPREAD * ratio * max(own_high - own_low, 1.0 / 255) + 3.0 * noise)
    return bool(high - low >= needed and high <= (level + FLOOR_WIDTH) * ratio + FLOOR_MATCH)


def black_floors(
    images: Sequence[np.ndarray],
    exposures: Sequence[float],
    gamma: float,
    noises: Sequence[Noise] | None = None,
    mapper: Callable[..., Iterable[tuple[np.ndarray, np.ndarray]]] = map,
) -> list[Floor]:
    """Each frame's black floor (frames sorted short -> long, aligned).

    A frame's darkest codes are a floor when another frame's darkest codes sit at the same level
    (scene content would be brighter in the longer frame by the exposure ratio), or when the
    next longer frame shows detail where they are. A frame without a floor of its own (its
    darkest pixels are lifted shadows) gets the bracket's: the offset comes from the camera,
    scanner or film, not from the exposure.
    """
    candidates = list(mapper(_floor_candidates, images))
    levels = np.zeros((len(images), 3), dtype=np.float32)
    found = np.zeros((len(images), 3), dtype=bool)
    for index, (level, plausible) in enumerate(candidates):
        for channel in np.flatnonzero(plausible):
            value = float(level[channel])
            floor = any(
                other != index and candidates[other][1][channel] and abs(candidates[other][0][channel] - value) <= FLOOR_MATCH
                for other in range(len(images))
            )
            if not floor and index + 1 < len(images):
                ratio = (exposures[index + 1] / exposures[index]) ** (1.0 / gamma)
                noise = noises[index + 1].ldr if noises is not None else 1.0 / 255
                floor = _hides_detail(images[index], images[index + 1], channel, value, ratio, noise)
            if floor:
                levels[index, channel], found[index, channel] = value, True
    bracket = np.where(found.any(axis=0), np.where(found, levels, np.inf).min(axis=0), 0.0).astype(np.float32)
    floors = []
    for index, image in enumerate(images):
        level = np.where(found[index], levels[index], bracket).astype(np.float32)
        edge = level.copy()
        if found.any():
            pixels = _sample(image).reshape(-1, 3)
            rank = max(3, int(1e-4 * pixels.shape[0]))  # the next level that is populated, not a stray value
            for channel in range(3):
                values = pixels[:, channel]
                above = values[values > level[channel] + 1e-6]
                if above.size > rank:
                    # The rank-th value above the floor is among the darkest ones whenever they are
                    # more than `rank`: partitioning those alone gives it exactly, 10x faster.
                    darkest = above[above <= level[channel] + np.float32(8.0 / 255)]
                    edge[channel] = np.partition(darkest if darkest.size > rank else above, rank)[rank]
        floors.append(Floor(level, np.maximum(edge, level)))
    return floors


def _interval(
    image: np.ndarray, clipped: np.ndarray, floored: np.ndarray, exposure: float, noise: Noise, floor: Floor, gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Radiance interval per pixel and channel that an observation `image` is consistent with.

    The low end assumes the floor is an offset to remove, the high end that it is signal: a
    response that left the offset in (or removed it) cannot make two frames disagree. At the
    floor the low end is 0 and the high end reaches the floor's edge.
    """
    level = floor.level.astype(np.float32)
    spread = noise.ldr_at(image) * np.float32(K_SIGMA)
    sensor = np.float32(K_SIGMA * noise.linear)
    linear = _pow(image, gamma)
    if np.any(level > 0):
        scale = (1.0 / np.maximum(1.0 - level, 1e-3)).astype(np.float32)
        lifted = np.maximum(image - level, np.float32(0.0))
        lifted *= scale
        low = lifted - spread * scale
        np.maximum(low, np.float32(0.0), out=low)
        low = _pow(low, gamma)
        np.minimum(low, _pow(lifted, gamma) - sensor, out=low)
        del lifted
    else:
        low = image - spread
        np.maximum(low, np.float32(0.0), out=low)
        low = _pow(low, gamma)
        np.minimum(low, linear - sensor, out=low)
    np.maximum(low, np.float32(0.0), out=low)
    low *= np.float32((1.0 - RELATIVE_TOLERANCE) / exposure)
    np.copyto(low, np.float32(0.0), where=floored)
    top, top_linear = image, linear
    if floored.any():
        edge = floor.edge.astype(np.float32)
        top = np.maximum(image, np.where(floored, edge, np.float32(0.0)))
        top_linear = np.maximum(linear, np.where(floored, _pow(edge, gamma), np.float32(0.0)))
    high = top + spread
    np.minimum(high, np.float32(1.0), out=high)
    high = _pow(high, gamma)
    np.maximum(high, top_linear + sensor, out=high)
    high *= np.float32((1.0 + RELATIVE_TOLERANCE) / exposure)
    np.copyto(high, np.float32(np.inf), where=clipped)
    return low, high


def _saturation_weight(brightest: np.ndarray) -> np.ndarray:
    """1 for well-exposed pixels, ramping to 0 as the brightest channel (`channel_max`) approaches clipping."""
    return np.clip((SATURATION - brightest) * np.float32(1.0 / 0.15), 0.0, 1.0)


def _variance(grey: np.ndarray, noise: Noise, gamma: float) -> np.ndarray:
    """Variance of `x^g` at LDR value `grey` from the frame's LDR noise carried through the
    curve, its sensor noise, and the LDR noise's own linear size near black."""
    ldr = noise.ldr_at(grey)
    power = _pow(np.maximum(grey, np.float32(1e-4)), gamma - 1.0)
    slope = np.float32(gamma) * ldr * power
    ldr_linear = _pow(ldr, 2.0 * gamma) if isinstance(ldr, np.ndarray) else np.float32(ldr ** (2.0 * gamma))
    return (slope * slope + (np.float32(noise.linear**2) + ldr_linear)).astype(np.float32)


def _colour_trust(brightest: np.ndarray, grey_from: float = GREY_FROM) -> np.ndarray:
    """1 where the brightest channel is well below clipping, falling smoothly to 0 at clipping:
    how much of a highlight's colour to keep. Starts below the weight ramp: a response's shoulder
    (few samples above it to fit) and a JPEG's chroma next to clipped channels tint the last
    stops before clipping, so 8-bit frames start at GREY_FROM. 16-bit and RAW frames start at
    GREY_FROM_DEEP: at 0.7 a sunset whose reference frame measured every channel at 0.86 came out
    half grey (bench/README.md, "classic on hand-held scenes")."""
    x = np.clip((SATURATION - brightest) * np.float32(1.0 / (SATURATION - grey_from)), 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _dark_weight(brightest: np.ndarray, floor: Floor, noise: Noise) -> np.ndarray:
    """1 above the black floor, ramping to 0 as the brightest channel reaches it (a saturated
    colour whose weak channels sit at the floor is still measured by its strong ones).

    With a floor above 0 the weight also falls with the share of the pixel's linear value the
    floor would account for, about `((x - b) / x) ^ 2`: a lifted black that the response left in
    makes a frame's dark pixels too bright, most of all in short frames, and a longer frame knows
    better. A pixel at the floor is an upper bound, not a measurement: it gets no weight.
    """
    black = float(np.max(floor.level))
    weight = np.clip((brightest - (black + K_SIGMA * noise.ldr)) * (1.0 / DARK_RAMP), 0.0, 1.0)
    if black > 0:
        signal = np.clip(1.0 - black / np.maximum(brightest, 1e-6), 0.0, 1.0)
        weight *= signal * signal
    return weight


def _plane(floor: Floor, channel: int) -> Floor:
    """One channel's floor, shaped to broadcast against that channel's plane."""
    return Floor(floor.level[channel : channel + 1], floor.edge[channel : channel + 1])


def consistency(
    images: Sequence[np.ndarray],
    reference: int,
    noises: Sequence[Noise],
    floors: Sequence[Floor],
    tables: Sequence[_Tables],
) -> list[np.ndarray]:
    """Per frame, a soft [0, 1] map of where it agrees with the reference (1 for the reference).

    A frame disagrees where, in any channel, the `_interval` of its 3x3 mean misses the
    reference's (`classic_kernels.disagreement`); a mean next to a floored (or clipped) pixel
    counts as such too. Disagreeing pixels are dropped with a GHOST_DILATION neighbourhood, and
    the map falls smoothly to 1 around it."""
    import cv2

    from smarthdr_backends import classic_kernels as kernels

    def observed(index: int) -> tuple[np.ndarray, np.ndarray]:
        image = images[index]
        at_floor = floors[index].level.astype(np.float32) + np.float32(K_SIGMA * noises[index].ldr)
        bits = np.empty(image.shape[:2], dtype=np.uint8)
        kernels.flags(image, at_floor, SATURATION, bits)
        return cv2.blur(image, (3, 3)), bits

    shape = images[0].shape[:2]
    ref_mean, ref_flags = observed(reference)
    size = 2 * GHOST_DILATION + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    maps = []
    for index in range(len(images)):
        if index == reference:
            maps.append(np.ones(shape, dtype=np.float32))
            continue
        different = np.empty(shape, dtype=np.uint8)
        mean, bits = observed(index)
        kernels.disagreement(ref_mean, ref_flags, tables[reference].packed_bounds, mean, bits, tables[index].packed_bounds, different)
        ghost = cv2.dilate(different, kernel)
        keep = 1.0 - cv2.GaussianBlur(ghost.astype(np.float32), (0, 0), GHOST_DILATION)
        keep[ghost > 0] = 0.0
        maps.append(keep)
    return maps


def _merge_rows(
    images: Sequence[np.ndarray],
    exposures: Sequence[float],
    reference: int,
    noises: Sequence[Noise],
    gamma: float,
    floors: Sequence[Floor],
    tables: Sequence[_Tables],
    registrations: Sequence[float],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Merge one band of rows (with its halo); returns the HDR band and the frames' keep maps.

    Each frame weighs by its saturation and dark ramps, its keep map and its precision, the
    inverse variance `t^2 / var(x^g)` of the radiance it gives (LDR noise carried through the
    curve, sensor noise, the LDR noise's own linear size near black), taken on a 3x3 grey mean
    so that a pixel's own noise does not pick its weight. Read-noise-limited frames weigh about
    `t^2`, LDR-noise-limited ones about `t`, so every added frame lowers the noise.

    `registrations` (px, for frames that alignment warped) add the error of a frame that is off
    by that much: `(registration * |grad x^g|)^2`. Without it a longer frame's low noise won at
    every edge and texture, where its residual misalignment and resampling blur are far larger
    than the reference's noise: on low-noise hand-held brackets the merge came out below the
    reference frame alone. Flat regions keep the longer frame's noise gain. Frames that were not
    warped get none: on a registered tripod bracket it only cost noise (4.6 dB on a static
    synthetic scene).

    Where every usable frame clips, the estimate is the highest lower bound (the clipped radiance
    of the shortest agreeing frame); where every one sits at its floor, the lowest upper bound
    (the longest one's). Highlights turn neutral as the shortest agreeing frame clips: its partly
    clipped channels (and a JPEG's chroma next to them) carry no colour; blending by how far it
    has clipped, rather than switching where the last weight reaches 0, keeps the boundary free
    of speckle."""
    import cv2

    from smarthdr_backends import classic_kernels as kernels

    keeps = consistency(images, reference, noises, floors, tables)
    shape = images[0].shape[:2]
    total = np.zeros(images[0].shape, dtype=np.float32)
    weight_sum = np.zeros(shape, dtype=np.float32)
    fallback = np.zeros(shape, dtype=np.float32)
    trust = np.ones(shape, dtype=np.float32)  # how far from clipping the shortest agreeing frame is
    seen = np.zeros(shape, dtype=bool)
    darkest = np.full(images[0].shape, np.nan, dtype=np.float32)  # longest agreeing frame at its floor
    unused = np.zeros((0, 0), dtype=np.float32)
    for image, exposure, keep, table, registration in zip(images, exposures, keeps, tables, registrations):
        grey_mean = cv2.blur(kernels.grey(image), (3, 3))
        across = down = unused
        if registration > 0:
            linear = kernels.grey_linear(grey_mean, table.pointwise)
            across = cv2.Sobel(linear, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
            down = cv2.Sobel(linear, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
        kernels.accumulate(
            image, _pow(image, gamma), keep, grey_mean, across, down, registration**2, exposure,
            table.pointwise, total, weight_sum, fallback, trust, seen, darkest,
        )
    hdr = np.empty(images[0].shape, dtype=np.float32)
    kernels.finish(total, weight_sum, fallback, trust, darkest, hdr)
    return hdr, keeps


class ClassicBackend:
    """Exposure-weighted merge of every frame in the linear domain with reference-guided ghost rejection."""

    name: ClassVar[str] = "classic"
    summary: ClassVar[str] = "non-learned weighted merge of every frame with reference-guided ghost rejection (numpy, OpenCV, numba)"
    learned: ClassVar[bool] = False
    gives_uncertainty: ClassVar[bool] = False
    parallel_safe: ClassVar[bool] = True

    @classmethod
    def availability(cls, options: BackendOptions | None = None) -> Availability:
        return Availability(True, "always available (numpy, OpenCV and numba)")

    @staticmethod
    def select_frames(count: int, reference: int | None) -> tuple[list[int], int]:
        """Every frame of the bracket (exposure order) and the reference's position among them."""
        return every_frame(count, reference)

    def __init__(self, options: BackendOptions | None = None) -> None:
        self.options = options or BackendOptions()
        self._warming: threading.Thread | None = None

    def prepare(self) -> None:
        """Start loading the compiled kernels in a thread (`classic_kernels.warm`): ~0.25 s of
        Python work in a fresh process. `read_bracket` calls this once the frames are decoded:
        beside the content check and response calibration it cost the 12 MP merge 0.35 s less
        than beside the alignment, whose SIFT and OpenCV filters it slowed (bench/README.md)."""
        if self._warming is None:
            self._warming = threading.Thread(target=_warm_kernels, name="classic-kernels", daemon=True)
            self._warming.start()

    def merge(self, bracket: Bracket) -> MergeResult:
        self.prepare()
        assert self._warming is not None
        self._warming.join()
        # Row bands with a halo wider than every filter's reach keep memory at a few bands'
        # worth of temporaries instead of ~16 full-size images, with identical results.
        images = [np.asarray(image, dtype=np.float32) for image in bracket.images]
        exposures = [float(t) for t in bracket.exposures]
        height = bracket.shape[0]
        workers = max(1, min(self.options.threads or usable_cores(), -(-height // BAND_ROWS)))
        with ThreadPoolExecutor(workers) as pool, _opencv_threads(1 if workers > 1 else None):
            # numpy's sorting and OpenCV's filters release the GIL; with a band per core in flight,
            # OpenCV's own threads would only contend with them (5-10% of the merge's time at 12 MP)
            noises, floors = self._statistics(images, exposures, bracket, pool)
            hdr, dropped = self._merge_bands(images, exposures, bracket, noises, floors, pool)
        rejected = np.sum(dropped, axis=0) / (bracket.shape[0] * bracket.shape[1])
        others = [f"{name} {100 * r:.1f}%" for i, (name, r) in enumerate(zip(bracket.names, rejected)) if i != bracket.reference]
        notes = [f"ghost rejection dropped {', '.join(others)}"]
        lifted = [f"{name} {_codes(floor.level)}" for name, floor in zip(bracket.names, floors) if np.max(floor.level) * 255 >= 1.5]
        if lifted:
            notes.append(f"black floor (R/G/B, LDR value x 255) {', '.join(lifted)}: pixels there bound the radiance only from above")
        return MergeResult(hdr=hdr, uncertainty=None, weights_id=None, notes=notes)

    @staticmethod
    def _statistics(
        images: Sequence[np.ndarray], exposures: Sequence[float], bracket: Bracket, pool: ThreadPoolExecutor
    ) -> tuple[list[Noise], list[Floor]]:
        """Each frame's noise and black floor, from one ~2 MP sample of it (a sample of the
        sample is itself), frames in parallel."""
        samples = list(pool.map(_sample, images))
        noises = list(pool.map(lambda sample: noise_level(sample, bracket.bits, bracket.gamma), samples))
        floors = black_floors(samples, exposures, bracket.gamma, noises, mapper=pool.map)

        def refine(sample: np.ndarray, floor: Floor, noise: Noise) -> Noise:
            # The floor's flat pixels would pull a frame's noise estimate down: estimate it again above them.
            if np.max(floor.level) > 0.02:
                noise = noise_level(sample, bracket.bits, bracket.gamma, floor)
            return _with_steps(noise, sample) if bracket.bits <= 8 else noise

        return list(pool.map(refine, samples, floors, noises)), floors

    @staticmethod
    def _merge_bands(
        images: Sequence[np.ndarray],
        exposures: Sequence[float],
        bracket: Bracket,
        noises: Sequence[Noise],
        floors: Sequence[Floor],
        pool: ThreadPoolExecutor,
    ) -> tuple[np.ndarray, list[list[float]]]:
        """The merged image, and per band the pixels each frame's keep map dropped.

        Bands are independent and numpy's element-wise work and the kernels release the GIL:
        one band per core in flight, so memory stays at a few bands' worth. Each band's rows go
        into `hdr`, which is one of the frames when the bracket is `disposable`: a band's rows
        are written there once no band that reads them (itself, and its neighbours through
        their halos) is still running."""
        height = bracket.shape[0]
        into = _writable_frame(images) if bracket.disposable else None
        hdr = into if into is not None else np.empty(images[0].shape, dtype=np.float32)
        tops = list(range(0, height, BAND_ROWS))
        lock = threading.Lock()
        finished: set[int] = set()
        waiting: dict[int, np.ndarray] = {}
        registrations = [REGISTRATION_PX if i < len(bracket.warped) and bracket.warped[i] else 0.0 for i in range(len(images))]
        grey_from = GREY_FROM if bracket.bits <= 8 else GREY_FROM_DEEP
        tables = [_tables(t, n, f, bracket.gamma, grey_from) for t, n, f in zip(exposures, noises, floors)]

        def merge_band(index: int) -> list[float]:
            top = tops[index]
            bottom = min(height, top + BAND_ROWS)
            start, stop = max(0, top - HALO_ROWS), min(height, bottom + HALO_ROWS)
            band, keeps = _merge_rows(
                [im[start:stop] for im in images], exposures, bracket.reference, noises, bracket.gamma, floors, tables, registrations
            )
            dropped = [float((1.0 - keep[top - start : bottom - start]).sum()) for keep in keeps]
            if into is None:
                hdr[top:bottom] = band[top - start : bottom - start]
                return dropped
            with lock:
                finished.add(index)
                waiting[index] = band[top - start : bottom - start]
                for done in [j for j in waiting if finished.issuperset(range(max(0, j - 1), min(len(tops), j + 2)))]:
                    hdr[tops[done] : tops[done] + BAND_ROWS] = waiting.pop(done)
            return dropped

        return hdr, list(pool.map(merge_band, range(len(tops))))


@contextlib.contextmanager
def _opencv_threads(count: int | None) -> Iterator[None]:
    """OpenCV's thread count set to `count` for the block (None: left as it is)."""
    import cv2

    if count is None:
        yield
        return
    previous = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _writable_frame(images: Sequence[np.ndarray]) -> np.ndarray | None:
    """A frame the merge may overwrite with its result: its own C-contiguous float32 buffer."""
    assert BAND_ROWS > HALO_ROWS  # a band's rows are read by its neighbours' halos only
    for image in images:
        if image.dtype == np.float32 and image.flags.c_contiguous and image.flags.writeable and image.base is None:
            return image
    return None


def _warm_kernels() -> None:
    try:
        from smarthdr_backends.numba_start import without_scipy

        with without_scipy():
            from smarthdr_backends import classic_kernels

            classic_kernels.warm()
    except Exception:  # noqa: BLE001 - the merge calls the kernels itself and reports what fails there
        pass


def _codes(level: np.ndarray) -> str:
    return "/".join(f"{255 * v:.0f}" for v in level)
