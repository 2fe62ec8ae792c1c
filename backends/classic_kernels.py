"""The classic merge's per-pixel work, compiled by numba into one pass per step.

Why compiled: as numpy expressions this work was two dozen whole-band passes per frame (lookups,
index casts, comparisons, masked copies), 70% of a 12 MP merge's time. Here each step reads
its inputs once and keeps every intermediate in registers. The filters (3x3 means, dilations,
the ghost map's Gaussian, Sobel) stay in OpenCV, which is already SIMD code.

Every kernel repeats exactly what the numpy form in `classic.py`'s docstrings describes, in the
same float32 operations and order: `tests/test_classic_kernels.py` holds them to a direct numpy
evaluation. Kernels release the GIL, so the merge's row bands run on every core; compiled code is
cached beside this file (or in numba's user cache) after the first merge.
"""
from __future__ import annotations

import numpy as np
from numba import njit

GRID_TOP = np.float32(65535.0)  # VALUE_GRID's last index: the grid is 1/65535 apart on [0, 1]
# 1.5 x 2^23: adding and subtracting it rounds a float32 below 2^22 to an integer, half to even
# (IEEE round to nearest), as OpenCV's saturate_cast does; np.rint was a fifth of a kernel's time.
ROUNDING = np.float32(12582912.0)

# Rows of the packed per-frame tables (`classic._Tables.pointwise`).
LINEAR, DARK, WEIGHT, TRUST, VARIANCE = range(5)
# Rows of the packed interval bounds (`classic._Tables.packed_bounds`), per channel.
LOW, HIGH, HIGH_FLOORED = range(3)

_compile = njit(nogil=True, cache=True, error_model="numpy")


@_compile
def _grid(value: float) -> int:
    """The nearest VALUE_GRID entry, as `classic._grid_index` (OpenCV's rounding, half to even,
    saturated to the grid)."""
    scaled = np.float32(value) * GRID_TOP
    if not scaled > 0.0:  # also NaN, as OpenCV's saturate_cast gives 0
        return 0
    if scaled >= GRID_TOP:
        return 65535
    return int((scaled + ROUNDING) - ROUNDING)


@_compile
def grid_index(values: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """VALUE_GRID indices of a 1-D float32 array."""
    out = np.empty(values.size, dtype=np.intp)
    for i in range(values.size):
        out[i] = _grid(values[i])
    return out


# Bits of `flags`: channel k at its black floor (FLOORED << k) or clipped (CLIPPED << k).
FLOORED, CLIPPED = 1, 8


@_compile
def flags(image: np.ndarray, at_floor: np.ndarray, clipping: float, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Per pixel (HxW uint8), which channels have a pixel of the 3x3 neighbourhood at or below
    their black floor (`at_floor`: the level plus the noise margin) and which one at or above
    `clipping`: the masks of both dilated by a 3x3 box, as cv2.dilate does it (neighbours
    outside the image do not count), one bit each. One pass and one byte a pixel, where the
    masks as colour images and their dilations took four OpenCV passes and six bytes."""
    rows, cols = image.shape[:2]
    top = np.float32(clipping)
    raw = np.empty((rows, cols), dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            bits = 0
            for k in range(3):
                value = image[r, c, k]
                if value <= at_floor[k]:
                    bits |= FLOORED << k
                if value >= top:
                    bits |= CLIPPED << k
            raw[r, c] = bits
    across = np.empty((rows, cols), dtype=np.uint8)  # the dilation is separable: rows, then columns
    for r in range(rows):
        for c in range(cols):
            bits = raw[r, c]
            if c > 0:
                bits |= raw[r, c - 1]
            if c + 1 < cols:
                bits |= raw[r, c + 1]
            across[r, c] = bits
    for r in range(rows):
        for c in range(cols):
            bits = across[r, c]
            if r > 0:
                bits |= across[r - 1, c]
            if r + 1 < rows:
                bits |= across[r + 1, c]
            out[r, c] = bits


@_compile
def disagreement(
    ref_mean: np.ndarray,
    ref_flags: np.ndarray,
    ref_bounds: np.ndarray,
    mean: np.ndarray,
    frame_flags: np.ndarray,
    bounds: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Where a frame's radiance interval misses the reference's in any channel (`out` = 1).

    Per frame: `mean` the 3x3 mean (HxWx3), `frame_flags` its `flags` (floored or clipped in
    the 3x3 neighbourhood, per channel), `bounds` (3 channels x LOW, HIGH, HIGH_FLOORED x grid)
    the frame's `_interval` tabulated. At a floored pixel the low end is 0 and the high end
    reaches the floor's edge; at a clipped one the high end is open."""
    rows, cols = out.shape
    infinity = np.float32(np.inf)
    zero = np.float32(0.0)
    # The reference's interval and the frame's are written out, not taken from a helper
    # returning a pair: numba then built the pair per channel and pixel, 5x slower.
    for r in range(rows):
        for c in range(cols):
            differs = False
            ref_bits = ref_flags[r, c]
            bits = frame_flags[r, c]
            for k in range(3):
                i = _grid(ref_mean[r, c, k])
                ref_low = ref_bounds[k, LOW, i]
                ref_high = ref_bounds[k, HIGH, i]
                if ref_bits & (FLOORED << k):
                    ref_low = zero
                    ref_high = ref_bounds[k, HIGH_FLOORED, i]
                if ref_bits & (CLIPPED << k):
                    ref_high = infinity
                j = _grid(mean[r, c, k])
                low = bounds[k, LOW, j]
                high = bounds[k, HIGH, j]
                if bits & (FLOORED << k):
                    low = zero
                    high = bounds[k, HIGH_FLOORED, j]
                if bits & (CLIPPED << k):
                    high = infinity
                if low > ref_high or ref_low > high:
                    differs = True
            out[r, c] = 1 if differs else 0


@_compile
def grey(image: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """The mean of the three channels (HxW), summed in channel order."""
    rows, cols = image.shape[:2]
    out = np.empty((rows, cols), dtype=np.float32)
    third = np.float32(1.0 / 3.0)
    for r in range(rows):
        for c in range(cols):
            out[r, c] = (image[r, c, 0] + image[r, c, 1] + image[r, c, 2]) * third
    return out


@_compile
def grey_linear(grey_mean: np.ndarray, table: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """`x^g` of the 3x3 grey mean, looked up: what a warped frame's registration error scales with."""
    rows, cols = grey_mean.shape
    out = np.empty((rows, cols), dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            out[r, c] = table[LINEAR, _grid(grey_mean[r, c])]
    return out


@_compile
def accumulate(
    image: np.ndarray,
    power: np.ndarray,
    keep: np.ndarray,
    grey_mean: np.ndarray,
    across: np.ndarray,
    down: np.ndarray,
    registration2: float,
    exposure: float,
    table: np.ndarray,
    total: np.ndarray,
    weight_sum: np.ndarray,
    fallback: np.ndarray,
    trust: np.ndarray,
    seen: np.ndarray,
    darkest: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Add one frame to the merge's running sums (`classic._merge_rows`).

    `power` is the frame's `x^g` (HxWx3), `keep` its consistency map, `grey_mean` the 3x3 mean
    of its grey, `across`/`down` the Sobel gradients of that mean's `x^g` (used when
    `registration2` > 0), `table` its packed pointwise tables. Weight: saturation and dark
    ramps x keep x precision `t^2 / var`; `trust` is taken from the first (shortest) agreeing
    frame, `fallback` is the highest clipped radiance of the agreeing frames, `darkest` the
    longest agreeing frame's radiance where it sits at its floor."""
    rows, cols = keep.shape
    inverse = np.float32(1.0 / exposure)
    square = np.float32(exposure * exposure)
    registered = np.float32(registration2)
    for r in range(rows):
        for c in range(cols):
            brightest = max(max(image[r, c, 0], image[r, c, 1]), image[r, c, 2])
            b = _grid(brightest)
            variance = table[VARIANCE, _grid(grey_mean[r, c])]
            if registration2 > 0.0:
                gx = across[r, c]
                gy = down[r, c]
                variance = variance + (gx * gx + gy * gy) * registered
            weight = table[WEIGHT, b] * keep[r, c]
            weight = weight * (square / variance)
            weight_sum[r, c] += weight
            agrees = keep[r, c] > np.float32(0.5)
            if agrees and not seen[r, c]:
                trust[r, c] = table[TRUST, b]
                seen[r, c] = True
            if agrees:
                bound = table[LINEAR, b] * inverse
                if bound > fallback[r, c]:
                    fallback[r, c] = bound
            at_floor = agrees and table[DARK, b] <= np.float32(0.0)
            for k in range(3):
                radiance = power[r, c, k] * inverse
                if at_floor:
                    darkest[r, c, k] = radiance
                total[r, c, k] += radiance * weight


@_compile
def finish(
    total: np.ndarray, weight_sum: np.ndarray, fallback: np.ndarray, trust: np.ndarray, darkest: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """The weighted mean, turned neutral as the shortest agreeing frame clips (towards the higher
    of its brightest channel and the clipped bound); where no frame measured a pixel, the
    clipped bound, or the longest agreeing frame's floor value where one sat at its floor."""
    rows, cols = weight_sum.shape
    one = np.float32(1.0)
    for r in range(rows):
        for c in range(cols):
            weights = weight_sum[r, c]
            if weights <= np.float32(0.0):
                if trust[r, c] > np.float32(0.0) and not np.isnan(darkest[r, c, 0]):
                    for k in range(3):
                        out[r, c, k] = darkest[r, c, k]
                else:
                    for k in range(3):
                        out[r, c, k] = fallback[r, c]
                continue
            divisor = max(weights, np.float32(1e-12))
            e0 = total[r, c, 0] / divisor
            e1 = total[r, c, 1] / divisor
            e2 = total[r, c, 2] / divisor
            grey = one - trust[r, c]
            level = max(max(max(e0, e1), e2), grey * fallback[r, c])
            out[r, c, 0] = (level - e0) * grey + e0
            out[r, c, 1] = (level - e1) * grey + e1
            out[r, c, 2] = (level - e2) * grey + e2


def warm() -> None:
    """Load every kernel for the array types a merge passes (from numba's cache, or compile it).

    A process's first call of a numba function initialises numba's compiler (~1 s of Python
    work even when the code comes from the cache): `ClassicBackend` calls this in a thread
    while the bracket is read, decoded and aligned, work that runs in C and leaves a core free."""
    image = np.zeros((2, 2, 3), dtype=np.float32)
    plane = np.zeros((2, 2), dtype=np.float32)
    bounds = np.zeros((3, 3, 4), dtype=np.float32)
    table = np.ones((5, 4), dtype=np.float32)
    unused = np.zeros((0, 0), dtype=np.float32)
    bits = np.zeros((2, 2), dtype=np.uint8)
    grid_index(plane.reshape(-1))
    flags(image, np.zeros(3, dtype=np.float32), 0.97, bits)
    disagreement(image, bits, bounds, image, bits, bounds, bits.copy())
    grey(image)
    grey_linear(plane, table)
    seen = np.zeros((2, 2), dtype=bool)
    for across in (unused, plane):
        accumulate(image, image, plane, plane, across, across, 0.0, 1.0, table, image.copy(), plane.copy(), plane.copy(), plane.copy(), seen, image.copy())
    finish(image, plane, plane, plane, image, image.copy())
