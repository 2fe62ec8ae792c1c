"""Capture of one scene: metering (where the radiance sits against the frames' clip levels) and
shooting the bracket with the project's one sensor model (`smarthdr_cli.camera`), stored as
TIFF codes or as camera JPEGs.

Exposures are normalised so the shortest frame has t = 1 (radiance 1 saturates it); noise is
drawn in the linear domain, scaled per scene by a random ISO factor 2^U(iso_stops).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from smarthdr_cli.camera import capture_bracket
from smarthdr_cli.data.synth.primitives import log_uniform, luminance
from smarthdr_cli.data.synth.profiles import REFERENCE, Capture
from smarthdr_cli.errors import InputError, OutputError


def meter(
    image: np.ndarray, exposures: Sequence[float], rng: np.random.Generator, capture: Capture
) -> tuple[np.ndarray, dict[str, Any]]:
    """Scale radiance as a photographer brackets: by default, highlights kept by the short frame, mostly.

    The 99.9th percentile of luminance lands at a random level of the capture's key range
    (KEY_RANGE unless a profile placed it elsewhere; short frame's clip level = 1), unless that would clip the long
    frame's median pixel (the scale is lowered) or leave the reference frame's median in deep
    shadow (raised; highlights then clip): real brackets are metered around the reference. Last,
    the long frame keeps some unclipped pixels where the capture asks for it (`long_low_max`):
    `merge` refuses an all-white frame.
    """
    levels = luminance(image, max(1, min(image.shape[:2]) // 256))
    high, median, low = (float(v) for v in np.percentile(levels, [99.9, 50.0, 5.0]))
    if not high > 0:
        raise InputError("scene radiance is black")
    target = log_uniform(rng, *capture.key_range)
    scale = target / high
    if median > 0:
        scale = min(scale, capture.long_median_max / (median * exposures[-1]))
        scale = max(scale, capture.reference_median_min / (median * exposures[REFERENCE]))
    if low > 0:
        scale = min(scale, capture.long_low_max / (low * exposures[-1]))
    image *= np.float32(scale)
    return image, {"key": high * scale, "scale": scale}


def shoot(
    radiance: Sequence[np.ndarray],
    exposures: Sequence[float],
    shot: Capture,
    noise: float,
    shot_gain: float,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[bytes] | None, dict[str, float]]:
    """The bracket's frames (codes as stored: decoded again from JPEG when the capture stores JPEGs),
    the JPEG files or None, and the noise drawn: ISO factor, read noise, shot gain.

    `noise` and `shot_gain` are the settings' values before the ISO factor; `rng` is the scene's
    capture stream (the ISO factor first, then the frames' noise, short to long).
    """
    iso = float(2.0 ** rng.uniform(*shot.iso_stops))
    read, gain = noise * iso, shot_gain * iso
    images = capture_bracket(radiance, exposures, curve=shot.curve(), bits=shot.bits, read_noise=read, shot_gain=gain, rng=rng)
    jpegs = [_jpeg(image, shot.jpeg_quality) for image in images] if shot.jpeg_quality else None
    if jpegs is not None:
        images = [_unjpeg(data) for data in jpegs]
    return images, jpegs, {"iso_factor": iso, "read": read, "shot_gain": gain}


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
    """An 8-bit RGB frame as a baseline JPEG (4:2:0 chroma, as cameras store them)."""
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(frame[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OutputError("OpenCV could not encode a JPEG frame")
    return data.tobytes()


def _unjpeg(data: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].copy()
