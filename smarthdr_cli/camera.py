"""The sensor model: how a camera turns linear radiance into LDR codes (core: numpy only).

Exposure, optional Gaussian-Poisson noise, clipping, a response curve (gamma 2.2, an S-shaped
camera-like curve or a film-like curve, optionally lifted by a black offset) and quantisation to
8 or 16 bits: the forward model of what `response.py` inverts. It is the one camera of the
project: the synthetic data engine (`smarthdr_cli.data.synth.capture`) shoots every bracket with
`capture_bracket`, and `render_bracket` is the same call with a seed, for tests, benchmarks and
the bundled example (whose scenes come from `smarthdr_cli.data.synth.fixed_scene`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from smarthdr_cli.bracket import GAMMA

Curve = Callable[[np.ndarray], np.ndarray]


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


RESPONSES: dict[str, Curve] = {"gamma": gamma_curve, "s-curve": s_curve, "film": film_curve}  # the curves by name


def with_black(curve: Curve, black: float) -> Curve:
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
    curve: Curve = gamma_curve,
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


def capture_bracket(
    radiance: Sequence[np.ndarray],
    exposures: Sequence[float],
    *,
    curve: Curve,
    bits: int,
    read_noise: float,
    shot_gain: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """One frame per (radiance, exposure) pair, short to long, the noise drawn from `rng` in that
    order: the one bracket renderer, so a seed gives the same frames wherever it is called from."""
    return [
        expose(scene, t, curve=curve, bits=bits, read_noise=read_noise, shot_gain=shot_gain, rng=rng)
        for scene, t in zip(radiance, exposures)
    ]


def render_bracket(
    radiance: np.ndarray | Sequence[np.ndarray],
    exposures: Sequence[float],
    *,
    curve: Curve = gamma_curve,
    bits: int = 8,
    noise: float = 0.0,
    seed: int = 0,
) -> list[np.ndarray]:
    """LDR frames (uint8 or uint16 HxWx3) of `radiance` at each exposure.

    `radiance` is one image (static scene) or one per exposure (dynamic scene). Radiance is
    relative: a value of 1 saturates the frame whose exposure is 1. `noise` is the standard
    deviation of read noise relative to full scale; shot noise follows with the same scale
    (`sensor_noise` with `shot_gain = noise / 100`). Works in float64 (`capture_bracket` with a
    seeded generator).
    """
    scenes = [radiance] * len(exposures) if isinstance(radiance, np.ndarray) else list(radiance)
    return capture_bracket(
        [np.asarray(scene, dtype=np.float64) for scene in scenes], exposures,
        curve=curve, bits=bits, read_noise=noise, shot_gain=noise * 0.01, rng=np.random.default_rng(seed),
    )
