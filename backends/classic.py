"""`classic`: a non-learned merge with reference-guided ghost rejection (numpy + OpenCV filters).

Each frame is mapped to radiance by eq. (1), `L_i = x_i ** 2.2 / t_i`, and the frames are averaged
with weights `t_i * w(x_i)` (longer exposures carry less noise per unit radiance; `w` falls to 0
towards clipping). A non-reference pixel joins only where it agrees with the reference:

  each frame's pixel defines an interval of radiances consistent with it, `[(x - k s)^g, (x + k s)^g] / t`
  with s the frame's noise level (widened by the sensor's linear-domain noise near black),
  open-ended above where the frame clips. A non-reference pixel whose interval misses the reference's interval shows
  something else (a moving object): it is dropped, together with a small neighbourhood.

So the reference is always used where it is well exposed, and a clipped or noisy reference is
filled from the frames that are consistent with it (a clipped pixel is consistent with any
brighter radiance). Where every agreeing frame clips, the highest clipped radiance among them stays: the result
never shows content the reference frame contradicts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from smarthdr_backends.base import Availability, BackendOptions, MergeResult
from smarthdr_cli.bracket import Bracket

SATURATION = 0.97  # LDR value (gamma domain) from which a pixel counts as clipped
K_SIGMA = 3.0  # how many noise standard deviations two frames may disagree by
RELATIVE_TOLERANCE = 0.12  # exposure-time and response errors of real cameras, in radiance
GHOST_DILATION = 2  # pixels added around every rejected pixel (object edges, JPEG ringing)


@dataclass(frozen=True)
class Noise:
    """A frame's noise: `ldr` in LDR units (quantisation, compression), `linear` in linear units.

    Sensor noise is roughly constant in the linear domain, so in the gamma domain it grows without
    bound towards black; a single LDR-domain level would flag dark pixels of short frames as
    ghosts. Each observation's interval is the union of both.
    """

    ldr: float
    linear: float


def _robust_sigma(values: np.ndarray) -> float:
    """Standard deviation of the residual of a 3x3 median filter (MAD; 1.3 corrects for the filter)."""
    return 1.4826 * float(np.median(np.abs(values))) * 1.3 if values.size >= 100 else 0.0


def noise_level(image: np.ndarray, bits: int = 8, gamma: float = 2.2) -> Noise:
    """Robust noise estimate of one frame from the residual of a 3x3 median filter."""
    import cv2

    grey = image.mean(axis=2).astype(np.float32)
    step = max(1, int(np.sqrt(grey.size / 2.0e6)))  # ~2 MP is plenty for a median
    grey = np.ascontiguousarray(grey[::step, ::step])
    linear = grey**gamma
    usable = (grey > 0.02) & (grey < SATURATION)
    dark = (grey > 0.0) & (grey < 0.3)
    ldr = _robust_sigma((grey - cv2.medianBlur(grey, 3))[usable])
    lin = _robust_sigma((linear - cv2.medianBlur(linear, 3))[dark])
    return Noise(ldr=max(ldr, 1.0 / ((1 << bits) - 1)), linear=lin)


def _interval(
    image: np.ndarray, clipped: np.ndarray, exposure: float, noise: Noise, gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Radiance interval per pixel and channel that an observation `image` is consistent with."""
    linear = image**gamma
    low = np.minimum(np.maximum(image - K_SIGMA * noise.ldr, 0.0) ** gamma, linear - K_SIGMA * noise.linear)
    high = np.maximum(np.minimum(image + K_SIGMA * noise.ldr, 1.0) ** gamma, linear + K_SIGMA * noise.linear)
    low = np.maximum(low, 0.0) / exposure * (1.0 - RELATIVE_TOLERANCE)
    high = np.where(clipped, np.inf, high / exposure * (1.0 + RELATIVE_TOLERANCE))
    return low.astype(np.float32), high.astype(np.float32)


def _saturation_weight(image: np.ndarray) -> np.ndarray:
    """1 for well-exposed pixels, ramping to 0 as the brightest channel approaches clipping."""
    peak = image.max(axis=2)
    return np.clip((SATURATION - peak) / 0.15, 0.0, 1.0).astype(np.float32)


def consistency(bracket: Bracket, sigmas: list[Noise]) -> list[np.ndarray]:
    """Per frame, a soft [0, 1] map of where it agrees with the reference (1 for the reference)."""
    import cv2

    ref = bracket.reference
    box = np.ones((3, 3), np.uint8)
    # Compared on 3x3 means (less noise); a mean next to a clipped pixel counts as clipped too.
    smoothed = [cv2.blur(image.astype(np.float32), (3, 3)) for image in bracket.images]
    clipped = [cv2.dilate((image >= SATURATION).astype(np.uint8), box) > 0 for image in bracket.images]
    ref_low, ref_high = _interval(smoothed[ref], clipped[ref], bracket.exposures[ref], sigmas[ref], bracket.gamma)
    size = 2 * GHOST_DILATION + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    maps = []
    for index, image in enumerate(smoothed):
        if index == ref:
            maps.append(np.ones(image.shape[:2], dtype=np.float32))
            continue
        low, high = _interval(image, clipped[index], bracket.exposures[index], sigmas[index], bracket.gamma)
        agree = ((low <= ref_high) & (ref_low <= high)).all(axis=2)
        ghost = cv2.dilate((~agree).astype(np.uint8), kernel)
        keep = 1.0 - cv2.GaussianBlur(ghost.astype(np.float32), (0, 0), GHOST_DILATION)
        maps.append(np.where(ghost > 0, 0.0, keep).astype(np.float32))
    return maps


class ClassicBackend:
    """Exposure-weighted merge in the linear domain with reference-guided ghost rejection."""

    name: ClassVar[str] = "classic"
    summary: ClassVar[str] = "non-learned weighted merge with reference-guided ghost rejection (numpy)"
    learned: ClassVar[bool] = False
    gives_uncertainty: ClassVar[bool] = False

    @classmethod
    def availability(cls, options: BackendOptions | None = None) -> Availability:
        return Availability(True, "always available (numpy and OpenCV)")

    def __init__(self, options: BackendOptions | None = None) -> None:
        self.options = options or BackendOptions()

    def merge(self, bracket: Bracket) -> MergeResult:
        ref = bracket.reference
        sigmas = [noise_level(image, bracket.bits, bracket.gamma) for image in bracket.images]
        keeps = consistency(bracket, sigmas)
        total = np.zeros(bracket.images[0].shape, dtype=np.float32)
        weight_sum = np.zeros(bracket.shape, dtype=np.float32)
        fallback = np.zeros(bracket.images[0].shape, dtype=np.float32)
        for image, exposure, keep in zip(bracket.images, bracket.exposures, keeps):
            radiance = image.astype(np.float32) ** bracket.gamma / np.float32(exposure)
            weight = np.float32(exposure) * _saturation_weight(image) * keep
            total += weight[:, :, None] * radiance
            weight_sum += weight
            # Where every usable frame clips, the best estimate is the highest lower bound: the
            # clipped radiance of the shortest frame that agrees with the reference, made neutral
            # (partially clipped channels would otherwise tint highlights yellow or magenta).
            brightest = np.where(keep > 0.5, radiance.max(axis=2), 0.0)
            np.maximum(fallback, brightest[:, :, None], out=fallback)
        floor = np.float32(1e-6)
        hdr = (total + floor * fallback) / (weight_sum + floor)[:, :, None]
        rejected = [float(1.0 - keep.mean()) for i, keep in enumerate(keeps) if i != ref]
        notes = [f"ghost rejection dropped {', '.join(f'{100 * r:.1f}%' for r in rejected)} of the other frames"]
        return MergeResult(hdr=hdr.astype(np.float32), uncertainty=None, weights_id=None, notes=notes)
