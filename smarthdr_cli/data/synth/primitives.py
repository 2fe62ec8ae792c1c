"""What the scene builders (worlds, photos, objects, metering) share: random draws, value-noise
textures, luminance and clipped boxes. Every function draws only from the generator it is given,
so a scene's streams stay independent."""
from __future__ import annotations

import numpy as np

LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def random_colour(rng: np.random.Generator, saturation: float) -> np.ndarray:
    """A random hue at `saturation` (0 grey .. 1 vivid), RGB with mean 1 (keeps the brightness)."""
    hue = rng.random()
    rgb = 1.0 + saturation * np.cos(2 * np.pi * (hue - np.arange(3) / 3.0))
    return (rgb / rgb.mean()).astype(np.float32)


def luminance(image: np.ndarray, step: int = 1) -> np.ndarray:
    return image[::step, ::step] @ LUMA


def bbox(cx: float, cy: float, radius: float, height: int, width: int) -> tuple[int, int, int, int] | None:
    """Integer box (y0, y1, x0, x1) of a disc, clipped to the image; None when outside."""
    y0, y1 = max(0, int(cy - radius)), min(height, int(cy + radius) + 2)
    x0, x1 = max(0, int(cx - radius)), min(width, int(cx + radius) + 2)
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


def value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth random texture, about [0, 1] (cubic overshoot aside): a random grid of `cell`-pixel
    spacing, cubic-interpolated to height x width (float32)."""
    import cv2

    small = rng.random((max(2, int(height // cell)), max(2, int(width // cell))), dtype=np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
