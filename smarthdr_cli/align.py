"""Pre-alignment of hand-held brackets: each non-reference frame is warped onto the reference.

Frames of different exposure cannot be compared directly, so both are mapped to log radiance
(`log(x ** 2.2 / t)`), where a correct exposure ratio makes them equal, and only pixels valid in
both (neither clipped nor near black) drive the fit. The fit is OpenCV's ECC (Evangelidis & Psarakis
2008), coarse to fine. A fit that fails, correlates poorly or moves the frame implausibly far is
discarded, and the frame stays where it was: a wrong shift is worse than none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from smarthdr_cli.bracket import GAMMA, channel_max

AlignMode = Literal["none", "translation", "homography"]
ALIGN_MODES: tuple[str, ...] = ("none", "translation", "homography")
MAX_SHIFT = 0.04  # of the image diagonal: larger motions are not a hand-held bracket
MIN_CORRELATION = 0.6
HOMOGRAPHY_GAIN = 0.001  # correlation a homography must add over a translation to be used
MIN_SHIFT_PX = 0.5  # below this the frame is already aligned; resampling it would only blur it
_WORK_SIDE = 1024  # long side of the finest level the fit runs on


@dataclass(frozen=True)
class Alignment:
    """What happened to one frame: the warp (3x3, reference -> frame coordinates) and why."""

    applied: bool
    matrix: np.ndarray
    shift_px: float  # largest displacement of an image corner, in full-resolution pixels
    correlation: float
    reason: str


def _log_radiance(image: np.ndarray, exposure: float, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    grey = image.astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    valid = (channel_max(image) < 0.95) & (grey > 0.04)
    return np.log(np.maximum(grey, 1e-4) ** gamma / exposure).astype(np.float32), valid


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
    """ECC fit coarse to fine from the full-resolution warp `start`; (warp, correlation) or None."""
    import cv2

    height, width = ref_log.shape
    motion = cv2.MOTION_TRANSLATION if mode == "translation" else cv2.MOTION_HOMOGRAPHY
    finest = min(1.0, _WORK_SIDE / max(height, width))
    scales = [finest / 4, finest / 2, finest] if max(height, width) * finest >= 256 else [finest]
    correlation = 0.0
    full = start.astype(np.float64)
    for scale in scales:
        to_level = np.diag([scale, scale, 1.0])
        warp = (to_level @ full @ np.linalg.inv(to_level)).astype(np.float32)
        template = _resize(ref_log, scale)
        image = _resize(mov_log, scale)
        mask = (_resize(valid.astype(np.uint8) * 255, scale) > 200).astype(np.uint8)
        matrix = warp[:2].copy() if mode == "translation" else warp
        try:
            correlation, matrix = cv2.findTransformECC(
                template, image, matrix, motion,
                (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5), mask, 5,
            )
        except cv2.error:
            return None
        warp = np.vstack([matrix, [0, 0, 1]]) if mode == "translation" else matrix
        full = np.linalg.inv(to_level) @ warp.astype(np.float64) @ to_level
    if not np.isfinite(full).all():
        return None
    return full, float(correlation)


def estimate(
    reference: np.ndarray,
    ref_exposure: float,
    moving: np.ndarray,
    moving_exposure: float,
    mode: AlignMode,
    gamma: float = GAMMA,
) -> Alignment:
    """Fit the warp that maps `moving` onto `reference`; identity with a reason when it fails.

    `homography` first fits a translation and keeps the homography only where it matches
    clearly better (HOMOGRAPHY_GAIN in correlation): with clipped skies or moving objects the
    extra degrees of freedom otherwise fit noise and tilt the frame's corners.
    """
    identity = np.eye(3)
    height, width = reference.shape[:2]
    if mode == "none":
        return Alignment(False, identity, 0.0, 1.0, "alignment off")
    ref_log, ref_valid = _log_radiance(reference, ref_exposure, gamma)
    mov_log, mov_valid = _log_radiance(moving, moving_exposure, gamma)
    valid = ref_valid & mov_valid
    if valid.mean() < 0.05:
        return Alignment(False, identity, 0.0, 0.0, "too few pixels well exposed in both frames")
    # Pixels valid in the reference but clipped in the moving frame take the reference's value,
    # so clipping does not pull the fit; the mask restricts the fit to mutually valid pixels.
    mov_log = np.where(mov_valid, mov_log, ref_log)
    limit = MAX_SHIFT * float(np.hypot(height, width))

    fit = _fit(ref_log, mov_log, valid, "translation", identity)
    if fit is None:
        return Alignment(False, identity, 0.0, 0.0, "the fit did not converge")
    matrix, correlation = fit
    if mode == "homography" and _corner_shift(matrix, height, width) <= limit:
        richer = _fit(ref_log, mov_log, valid, "homography", matrix)
        if richer is not None and richer[1] >= correlation + HOMOGRAPHY_GAIN:
            if _corner_shift(richer[0], height, width) <= limit:
                matrix, correlation = richer
    shift = _corner_shift(matrix, height, width)
    if shift > limit:
        return Alignment(False, identity, shift, correlation, f"implausible motion of {shift:.0f} px")
    if correlation < MIN_CORRELATION:
        return Alignment(False, identity, shift, correlation, f"poor match (correlation {correlation:.2f})")
    if shift < MIN_SHIFT_PX:
        return Alignment(False, identity, shift, correlation, f"already aligned ({shift:.2f} px)")
    kind = "homography" if abs(matrix[0, 1]) + abs(matrix[1, 0]) + abs(matrix[2, :2]).sum() > 0 else "translation"
    return Alignment(True, matrix, shift, correlation, f"moved {shift:.1f} px ({kind})")


def warp(image: np.ndarray, alignment: Alignment) -> np.ndarray:
    """Resample `image` into the reference's coordinates (edges replicated)."""
    import cv2

    if not alignment.applied:
        return image
    height, width = image.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpPerspective(
        image, alignment.matrix, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE
    ).astype(np.float32)
