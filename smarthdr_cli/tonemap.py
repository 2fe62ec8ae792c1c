"""Tone mapping: the mu-law of eq. (4) (metrics, losses) and preview operators for people."""
from __future__ import annotations

from typing import Any, Callable

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


# Exposure fusion of synthetic exposures. On Frobisher (a room lit by a window, 12 stops between
# the 1st and 99.5th luminance percentiles; classic merge) the global Reinhard curve renders the
# clouds outside at 241/255 with a standard deviation of 5 codes; fused, they sit at 189 with 23,
# the houses and hills below them keep twice the contrast (std 17 -> 34), and the room is brighter
# (mean 67 -> 83). Of OpenCV's operators, Mantiuk's showed the clouds too (std 15) but left the
# room dim and flat (mean 59, std 9) and the clipped sky grey; Drago's left the clouds as flat as
# Reinhard's (std 5); Reinhard's with light adaptation washed window and room out alike.
# docs/preview-operators-frobisher.jpg shows the old default and this one.
FUSION_TOP = 0.35  # the darkest synthetic exposure puts the 99.5th luminance percentile here (linear)
FUSION_BOTTOM = 0.05  # the brightest puts the 1st percentile of lit pixels here
FUSION_STEP = 3.0  # stops between synthetic exposures at most ...
FUSION_MAX_EXPOSURES = 4  # ... and at most this many (each costs about 1 s at 12 MP on 2 cores)
FUSION_MAX_STOPS = 20.0  # range considered: deeper shadows stay dark rather than cost exposures
DISPLAY_GAMMA = 2.2
_WELL_EXPOSED_SIGMA = 0.2  # Mertens et al.'s (and OpenCV's) well-exposedness: exp(-(v - 0.5)^2 / (2 0.2^2))


def _fusion_gains(hdr: np.ndarray) -> list[float]:
    """Gains of the synthetic exposures: from one that keeps the highlights to one that lifts the
    shadows, evenly spaced in stops. Percentiles of a fixed subsample: fast, and the same every run."""
    step = max(1, int(np.sqrt(hdr.shape[0] * hdr.shape[1] / 1.0e6)))
    lum = _luminance(hdr[::step, ::step]).ravel()
    lit = lum[lum > 0]
    if lit.size == 0:
        return []
    high = float(np.percentile(lit, 99.5))
    low = max(float(np.percentile(lit, 1.0)), high * 2.0**-FUSION_MAX_STOPS)
    darkest, brightest = FUSION_TOP / high, FUSION_BOTTOM / low
    stops = max(float(np.log2(brightest / darkest)), 0.0)
    count = int(min(FUSION_MAX_EXPOSURES, max(2, np.ceil(stops / FUSION_STEP) + 1)))
    return [darkest * 2.0 ** (stops * i / (count - 1)) for i in range(count)]


def exposure_fusion(exposures: list[np.ndarray]) -> np.ndarray:
    """Mertens et al. 2007 with well-exposedness weights only, on 8-bit HxWx3 exposures: what
    `cv2.createMergeMertens(0, 0, 1).process(exposures)` computes (tests hold them to 1e-5).

    Written out with OpenCV's pyramid functions because OpenCV's MergeMertens adds the exposures'
    weights and pyramids from parallel threads in whatever order they finish: two runs differ
    (on Frobisher, four pixels by one 8-bit code), and pinned to one thread it takes 8-9 s at
    12 MP on two cores where this takes 2-3 s.
    """
    import cv2

    height, width = exposures[0].shape[:2]
    levels = int(np.log2(min(height, width)))
    codes = np.arange(256, dtype=np.float32) / 255.0
    log_weight = (-((codes - 0.5) ** 2) / (2 * _WELL_EXPOSED_SIGMA**2)).astype(np.float32)
    table = np.repeat(log_weight[None, :, None], 3, axis=2)  # 1x256x3: one table per channel
    ones = np.ones((1, 3), dtype=np.float32)
    weights = []
    for exposure in exposures:  # the product over channels, as exp of the sum of their logs
        weight = cv2.exp(cv2.transform(cv2.LUT(exposure, table), ones))
        # numpy, not cv2.add(weight, 1e-12): OpenCV 5.1 reads a 1x1 array as a 4-element scalar
        weights.append(np.add(weight, np.float32(1e-12), out=weight))
    total = weights[0].copy()
    for weight in weights[1:]:
        cv2.add(total, weight, dst=total)
    result: list[np.ndarray] = []
    for exposure, weight in zip(exposures, weights):
        image = np.multiply(exposure, np.float32(1.0 / 255.0), dtype=np.float32)
        weight = cv2.divide(weight, total, dst=weight)
        for level in range(levels + 1):
            coarser = cv2.pyrDown(image) if level < levels else image
            if level < levels:  # the Laplacian level: what the next coarser level cannot explain
                detail = cv2.pyrUp(coarser, dstsize=(image.shape[1], image.shape[0]))
                cv2.subtract(image, detail, dst=detail)
            else:
                detail = image
            np.multiply(detail, weight[:, :, None], out=detail)
            if len(result) <= level:
                result.append(detail)
            else:
                cv2.add(result[level], detail, dst=result[level])
            if level < levels:
                image, weight = coarser, cv2.pyrDown(weight)
    fused = result[levels]
    for level in range(levels - 1, -1, -1):
        fused = cv2.add(cv2.pyrUp(fused, dstsize=(result[level].shape[1], result[level].shape[0])), result[level])
    return fused


def fusion(hdr: np.ndarray) -> np.ndarray:
    """Local tone mapping: exposure fusion of synthetic exposures of the HDR.

    The HDR is "photographed" at two to four exposures, each encoded for display (gamma 2.2) and
    clipped like a camera JPEG; fusion keeps, region by region and blended over a Laplacian
    pyramid, the exposure that renders it best. A window keeps its view and the room its light,
    where one global curve must sacrifice one of them. Weights are well-exposedness only: the
    contrast and saturation terms vanish on flat or grey images and would leave them unweighted.
    Display-encoded result in [0, 1], the same for every run.
    """
    import cv2

    hdr = np.maximum(np.nan_to_num(np.asarray(hdr, dtype=np.float32), nan=0.0, posinf=65504.0), 0.0)
    gains = _fusion_gains(hdr)
    if not gains:  # black: nothing to expose
        return np.zeros(hdr.shape, dtype=np.float32)
    encoded = cv2.pow(np.ascontiguousarray(hdr), 1.0 / DISPLAY_GAMMA)  # (g x)^(1/2.2) = g^(1/2.2) x^(1/2.2)
    exposures = [cv2.convertScaleAbs(encoded, alpha=255.0 * gain ** (1.0 / DISPLAY_GAMMA)) for gain in gains]
    return np.clip(exposure_fusion(exposures), 0.0, 1.0).astype(np.float32)


Operator = Callable[[np.ndarray], np.ndarray]
DEFAULT_OPERATOR = "fusion"
OPERATORS: dict[str, Operator] = {"fusion": fusion, "reinhard": reinhard, "mu": mu_preview}


def to_8bit(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
