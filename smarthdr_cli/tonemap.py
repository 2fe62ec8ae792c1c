"""Tone mapping: the mu-law of eq. (4) (metrics, losses) and preview operators for people."""
from __future__ import annotations

from typing import Any

import numpy as np

MU = 5000.0


def mu_law(hdr: Any, mu: float = MU) -> Any:
    """T(I) = log(1 + mu I) / log(1 + mu), eq. (4); for I in [0, 1], works on numpy and torch."""
    if isinstance(hdr, np.ndarray):
        return np.log1p(mu * hdr) / np.log1p(mu)
    import torch

    return torch.log1p(mu * hdr) / float(np.log1p(mu))


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def reinhard(hdr: np.ndarray, key: float = 0.18, white_percentile: float = 99.9) -> np.ndarray:
    """Reinhard et al. 2002 global operator with a white point; sRGB-encoded result in [0, 1].

    The key maps the log-average luminance to middle grey; the white point (burn-out luminance)
    is a high percentile of the scaled luminance, so a few specular pixels do not dim the image.
    """
    hdr = np.maximum(np.nan_to_num(hdr.astype(np.float32)), 0.0)
    lum = _luminance(hdr)
    log_average = float(np.exp(np.mean(np.log(lum + 1e-6))))
    scaled = key / max(log_average, 1e-9) * lum
    white = max(float(np.percentile(scaled, white_percentile)), 1e-6)
    mapped = scaled * (1.0 + scaled / white**2) / (1.0 + scaled)
    ratio = np.where(lum > 1e-9, mapped / np.maximum(lum, 1e-9), 0.0)
    return _srgb_encode(hdr * ratio[:, :, None]).astype(np.float32)


def mu_preview(hdr: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Mu-law of eq. (4) after scaling a high percentile to 1: how the metrics see the image."""
    hdr = np.maximum(np.nan_to_num(hdr.astype(np.float32)), 0.0)
    peak = max(float(np.percentile(hdr, percentile)), 1e-9)
    return mu_law(np.clip(hdr / peak, 0.0, 1.0)).astype(np.float32)


OPERATORS = {"reinhard": reinhard, "mu": mu_preview}


def to_8bit(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
