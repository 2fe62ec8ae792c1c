"""A simple camera model that renders LDR brackets from linear radiance.

Used for the bundled example, the synthetic round-trip tests and the benchmarks: exposure, optional
Gaussian-Poisson noise, clipping, a response curve (gamma 2.2 or an S-shaped, camera-like curve) and
quantisation to 8 or 16 bits.
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
    deviation of read noise relative to full scale; shot noise follows with the same scale.
    """
    rng = np.random.default_rng(seed)
    scenes = [radiance] * len(exposures) if isinstance(radiance, np.ndarray) else list(radiance)
    frames = []
    for scene, t in zip(scenes, exposures):
        signal = np.asarray(scene, dtype=np.float64) * t
        if noise > 0:
            std = np.sqrt(noise**2 + noise * 0.01 * np.clip(signal, 0, None))
            signal = signal + rng.normal(0.0, 1.0, signal.shape) * std
        encoded = curve(np.clip(signal, 0.0, 1.0))
        top = (1 << bits) - 1
        dtype = np.uint8 if bits == 8 else np.uint16
        frames.append(np.round(np.clip(encoded, 0, 1) * top).astype(dtype))
    return frames
