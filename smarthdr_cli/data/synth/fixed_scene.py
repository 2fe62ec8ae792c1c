"""The fixed test scene: one deterministic sky-sun-ground radiance map and a sliding object.

Older and much simpler than the engine's worlds (`worlds.py`) and objects (`objects.py`): one
layout (sky gradient, sun, textured ground, a bright window, a cast shadow) that every seed only
nudges, and a rectangle that steps sideways between frames. Tests, benchmarks and the bundled
example pin its pixels (PSNR floors, alignment and ghosting checks), so it is kept as it is
rather than drawn from the worlds; it shares their value noise, and its brackets are shot with
the same sensor model (`smarthdr_cli.camera.render_bracket`).
"""
from __future__ import annotations

import numpy as np

from smarthdr_cli.data.synth.primitives import value_noise


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
