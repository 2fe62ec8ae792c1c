"""Camera response: bring JPEG/PNG/TIFF frames into the gamma-2.2 domain that eq. (1) assumes.

A camera's JPEG tone curve is not x^2.2 (typically an S-curve with a shoulder). Assuming gamma
2.2 makes the long frame look inconsistent with the exposure ratio (about 2x off in the shadows),
and a network or a ghost test then rejects it. So the response is estimated from the bracket
itself (Debevec & Malik 1997, OpenCV's implementation), every frame is linearised with it and
re-encoded as `linear ** (1 / 2.2)`, after which `x ** 2.2 / t` is proportional to radiance.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from smarthdr_cli.bracket import GAMMA
from smarthdr_cli.errors import InputError

CODES = 256
MIN_DISTINCT_CODES = 64


@dataclass(frozen=True)
class Response:
    """Relative linear exposure for each 8-bit code, per channel (256x3), with curve[255] = 1."""

    curve: np.ndarray
    source: str  # "gamma", "calibrated", or the file it came from

    def linearise(self, image: np.ndarray) -> np.ndarray:
        """[0,1] frame -> relative linear exposure in [0,1]; 16-bit input is interpolated."""
        codes = np.clip(image, 0.0, 1.0) * (CODES - 1)
        grid = np.arange(CODES, dtype=np.float32)
        out = np.empty_like(image, dtype=np.float32)
        for channel in range(3):
            out[..., channel] = np.interp(codes[..., channel], grid, self.curve[:, channel])
        return out

    def to_gamma_domain(self, image: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
        return np.power(self.linearise(image), 1.0 / gamma, dtype=np.float32)


def gamma_response(gamma: float = GAMMA) -> Response:
    codes = np.linspace(0.0, 1.0, CODES, dtype=np.float32)
    return Response(np.repeat((codes**gamma)[:, None], 3, axis=1), "gamma")


def _normalise_curve(curve: np.ndarray) -> np.ndarray | None:
    """Monotone, starting at >= 0 and ending at exactly 1 per channel; None if degenerate."""
    curve = np.asarray(curve, dtype=np.float64).reshape(CODES, -1)
    if curve.shape[1] == 1:
        curve = np.repeat(curve, 3, axis=1)
    if curve.shape[1] != 3 or not np.isfinite(curve).all():
        return None
    curve = np.maximum.accumulate(np.maximum(curve, 0.0), axis=0)
    top = curve[-1]
    if np.any(top <= 0) or np.any(curve[CODES // 2] <= 0):
        return None
    return (curve / top).astype(np.float32)


def calibrate(images: Sequence[np.ndarray], exposures: Sequence[float]) -> Response | None:
    """Debevec-Malik response from the bracket itself, or None when the bracket cannot support it.

    A camera applies one tone curve to all three channels after white balance, so one curve is
    fitted to the samples of all channels together (the channels side by side as one grey image).
    Separate per-channel fits leave each channel's scale free and shift colours.
    """
    import cv2

    # Work on at most ~1 MP: the fit samples a grid of points and needs no full-resolution frames.
    height, width = images[0].shape[:2]
    step = max(1, int(np.ceil(np.sqrt(height * width / 1.0e6))))
    frames = []
    for image in images:
        codes = (np.clip(image[::step, ::step], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        frames.append(np.ascontiguousarray(np.concatenate([codes[:, :, c] for c in range(3)], axis=1)))
    # Too few distinct codes leave the curve to the smoothness prior alone: nothing was measured.
    if len(np.unique(np.concatenate([f.ravel() for f in frames]))) < MIN_DISTINCT_CODES:
        return None
    times = np.asarray(exposures, dtype=np.float32)
    try:
        estimator = cv2.createCalibrateDebevec(samples=300, lambda_=10.0, random=False)
        curve = _normalise_curve(np.asarray(estimator.process(frames, times)).reshape(CODES, 1))
    except cv2.error:
        return None
    if curve is None:
        return None
    # A usable response rises by several stops from the dark end to white; flat curves mean the
    # bracket had too little overlap or texture to constrain it.
    if np.any(curve[32] <= 0) or np.any(curve[-1] / np.maximum(curve[32], 1e-9) < 4.0):
        return None
    return Response(curve, "calibrated")


def load_response(path: Path) -> Response:
    """A response file: 256 lines of 1 or 3 numbers (relative linear exposure for codes 0..255)."""
    try:
        rows = [
            [float(v) for v in line.replace(",", " ").split()]
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot read response curve ({exc})") from None
    widths = {len(row) for row in rows}
    if len(rows) != CODES or widths not in ({1}, {3}):
        raise InputError(f"{path}: a response curve has 256 lines of 1 or 3 numbers (codes 0..255)")
    curve = _normalise_curve(np.asarray(rows))
    if curve is None:
        raise InputError(f"{path}: response curve must be finite, non-negative and rising")
    return Response(curve, str(path))
