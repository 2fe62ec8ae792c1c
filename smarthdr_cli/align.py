"""Pre-alignment of hand-held brackets: each non-reference frame is warped onto the reference.

Frames of different exposure cannot be compared directly, so both are mapped to log radiance
(`log(x ** 2.2 / t)`), where a correct exposure ratio makes them equal, and only pixels valid in
both (neither clipped nor near black) count. The warp is fitted to SIFT keypoints matched between
the two (OpenCV: Lowe's ratio test, then USAC_ACCURATE for the homography), which moving objects and
clipped regions cannot pull: their matches are outliers. Where too few keypoints match (a
featureless frame) or they agree only on an implausible motion (most of them on a moving
object), OpenCV's ECC (Evangelidis & Psarakis 2008) fits it coarse to fine instead.
ECC alone was the first version: on hand-held synthetic scenes with the true motion known it
left 4.2 px of corner error on average (long frames, mostly clipped, 5-9 px) where matched
keypoints leave 0.5 (bench/README.md, "alignment on the stratified split").

A fit that fails, correlates poorly or moves the frame implausibly far is discarded, and the
frame stays where it was: a wrong shift is worse than none. Nor is a fit kept that matches the
reference no better than leaving the frame where it is: on a bracket that is already
registered, a fit on a dark, noisy or mostly clipped frame still lands somewhere (along a sky
gradient, or where resampling averages the noise away), up to tens of pixels off.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from smarthdr_cli.bracket import GAMMA
from smarthdr_cli.heap import reused_heap

AlignMode = Literal["none", "translation", "homography"]
ALIGN_MODES: tuple[str, ...] = ("none", "translation", "homography")
MAX_SHIFT = 0.06  # of the image diagonal: larger motions are not a hand-held bracket
MIN_CORRELATION = 0.6
HOMOGRAPHY_GAIN = 0.001  # correlation a homography must add over a translation to be used
MIN_SHIFT_PX = 0.5  # below this the frame is already aligned; resampling it would only blur it
IDENTITY_GAIN = 0.02  # band-pass correlation a warp must add over leaving the frame in place
IDENTITY_BANDS = (1.0, 4.0)  # Gaussian sigmas (work-level px) of the band-pass that comparison uses
_WORK_SIDE = 1024  # about the long side of the finest level the fit runs on (see _factor)
ECC_ITERATIONS = 100  # most ECC iterations per coarse level
FINEST_ITERATIONS = 25  # ... and at the finest level, where one costs 16x a coarse one; see bench/README.md
FEATURES = 4000  # SIFT keypoints per frame at the work level
MATCH_RATIO = 0.75  # Lowe's ratio test: a match must be clearly better than the second best
RANSAC_PX = 1.0  # inlier threshold (work-level px) of USAC_ACCURATE (OpenCV: GC-RANSAC with local optimisation)
MIN_MATCHES = 12  # fewer inliers: the keypoints say nothing, ECC fits the frame instead
HOMOGRAPHY_INLIERS = 40  # fewer: a similarity (shift, rotation, scale) instead of 8 free parameters


@dataclass(frozen=True)
class Alignment:
    """What happened to one frame: the warp (3x3, reference -> frame coordinates) and why."""

    applied: bool
    matrix: np.ndarray
    shift_px: float  # largest displacement of an image corner, in full-resolution pixels
    correlation: float
    reason: str


@dataclass(frozen=True)
class _Level:
    """A frame at the fit's finest level: log radiance, and how much of each work pixel was
    well exposed (uint8, 255 = all of it)."""

    log: np.ndarray
    valid: np.ndarray  # uint8 share of valid full-resolution pixels


_STRIP_ROWS = 128  # work-level rows per strip of `_pairs`: full-size temporaries of a few MB (8 MB at 12 MP), not 145


def _log_radiance(image: np.ndarray, exposure: float, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Log radiance of the luminance of `image` (rows of a frame), and where it is well exposed
    (uint8, 0 or 255)."""
    import cv2

    image = np.ascontiguousarray(image, dtype=np.float32)
    grey = cv2.transform(image, np.array([[0.2126, 0.7152, 0.0722]], dtype=np.float32))
    below = float(np.nextafter(np.float32(0.95), np.float32(0.0)))  # every channel < 0.95, in one OpenCV pass
    valid = cv2.inRange(image, (-np.inf,) * 3, (below,) * 3)
    valid &= (grey > 0.04).view(np.uint8) * np.uint8(255)
    log = np.maximum(grey, np.float32(1e-4), out=grey)
    np.log(log, out=log)
    log *= np.float32(gamma)
    log -= np.float32(np.log(exposure))
    return log, valid


def _factor(height: int, width: int) -> int:
    """The integer reduction to the work level, whose long side is then within [2/3, 3/2) of
    _WORK_SIDE: with an integer factor the area reduction is a box mean, the same strip by strip
    as over the whole frame."""
    return max(1, round(max(height, width) / _WORK_SIDE))


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _corner_shift(matrix: np.ndarray, height: int, width: int) -> float:
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], dtype=np.float64)
    moved = corners @ matrix.T
    moved = moved[:, :2] / moved[:, 2:3]
    return float(np.max(np.linalg.norm(moved - corners[:, :2], axis=1)))


def _fit(
    ref_log: np.ndarray, mov_log: np.ndarray, valid: np.ndarray, mode: AlignMode, start: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """ECC fit coarse to fine from the warp `start`, all at the work level (`valid`: uint8
    share of valid pixels); (warp, correlation) or None."""
    import cv2

    height, width = ref_log.shape
    motion = cv2.MOTION_TRANSLATION if mode == "translation" else cv2.MOTION_HOMOGRAPHY
    scales = [0.25, 0.5, 1.0] if max(height, width) >= 256 else [1.0]
    correlation = 0.0
    current = start.astype(np.float64)
    for scale in scales:
        to_level = np.diag([scale, scale, 1.0])
        warp = (to_level @ current @ np.linalg.inv(to_level)).astype(np.float32)
        template = _resize(ref_log, scale)
        image = _resize(mov_log, scale)
        mask = (_resize(valid, scale) > 200).astype(np.uint8)
        matrix = warp[:2].copy() if mode == "translation" else warp
        # Coarse levels only start the next one: stopping them at 1e-4 of correlation per
        # iteration costs the final fit nothing; the finest level runs to 1e-5 or its cap.
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, *((ECC_ITERATIONS, 1e-4) if scale < 1.0 else (FINEST_ITERATIONS, 1e-5)))
        try:
            correlation, matrix = cv2.findTransformECC(
                template, image, matrix, motion,
                criteria, mask, 5,
            )
        except cv2.error:
            return None
        warp = np.vstack([matrix, [0, 0, 1]]) if mode == "translation" else matrix
        current = np.linalg.inv(to_level) @ warp.astype(np.float64) @ to_level
    if not np.isfinite(current).all():
        return None
    return current, float(correlation)


def _span(*levels: _Level) -> tuple[float, float]:
    """The log radiances the frames' well-exposed pixels cover, for one 8-bit mapping of both."""
    values = np.concatenate([level.log[level.valid > 127] for level in levels])
    if values.size < 100:
        return 0.0, 1.0
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-3))


def _keypoints(level: _Level, span: tuple[float, float]) -> tuple[np.ndarray, np.ndarray | None]:
    """SIFT keypoints (N x 2, work-level px) and descriptors of a frame's well-exposed pixels."""
    import cv2

    low, high = span
    image = np.clip((level.log - np.float32(low)) * np.float32(255.0 / (high - low)), 0.0, 255.0).astype(np.uint8)
    mask = (level.valid > 127).astype(np.uint8) * np.uint8(255)
    found, descriptors = cv2.SIFT_create(nfeatures=FEATURES).detectAndCompute(image, mask)
    return np.array([k.pt for k in found], dtype=np.float32).reshape(-1, 2), descriptors


def _feature_fit(ref: _Level, mov: _Level, mode: AlignMode) -> tuple[np.ndarray, int] | None:
    """The warp (work level, reference -> frame) fitted to matched keypoints, and how many
    matches it explains; None when too few match."""
    import cv2

    span = _span(ref, mov)
    ref_points, ref_descriptors = _keypoints(ref, span)
    mov_points, mov_descriptors = _keypoints(mov, span)
    if ref_descriptors is None or mov_descriptors is None or min(len(ref_points), len(mov_points)) < MIN_MATCHES:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(ref_descriptors, mov_descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < MATCH_RATIO * p[1].distance]
    if len(good) < MIN_MATCHES:
        return None
    source = ref_points[[m.queryIdx for m in good]]
    target = mov_points[[m.trainIdx for m in good]]
    homography, inliers = cv2.findHomography(source, target, cv2.USAC_ACCURATE, RANSAC_PX)
    if homography is None or inliers is None or int(inliers.sum()) < MIN_MATCHES:
        return None
    kept = inliers.ravel().astype(bool)
    if mode == "translation":
        shift = np.median(target[kept] - source[kept], axis=0)
        return np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]], [0.0, 0.0, 1.0]]), int(kept.sum())
    if kept.sum() < HOMOGRAPHY_INLIERS:
        similarity, agree = cv2.estimateAffinePartial2D(source[kept], target[kept], method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX)
        if similarity is None:
            return None
        return np.vstack([similarity, [0.0, 0.0, 1.0]]), int(agree.sum())
    return homography / homography[2, 2], int(kept.sum())


def _correlation(ref: _Level, mov: _Level, level: np.ndarray, both: np.ndarray) -> float:
    """Correlation of the reference's log radiance with the warped frame's on pixels well exposed in both."""
    import cv2

    size = (ref.log.shape[1], ref.log.shape[0])
    warped = cv2.warpPerspective(mov.log, level, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    mask = (both > 200).astype(np.uint8)
    if mask.sum() < 100:
        return 0.0
    try:
        return float(cv2.computeECC(ref.log, warped, mask))
    except cv2.error:
        return 0.0


def _band(log: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Band-pass (difference of Gaussians, IDENTITY_BANDS) of log radiance over valid pixels only
    (normalised convolution: invalid pixels neither count nor leak in), and how much of each
    pixel's neighbourhood was valid. Edges and texture at the scale of a hand-held wobble stay;
    the sky-to-ground swing that dominates a plain correlation, and pixel noise, do not."""
    import cv2

    weight = valid.astype(np.float32)
    fine, coarse = IDENTITY_BANDS
    support = cv2.GaussianBlur(weight, (0, 0), fine)
    band = cv2.GaussianBlur(log * weight, (0, 0), fine) / np.maximum(support, 1e-6)
    band -= cv2.GaussianBlur(log * weight, (0, 0), coarse) / np.maximum(cv2.GaussianBlur(weight, (0, 0), coarse), 1e-6)
    return band.astype(np.float32), support


def _against_identity(reference: _Level, moving: _Level, level: np.ndarray) -> tuple[float, float]:
    """Band-pass correlation of the frame left in place and of the frame warped by `level` (the
    warp at the work level) with the reference, on the same pixels, at the finest level of the
    fit. A plain correlation does not do: the frame's noise outweighs a few pixels of
    misalignment in it, and resampling between pixels averages noise away, so that any
    sub-pixel warp would beat the identity."""
    import cv2

    template, image = reference.log, moving.log
    ref_ok = reference.valid > 127
    mov_ok = moving.valid.astype(np.float32) * np.float32(1.0 / 255.0)
    size = (template.shape[1], template.shape[0])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(image, level, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    warped_ok = cv2.warpPerspective(mov_ok, level, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0.99
    reference_band, ref_support = _band(template, ref_ok)
    still, still_support = _band(image, mov_ok > 0.99)
    moved, moved_support = _band(warped, warped_ok)
    mask = (ref_support > 0.5) & (still_support > 0.5) & (moved_support > 0.5)
    if mask.sum() < 100:
        return 0.0, 0.0
    try:
        mask = mask.astype(np.uint8)
        return float(cv2.computeECC(reference_band, still, mask)), float(cv2.computeECC(reference_band, moved, mask))
    except cv2.error:
        return 0.0, 0.0


@dataclass(frozen=True)
class _Pair:
    """What a fit needs of the reference and one moving frame, at the work level: a few MB,
    however large the frames."""

    ref: _Level
    mov: _Level
    filled: np.ndarray  # the moving frame's log radiance, the reference's where it is clipped
    both: np.ndarray  # uint8 share of pixels well exposed in both
    usable: float  # that share at full resolution


def _pairs(reference: np.ndarray, ref_exposure: float, moving: Sequence[tuple[np.ndarray, float]], gamma: float, factor: int) -> list[_Pair]:
    """The work level of the reference and of each moving frame, in one pass over strips of rows.

    Full-size log radiance and validity exist for one strip at a time (_STRIP_ROWS work rows, a
    few MB), never for whole frames: at 12 MP each whole-frame temporary cost its page faults,
    about as much as the arithmetic on it (0.57 s for a 3-frame bracket, 0.18 s in strips;
    bench/README.md, classic_pipeline). The fit sees the frames cropped to a multiple of
    `factor`: at most factor - 1 columns and rows at the right and bottom edges go unseen.
    """
    import cv2

    height, width = reference.shape[:2]
    rows, columns = height // factor, width // factor
    ref = _Level(np.empty((rows, columns), np.float32), np.empty((rows, columns), np.uint8))
    levels = [_Level(np.empty((rows, columns), np.float32), np.empty((rows, columns), np.uint8)) for _ in moving]
    filled = [np.empty((rows, columns), np.float32) for _ in moving]
    both = [np.empty((rows, columns), np.uint8) for _ in moving]
    counts = [0] * len(moving)

    def reduce(strip: np.ndarray, out: np.ndarray) -> None:
        if factor == 1:
            out[...] = strip
        else:
            cv2.resize(strip, (out.shape[1], out.shape[0]), dst=out, interpolation=cv2.INTER_AREA)

    crop = slice(0, columns * factor)
    for first in range(0, rows, _STRIP_ROWS):
        last = min(first + _STRIP_ROWS, rows)
        strip = slice(first * factor, last * factor)
        ref_log, ref_valid = _log_radiance(reference[strip, crop], ref_exposure, gamma)
        reduce(ref_log, ref.log[first:last])
        reduce(ref_valid, ref.valid[first:last])
        for index, (image, exposure) in enumerate(moving):
            log, valid = _log_radiance(image[strip, crop], exposure, gamma)
            reduce(log, levels[index].log[first:last])
            reduce(valid, levels[index].valid[first:last])
            mutual = cv2.bitwise_and(ref_valid, valid)
            counts[index] += cv2.countNonZero(mutual)
            reduce(mutual, both[index][first:last])
            # Pixels valid in the reference but clipped in the moving frame take the reference's
            # value, so clipping does not pull the fit; the mask restricts it to mutually valid pixels.
            np.copyto(log, ref_log, where=valid == 0)
            reduce(log, filled[index][first:last])
    pixels = rows * columns * factor * factor
    return [_Pair(ref, level, fill, share, count / pixels) for level, fill, share, count in zip(levels, filled, both, counts)]


def estimate(
    reference: np.ndarray,
    ref_exposure: float,
    moving: np.ndarray,
    moving_exposure: float,
    mode: AlignMode,
    gamma: float = GAMMA,
) -> Alignment:
    """Fit the warp that maps `moving` onto `reference`; identity with a reason when it fails
    (see `estimate_all`)."""
    return estimate_all(reference, ref_exposure, [(moving, moving_exposure)], mode, gamma)[0]


def estimate_all(
    reference: np.ndarray,
    ref_exposure: float,
    moving: Sequence[tuple[np.ndarray, float]],
    mode: AlignMode,
    gamma: float = GAMMA,
) -> list[Alignment]:
    """The warp of each (frame, exposure) of `moving` onto `reference`.

    The full-resolution work (luminance, log radiance, validity) is one pass over the frames in
    strips (`_pairs`), and leaves only the work level behind. The fits then run one after
    another: side by side (SIFT uses one core) two 12 MP fits took 1.0 s instead of 1.4-1.6 s,
    but SIFT's pyramid of the doubled work level is ~185 MB a fit, and two at once put the
    merge's peak memory above OpenCV's (bench/README.md).

    `homography` first fits a translation and keeps the homography only where it matches
    clearly better (HOMOGRAPHY_GAIN in correlation): with clipped skies or moving objects the
    extra degrees of freedom otherwise fit noise and tilt the frame's corners. Whatever was fitted is then compared with leaving the frame in place
    (`_against_identity`), and kept only when it matches the reference's edges clearly better
    (IDENTITY_GAIN). `reason` is what the status line says: "kept in place: why" or
    "translation|homography, moved N px".
    """
    if mode == "none":
        return [Alignment(False, np.eye(3), 0.0, 1.0, "not aligned (--align none)") for _ in moving]
    height, width = reference.shape[:2]
    factor = _factor(height, width)
    with reused_heap():  # SIFT's pyramid, allocated and freed by every fit: its pages kept between fits
        pairs = _pairs(reference, ref_exposure, moving, gamma, factor)
        return [_fit_pair(pair, mode, height, width, 1.0 / factor) for pair in pairs]


def _fit_pair(pair: _Pair, mode: AlignMode, height: int, width: int, scale: float) -> Alignment:
    identity = np.eye(3)
    if pair.usable < 0.05:
        return Alignment(False, identity, 0.0, 0.0, "kept in place: too few pixels well exposed in both frames")
    ref, mov, filled, both = pair.ref, pair.mov, pair.filled, pair.both
    limit = MAX_SHIFT * float(np.hypot(height, width))
    to_work = np.diag([scale, scale, 1.0])

    def full(level: np.ndarray) -> np.ndarray:
        return np.linalg.inv(to_work) @ level @ to_work

    features = _feature_fit(ref, mov, mode)
    if features is not None and _corner_shift(full(features[0]), height, width) > limit:
        features = None  # matched on something that moved (few keypoints, a moving object's): ECC decides
    if features is not None:
        level = features[0]
        correlation = _correlation(ref, mov, level, both)
        matrix = full(level)
    else:
        fit = _fit(ref.log, filled, both, "translation", identity)
        if fit is None:
            return Alignment(False, identity, 0.0, 0.0, "kept in place: the fit did not converge")
        level, correlation = fit
        matrix = full(level)
        if mode == "homography" and _corner_shift(matrix, height, width) <= limit:
            richer = _fit(ref.log, filled, both, "homography", level)
            if richer is not None and richer[1] >= correlation + HOMOGRAPHY_GAIN:
                if _corner_shift(full(richer[0]), height, width) <= limit:
                    level, correlation = richer
                    matrix = full(level)
    shift = _corner_shift(matrix, height, width)
    if shift > limit:
        return Alignment(False, identity, shift, correlation, f"kept in place: implausible motion of {shift:.0f} px")
    if correlation < MIN_CORRELATION:
        return Alignment(False, identity, shift, correlation, f"kept in place: poor match (correlation {correlation:.2f})")
    if shift < MIN_SHIFT_PX:
        return Alignment(False, identity, shift, correlation, f"kept in place: already aligned ({shift:.2f} px)")
    # ECC maximises correlation wherever it starts; whether moving the frame helps at all is a
    # separate question, asked on the same pixels: the warp must match the reference's edges and
    # texture clearly better than the frame does where it is, or the improvement is noise,
    # clipping edges or drift along a featureless sky. Measured: warps fitted to registered
    # synthetic frames (EV +-2..4, noise 0.002..0.02) add at most 0.006; true 1.5..7 px motions of
    # such frames add 0.02..0.09 where the fit found them, the bench's 5..17 px motions of the
    # real frobisher bracket 0.6..1.1.
    still, moved = _against_identity(ref, mov, level)
    if moved < still + IDENTITY_GAIN:
        return Alignment(
            False, identity, shift, correlation,
            f"kept in place: identity fits as well (edges correlate {still:.2f} in place, {moved:.2f} moved {shift:.1f} px)",
        )
    kind = "homography" if abs(matrix[0, 1]) + abs(matrix[1, 0]) + abs(matrix[2, :2]).sum() > 0 else "translation"
    return Alignment(True, matrix, shift, correlation, f"{kind}, moved {shift:.1f} px")


def warp(image: np.ndarray, alignment: Alignment) -> np.ndarray:
    """Resample `image` into the reference's coordinates (edges replicated)."""
    import cv2

    if not alignment.applied:
        return image
    height, width = image.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpPerspective(
        np.ascontiguousarray(image, dtype=np.float32), alignment.matrix, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE
    )
