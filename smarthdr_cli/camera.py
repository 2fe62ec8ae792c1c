"""A simple camera model that renders LDR brackets from linear radiance.

Used for the bundled example, the synthetic round-trip tests, the benchmarks and the synthetic
training data (`smarthdr_cli.data.synth`): exposure, optional Gaussian-Poisson noise, clipping, a
response curve (gamma 2.2, an S-shaped camera-like curve or a film-like curve, optionally lifted by a black offset) and quantisation to 8 or 16 bits.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from smarthdr_cli.bracket import GAMMA


def gamma_curve(linear: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
    return np.power(np.clip(linear, 0.0, 1.0), 1.0 / gamma)


def s_curve(linear: np.ndarray, contrast: float = 1.6) -> np.ndarray:
    """A camera-like JPEG tone curve: sRGB encoding followed by a contrast S-curve (not x^(1/2.2))."""
    linear = np.clip(linear, 0.0, 1.0)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
    return encoded**contrast / (encoded**contrast + (1.0 - encoded) ** contrast)


def film_curve(linear: np.ndarray, toe: float = 60.0, contrast: float = 0.9) -> np.ndarray:
    """A film-like characteristic curve: the log response of a negative, scaled to [0, 1]. It
    lifts the midtones and compresses the highlights far more than x^(1/2.2) (a long shoulder),
    with a toe in the deep shadows; `toe` sets where the log part starts (log1p(toe * x)),
    `contrast` bends the midtones."""
    linear = np.clip(linear, 0.0, 1.0)
    encoded = np.log1p(toe * linear) / np.log1p(toe)
    return encoded**contrast


def with_black(curve: Callable[[np.ndarray], np.ndarray], black: float) -> Callable[[np.ndarray], np.ndarray]:
    """`curve` whose lowest code is `black` (film base, scanner or JPEG lift), not 0: the encoded
    range [0, 1] is squeezed into [black, 1]."""

    def lifted(linear: np.ndarray) -> np.ndarray:
        return black + (1.0 - black) * curve(linear)

    return lifted


def sensor_noise(signal: np.ndarray, read_noise: float, shot_gain: float, rng: np.random.Generator) -> np.ndarray:
    """`signal` (linear, relative to full scale) plus heteroscedastic Gaussian (Poisson-Gaussian) noise.

    Variance `read_noise^2 + shot_gain * signal`: read noise is constant, shot (photon) noise grows
    with the signal like a Poisson count (the Gaussian approximation of Foi et al. 2008, exact
    enough above a few photons and much faster to draw). The float type of `signal` is kept.
    """
    std = np.sqrt(read_noise**2 + shot_gain * np.clip(signal, 0, None))
    if signal.dtype == np.float64:
        normal = rng.normal(0.0, 1.0, signal.shape)
    else:
        normal = rng.standard_normal(signal.shape, dtype=np.float32)
    return signal + normal * std


def quantise(encoded: np.ndarray, bits: int) -> np.ndarray:
    """Encoded values in [0, 1] (clipped) as uint8 or uint16 codes."""
    top = (1 << bits) - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    return np.round(np.clip(encoded, 0, 1) * top).astype(dtype)


def expose(
    radiance: np.ndarray,
    exposure: float,
    *,
    curve: Callable[[np.ndarray], np.ndarray] = gamma_curve,
    bits: int = 8,
    read_noise: float = 0.0,
    shot_gain: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One LDR frame: radiance x exposure, sensor noise, clipping, response curve, quantisation.

    Works in the float type of `radiance` (float32 for speed, float64 for `render_bracket`).
    """
    signal = radiance * exposure
    if read_noise > 0 or shot_gain > 0:
        signal = sensor_noise(signal, read_noise, shot_gain, rng if rng is not None else np.random.default_rng())
    return quantise(curve(np.clip(signal, 0.0, 1.0)), bits)


def render_bracket(
    radiance: np.ndarray | Sequence[np.ndarray],
    exposures: Sequence[float],
    *,
    curve: Callable[[np.ndarray], np.ndarray] = gamma_curve,
    bits: int = 8,
    noise: float = 0.0,
    seed: int = 0,
) -> list[np.ndarray]:
    """LDR frames (uint8 or uint16 HxWx3) of `radiance` at each exposure.

    `radiance` is one image (static scene) or one per exposure (dynamic scene). Radiance is
    relative: a value of 1 saturates the frame whose exposure is 1. `noise` is the standard
    deviation of read noise relative to full scale; shot noise follows with the same scale
    (`sensor_noise` with `shot_gain = noise / 100`).
    """
    rng = np.random.default_rng(seed)
    scenes = [radiance] * len(exposures) if isinstance(radiance, np.ndarray) else list(radiance)
    return [
        expose(np.asarray(scene, dtype=np.float64), t, curve=curve, bits=bits, read_noise=noise, shot_gain=noise * 0.01, rng=rng)
        for scene, t in zip(scenes, exposures)
    ]


def value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth random texture, about [0, 1] (cubic overshoot aside): a random grid of `cell`-pixel
    spacing, cubic-interpolated to height x width (float32)."""
    import cv2

    small = rng.random((max(2, int(height // cell)), max(2, int(width // cell))), dtype=np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def procedural_radiance(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic HDR test scene (float32 HxWx3, relative radiance, max about 1).

    A sky gradient with a sun (the brightest value, just below clipping at exposure 1), a
    textured ground with reflectance variation about 300x darker than the sky, a window-like
    bright patch and a cast shadow: enough range that every frame of an EV -2/0/+2 bracket clips
    somewhere or sinks into noise somewhere.
    """
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    horizon = 0.45 + 0.05 * np.sin(cols * 6.0 + seed)
    sky = (0.10 + 0.25 * (1.0 - rows / 0.45)) * np.ones_like(cols)
    sky_rgb = np.stack([sky * 0.75, sky * 0.9, sky * 1.1], axis=2)

    def texture(scale: int) -> np.ndarray:
        return value_noise(rng, height, width, scale)

    albedo = 0.15 + 0.55 * np.clip(0.6 * texture(48) + 0.4 * texture(6), 0.0, 1.0)
    tint = np.stack([1.0 + 0.3 * texture(64), 0.9 + 0.2 * texture(64), 0.7 + 0.3 * texture(64)], axis=2)
    ground = (0.004 + 0.02 * albedo)[:, :, None] * tint
    shadow_x = 0.25 + 0.2 * rng.random()
    in_shadow = (np.abs(cols - shadow_x) < 0.12) & (rows > horizon + 0.1)
    ground = np.where(in_shadow[:, :, None], ground * 0.12, ground)
    image = np.where((rows < horizon)[:, :, None], sky_rgb, ground)

    sun_y, sun_x = 0.18 * height, (0.6 + 0.25 * rng.random()) * width
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = 0.03 * min(height, width)
    distance = np.hypot(yy - sun_y, xx - sun_x)
    glow = 0.6 * np.exp(-((distance / (4 * radius)) ** 2))
    image = image + glow[:, :, None] * np.array([1.0, 0.9, 0.7], dtype=np.float32)
    image = np.where((distance < radius)[:, :, None], 0.98, image)

    window = (np.abs(yy - 0.62 * height) < 0.06 * height) & (np.abs(xx - 0.8 * width) < 0.05 * width)
    image = np.where(window[:, :, None], np.array([0.2, 0.18, 0.12], dtype=np.float32), image)
    return np.clip(image, 1e-5, 1.0).astype(np.float32)


def moving_object(
    radiance: np.ndarray, count: int, reference: int, *, step: float = 0.08, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-frame radiance with a textured object that moves between frames, and its mask.

    The object sits at a different place in every frame (a horizontal step of `step` x width
    per frame); the mask marks every pixel it covers in any frame, where a merge that ghosts
    shows the object more than once.
    """
    import cv2

    rng = np.random.default_rng(seed + 1)
    height, width = radiance.shape[:2]
    size = (int(0.22 * height), int(0.14 * width))
    pattern = cv2.resize(rng.random((8, 8), dtype=np.float32), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    colour = np.array([0.9, 0.25, 0.2], dtype=np.float32)
    texture = (0.002 + 0.05 * pattern)[:, :, None] * colour
    top = int(0.55 * height)
    frames, mask = [], np.zeros((height, width), dtype=bool)
    for index in range(count):
        left = int((0.3 + step * (index - reference)) * width)
        scene = radiance.copy()
        scene[top : top + size[0], left : left + size[1]] = texture
        mask[top : top + size[0], left : left + size[1]] = True
        frames.append(scene)
    return frames, mask
