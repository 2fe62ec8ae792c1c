"""`classic`: a non-learned merge with reference-guided ghost rejection (numpy + OpenCV filters).

Each frame is mapped to radiance by eq. (1), `L_i = x_i ** 2.2 / t_i`, and the frames are averaged
with weights `t_i * w(x_i)` (longer exposures carry less noise per unit radiance; `w` falls to 0
towards clipping). A non-reference pixel joins only where it agrees with the reference:

  each frame's pixel defines an interval of radiances consistent with it,
  `[(x - k s)^g, (x + k s)^g] / t` with s the frame's noise level (widened by the sensor's
  linear-domain noise near black), open-ended above where the frame clips. A non-reference pixel
  whose interval misses the reference's shows something else (a moving object): it is dropped,
  together with a small neighbourhood.

So the reference is always used where it is well exposed, and a clipped or noisy reference is
filled from the frames that are consistent with it (a clipped pixel is consistent with any
brighter radiance). Where every agreeing frame clips, the highest clipped radiance among them
stays: the result never shows content the reference frame contradicts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from smarthdr_backends.base import Availability, BackendOptions, MergeResult
from smarthdr_cli.bracket import Bracket, channel_max

SATURATION = 0.97  # LDR value (gamma domain) from which a pixel counts as clipped
K_SIGMA = 3.0  # how many noise standard deviations two frames may disagree by
RELATIVE_TOLERANCE = 0.12  # exposure-time and response errors of real cameras, in radiance
GHOST_DILATION = 2  # pixels added around every rejected pixel (object edges, JPEG ringing)
BAND_ROWS = 256  # rows merged at a time
HALO_ROWS = 16  # > reach of the filters: 3x3 mean and dilation, ghost dilation, Gaussian edge (3 sigma)


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
    low = np.maximum(low, 0.0) * ((1.0 - RELATIVE_TOLERANCE) / exposure)
    high = np.where(clipped, np.inf, high * ((1.0 + RELATIVE_TOLERANCE) / exposure))
    return low, high.astype(np.float32, copy=False)


def _saturation_weight(image: np.ndarray) -> np.ndarray:
    """1 for well-exposed pixels, ramping to 0 as the brightest channel approaches clipping."""
    return np.clip((SATURATION - channel_max(image)) * (1.0 / 0.15), 0.0, 1.0)


def consistency(
    images: Sequence[np.ndarray], exposures: Sequence[float], reference: int, noises: Sequence[Noise], gamma: float
) -> list[np.ndarray]:
    """Per frame, a soft [0, 1] map of where it agrees with the reference (1 for the reference)."""
    import cv2

    box = np.ones((3, 3), np.uint8)
    # Compared on 3x3 means (less noise); a mean next to a clipped pixel counts as clipped too.
    smoothed = [cv2.blur(image, (3, 3)) for image in images]
    clipped = [cv2.dilate((image >= SATURATION).view(np.uint8), box).view(bool) for image in images]
    ref_low, ref_high = _interval(smoothed[reference], clipped[reference], exposures[reference], noises[reference], gamma)
    size = 2 * GHOST_DILATION + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    maps = []
    for index, image in enumerate(smoothed):
        if index == reference:
            maps.append(np.ones(image.shape[:2], dtype=np.float32))
            continue
        low, high = _interval(image, clipped[index], exposures[index], noises[index], gamma)
        disagree = (low > ref_high) | (ref_low > high)
        ghost = cv2.dilate((disagree[..., 0] | disagree[..., 1] | disagree[..., 2]).view(np.uint8), kernel)
        keep = 1.0 - cv2.GaussianBlur(ghost.astype(np.float32), (0, 0), GHOST_DILATION)
        keep[ghost > 0] = 0.0
        maps.append(keep)
    return maps


def _merge_rows(
    images: Sequence[np.ndarray], exposures: Sequence[float], reference: int, noises: Sequence[Noise], gamma: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Merge one band of rows (with its halo); returns the HDR band and the frames' keep maps."""
    keeps = consistency(images, exposures, reference, noises, gamma)
    total = np.zeros(images[0].shape, dtype=np.float32)
    weight_sum = np.zeros(images[0].shape[:2], dtype=np.float32)
    fallback = np.zeros(images[0].shape[:2], dtype=np.float32)
    for image, exposure, keep in zip(images, exposures, keeps):
        radiance = image**gamma * (1.0 / exposure)
        weight = _saturation_weight(image) * keep * exposure
        total += weight[:, :, None] * radiance
        weight_sum += weight
        # Where every usable frame clips, the best estimate is the highest lower bound: the
        # clipped radiance of the shortest frame that agrees with the reference, made neutral
        # (partially clipped channels would otherwise tint highlights yellow or magenta).
        np.maximum(fallback, np.where(keep > 0.5, channel_max(radiance), 0.0), out=fallback)
    floor = np.float32(1e-6)
    hdr = (total + (floor * fallback)[:, :, None]) / (weight_sum + floor)[:, :, None]
    return hdr, keeps


class ClassicBackend:
    """Exposure-weighted merge in the linear domain with reference-guided ghost rejection."""

    name: ClassVar[str] = "classic"
    summary: ClassVar[str] = "non-learned weighted merge with reference-guided ghost rejection (numpy)"
    learned: ClassVar[bool] = False
    gives_uncertainty: ClassVar[bool] = False
    parallel_safe: ClassVar[bool] = True

    @classmethod
    def availability(cls, options: BackendOptions | None = None) -> Availability:
        return Availability(True, "always available (numpy and OpenCV)")

    def __init__(self, options: BackendOptions | None = None) -> None:
        self.options = options or BackendOptions()

    def merge(self, bracket: Bracket) -> MergeResult:
        # Row bands with a halo wider than every filter's reach keep memory at a few bands'
        # worth of temporaries instead of ~16 full-size images, with identical results.
        images = [np.asarray(image, dtype=np.float32) for image in bracket.images]
        exposures = [float(t) for t in bracket.exposures]
        noises = [noise_level(image, bracket.bits, bracket.gamma) for image in images]
        height = bracket.shape[0]
        hdr = np.empty(images[0].shape, dtype=np.float32)
        rejected = np.zeros(len(images))
        for top in range(0, height, BAND_ROWS):
            bottom = min(height, top + BAND_ROWS)
            start, stop = max(0, top - HALO_ROWS), min(height, bottom + HALO_ROWS)
            band, keeps = _merge_rows([im[start:stop] for im in images], exposures, bracket.reference, noises, bracket.gamma)
            hdr[top:bottom] = band[top - start : bottom - start]
            rejected += [float((1.0 - keep[top - start : bottom - start]).sum()) for keep in keeps]
        rejected /= bracket.shape[0] * bracket.shape[1]
        others = [f"{100 * r:.1f}%" for i, r in enumerate(rejected) if i != bracket.reference]
        notes = [f"ghost rejection dropped {', '.join(others)} of the other frames"]
        return MergeResult(hdr=hdr, uncertainty=None, weights_id=None, notes=notes)
