"""Image-quality metrics of the HDR field: PSNR on linear and mu-law tone-mapped radiance."""
from __future__ import annotations

import numpy as np

from smarthdr_cli.tonemap import MU, mu_law


def psnr(prediction: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; inf for identical images."""
    error = float(np.mean((np.asarray(prediction, np.float64) - np.asarray(target, np.float64)) ** 2))
    return float("inf") if error == 0.0 else 10.0 * np.log10(data_range**2 / error)


def psnr_l(prediction: np.ndarray, target: np.ndarray) -> float:
    """PSNR-l: linear HDR values clipped to [0, 1], as in the Kalantari protocol."""
    return psnr(np.clip(prediction, 0, 1), np.clip(target, 0, 1))


def psnr_mu(prediction: np.ndarray, target: np.ndarray, mu: float = MU) -> float:
    """PSNR-mu: after the mu-law of eq. (4) on values clipped to [0, 1]."""
    return psnr(mu_law(np.clip(prediction, 0, 1), mu), mu_law(np.clip(target, 0, 1), mu))
