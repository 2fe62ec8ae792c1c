"""Image-quality metrics of the HDR field: PSNR and SSIM on linear and mu-law tone-mapped radiance."""
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


def ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """SSIM of Wang et al. 2004 as in their MATLAB code: 11x11 Gaussian window (sigma 1.5),
    K1 0.01, K2 0.03, data range 1, averaged over the colour channels."""
    from skimage.metrics import structural_similarity

    prediction = np.asarray(prediction, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    channel_axis = 2 if prediction.ndim == 3 else None
    return float(
        structural_similarity(
            prediction, target, data_range=1.0, channel_axis=channel_axis, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


def ssim_l(prediction: np.ndarray, target: np.ndarray) -> float:
    """SSIM-l: on linear values clipped to [0, 1]."""
    return ssim(np.clip(prediction, 0, 1), np.clip(target, 0, 1))


def ssim_mu(prediction: np.ndarray, target: np.ndarray, mu: float = MU) -> float:
    """SSIM-mu: after the mu-law of eq. (4) on values clipped to [0, 1]."""
    return ssim(mu_law(np.clip(prediction, 0, 1), mu), mu_law(np.clip(target, 0, 1), mu))
