"""Procedural worlds: a day or night street or landscape, or an interior with windows onto daylight.

*Day*: sky gradient with clouds, a textured ground (value-noise, tile or stripe reflectance,
colour tint) lit by ambient plus direct sun (3-20x, or overcast) with soft cast shadows, buildings
with their own surfaces, lit or shaded faces and windows, and usually a sun disc with a halo.
*Night*: dark sky, dim ambient, lit windows and 2-6 lamps. *Interior*: dim textured walls and
floor, 1-2 windows showing a daylight scene 10-100x brighter (with mullions) and a sun patch on
the floor, ceiling lamps. Light sources (sun, lamps) are added after metering, at 1e3-1e4x the
scene's mean radiance: every frame clips them.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from smarthdr_cli.data.synth.capture import meter
from smarthdr_cli.data.synth.primitives import bbox, log_uniform, luminance, random_colour, value_noise
from smarthdr_cli.data.synth.profiles import Capture

LIGHT_RANGE = (1e3, 1e4)  # light sources relative to the scene's mean radiance


def _surface(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Reflectance (HxWx3, 0.02-0.9) of a textured surface: value noise, tiles or stripes, tinted."""
    size = min(height, width)
    detail = 0.5 * value_noise(rng, height, width, max(4, size / 6)) + 0.3 * value_noise(rng, height, width, 12)
    detail += 0.2 * value_noise(rng, height, width, 2.5)
    pattern = rng.integers(3)
    if pattern == 1:  # tiles or bricks: mortar lines, one random reflectance per tile
        tile_h, tile_w = max(3, int(size * rng.uniform(0.03, 0.12))), max(3, int(size * rng.uniform(0.05, 0.25)))
        rows = np.arange(height)[:, None] // tile_h
        x = np.arange(width)[None, :] + (rows % 2) * (tile_w // 2)  # every other row offset by half a tile
        per_tile = rng.random((rows.max() + 1, width // tile_w + 2), dtype=np.float32)[rows, x // tile_w]
        mortar = (np.arange(height)[:, None] % tile_h < 2) | (x % tile_w < 2)
        detail = np.where(mortar, 0.1, 0.5 * detail + 0.5 * per_tile)
    elif pattern == 2:  # stripes (planks, blinds)
        period = size * rng.uniform(0.02, 0.1)
        axis = np.arange(width)[None, :] if rng.random() < 0.5 else np.arange(height)[:, None]
        detail = detail * (0.55 + 0.45 * (np.sin(2 * np.pi * axis / period + rng.uniform(0, 6.3)) > 0))
    low, high = rng.uniform(0.02, 0.1), rng.uniform(0.3, 0.9)
    albedo = low + (high - low) * np.clip(detail, 0.0, 1.0)
    return (albedo[:, :, None] * random_colour(rng, rng.uniform(0.0, 0.6))).astype(np.float32)


def _shadows(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Soft-edged cast shadows (HxW, 1 = full shadow): random quadrilaterals drawn at 1/4 size."""
    import cv2

    small = np.zeros((max(2, height // 4), max(2, width // 4)), dtype=np.float32)
    for _ in range(rng.integers(1, 5)):
        centre = rng.random(2) * small.shape[::-1]
        corners = centre + (rng.random((4, 2)) - 0.5) * np.array(small.shape[::-1]) * rng.uniform(0.3, 0.9)
        cv2.fillConvexPoly(small, cv2.convexHull(corners.astype(np.int32)), 1.0)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _sky(rng: np.random.Generator, height: int, width: int, horizon: np.ndarray, level: float) -> np.ndarray:
    """Sky radiance: brighter and whiter towards the horizon, with clouds."""
    closeness = np.clip(np.arange(height, dtype=np.float32)[:, None] / np.maximum(horizon[None, :], 1.0), 0.0, 1.0)
    base = level * (0.45 + 0.55 * closeness**2)
    zenith, near = np.array([0.55, 0.75, 1.25], np.float32), np.array([1.0, 0.97, 0.92], np.float32)
    colour = zenith + (near - zenith) * closeness[:, :, None]
    cover = 0.6 * value_noise(rng, height, width, width / 5) + 0.4 * value_noise(rng, height, width, width / 25)
    threshold = rng.uniform(0.35, 0.8)
    clouds = np.clip((cover - threshold) / 0.2, 0.0, 1.0)[:, :, None]
    bright = rng.uniform(1.0, 2.5)
    return (base[:, :, None] * (colour * (1.0 - clouds) + bright * clouds)).astype(np.float32)


def _building(image: np.ndarray, sky: np.ndarray, rng: np.random.Generator, ambient: float, sun: float, night: bool) -> None:
    """A facade from the image bottom up into the sky (in place): own surface, lit or shaded, windows."""
    height, width = sky.shape
    face_w = int(width * rng.uniform(0.08, 0.35))
    x0 = int(rng.uniform(-0.1, 1.0) * width)
    top = int(height * rng.uniform(0.05, 0.6))
    x0, x1 = max(0, x0), min(width, x0 + face_w)
    if x1 - x0 < 4 or height - top < 4:
        return
    face_h = height - top
    lit = sun > 0 and rng.random() < 0.5
    light = ambient * ((1.0 + sun) if lit else rng.uniform(0.5, 1.0))
    shade = np.linspace(0.85, 1.1, face_h, dtype=np.float32)[:, None, None]
    face = _surface(rng, face_h, x1 - x0) * (light * shade)
    if rng.random() < 0.7:
        _windows(face, rng, ambient, night)
    image[top:, x0:x1] = face
    sky[top:, x0:x1] = False


def _windows(face: np.ndarray, rng: np.random.Generator, ambient: float, night: bool) -> None:
    """A grid of windows on a facade (in place): dark glass, or lit from inside (mostly at night)."""
    height, width = face.shape[:2]
    step_y, step_x = max(6, int(height * rng.uniform(0.06, 0.2))), max(6, int(width * rng.uniform(0.15, 0.4)))
    win_h, win_w = int(step_y * rng.uniform(0.4, 0.7)), int(step_x * rng.uniform(0.4, 0.7))
    glow = random_colour(rng, 0.3) * np.array([1.2, 1.0, 0.7], np.float32)
    for top in range(step_y // 3, height - win_h, step_y):
        for left in range(step_x // 4, width - win_w, step_x):
            emissive = rng.random() < (0.5 if night else 0.05)
            level = log_uniform(rng, 0.3, 5.0) if emissive else ambient * rng.uniform(0.02, 0.2)
            face[top : top + win_h, left : left + win_w] = level * (glow if emissive else 1.0)


def _outdoor(rng: np.random.Generator, height: int, width: int, night: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """A day or night street/landscape without light sources; its sky mask and direct-sun ratio."""
    ambient = log_uniform(rng, 0.005, 0.05) if night else 1.0
    sun = 0.0 if night or rng.random() < 0.25 else rng.uniform(3.0, 20.0)
    hills = value_noise(rng, 1, width, width / 4)[0] - 0.5
    horizon = height * (rng.uniform(0.15, 0.65) + rng.uniform(0.0, 0.15) * hills)
    sky = np.arange(height)[:, None] < horizon[None, :]
    image = _sky(rng, height, width, horizon, log_uniform(rng, 0.01, 0.05) if night else log_uniform(rng, 2.0, 10.0))
    ground = _surface(rng, height, width)
    ground *= (ambient * (1.0 + sun * (1.0 - _shadows(rng, height, width))))[:, :, None]
    image = np.where(sky[:, :, None], image, ground)
    for _ in range(rng.integers(0, 5)):
        _building(image, sky, rng, ambient, sun, night)
    return image, sky, sun


def _interior(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A dim room (walls, floor) with 1-2 windows onto a daylight scene 10-100x brighter."""
    import cv2

    ambient = log_uniform(rng, 0.01, 0.1)
    floor = int(height * rng.uniform(0.6, 0.9))
    falloff = np.linspace(1.2, 0.6, width, dtype=np.float32)[None, :, None] ** rng.choice([-1.0, 1.0])
    image = _surface(rng, height, width) * ambient * falloff
    image[floor:] = _surface(rng, height - floor, width) * (ambient * rng.uniform(0.5, 1.0))
    outside = np.zeros((height, width), dtype=bool)
    for _ in range(rng.integers(1, 3)):
        win_h, win_w = int(height * rng.uniform(0.25, 0.55)), int(width * rng.uniform(0.15, 0.4))
        top = int(rng.uniform(0.05, max(0.06, floor / height - 0.1 - win_h / height)) * height)
        left = int(rng.uniform(0.0, 1.0 - win_w / width) * width)
        view, _, sun = _outdoor(rng, win_h, win_w, night=False)
        bars = max(1, int(min(win_h, win_w) * 0.03))
        view[win_h // 2 - bars : win_h // 2 + bars] = view[:, win_w // 2 - bars : win_w // 2 + bars] = ambient * 0.1
        transmission = log_uniform(rng, 0.3, 1.0)  # glass, and the view partly in shade
        image[top : top + win_h, left : left + win_w] = view * transmission
        outside[top : top + win_h, left : left + win_w] = True
        if sun > 0 and rng.random() < 0.6:  # sunlight through the window onto the floor: as bright as outside
            patch = np.zeros((height, width), dtype=np.float32)
            x = left + rng.uniform(-0.3, 0.3) * width
            corners = np.array([[left, floor], [left + win_w, floor], [x + win_w, height], [x, height]], np.int32)
            cv2.fillConvexPoly(patch, corners, 1.0)
            patch[outside] = 0.0
            image += image * (sun * transmission / ambient) * patch[:, :, None]
    return image, outside


def _glow(
    image: np.ndarray, centre: tuple[float, float], radius: float, level: float, colour: np.ndarray, where: np.ndarray | None
) -> None:
    """Add a light source (in place): a disc of `level` radiance and a halo around it."""
    height, width = image.shape[:2]
    cx, cy = centre
    box = bbox(cx, cy, radius * 12, height, width)
    if box is None:
        return
    y0, y1, x0, x1 = box
    yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    distance = np.sqrt(yy**2 + xx**2) / radius
    halo = 0.004 * np.exp(-(distance - 1.0) / 2.5) * np.clip(1.0 - distance / 12.0, 0.0, None)
    light = np.where(distance < 1.0, 1.0, halo) * level
    if where is not None:
        light = light * where[y0:y1, x0:x1]
    image[y0:y1, x0:x1] += light[:, :, None] * colour


def _add_lights(image: np.ndarray, sky: np.ndarray, rng: np.random.Generator, layout: str, sun: float) -> list[dict[str, Any]]:
    """Sun and lamps, 1e3-1e4x the scene's mean radiance (in place); their parameters."""
    height, width = sky.shape
    mean = float(luminance(image, 4).mean())
    size = min(height, width)
    lights: list[dict[str, Any]] = []
    if layout == "day" and sun > 0 and rng.random() < 0.7 and sky.any():
        rows, cols = np.nonzero(sky[::4, ::4])
        pick = rng.integers(len(rows))
        cx, cy = cols[pick] * 4.0, rows[pick] * 4.0
        radius, level = max(1.5, size * rng.uniform(0.004, 0.015)), mean * log_uniform(rng, *LIGHT_RANGE)
        _glow(image, (cx, cy), radius, level, np.array([1.0, 0.95, 0.85], np.float32), sky.astype(np.float32))
        lights.append({"kind": "sun", "centre": [cx, cy], "radius": radius, "level": level})
    lamps = {"day": (0, 2), "night": (2, 7), "interior": (0, 4)}[layout]
    for _ in range(rng.integers(*lamps)):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height * (0.5 if layout == "interior" else 0.9))
        radius, level = max(1.0, size * rng.uniform(0.002, 0.008)), mean * log_uniform(rng, *LIGHT_RANGE)
        _glow(image, (cx, cy), radius, level, random_colour(rng, 0.3) * np.array([1.1, 1.0, 0.8], np.float32), None)
        lights.append({"kind": "lamp", "centre": [cx, cy], "radius": radius, "level": level})
    return lights


def procedural_scene(
    height: int, width: int, exposures: Sequence[float], rng: np.random.Generator, capture: Capture
) -> tuple[np.ndarray, dict[str, Any]]:
    """Exposed procedural radiance (float32 HxWx3, light sources included) and its parameters."""
    layout = str(rng.choice(["day", "night", "interior"], p=[0.5, 0.2, 0.3]))
    if layout == "interior":
        image, sky = _interior(rng, height, width)
        sun = 0.0
    else:
        image, sky, sun = _outdoor(rng, height, width, night=layout == "night")
    image, exposure = meter(np.maximum(image, 0.0).astype(np.float32), exposures, rng, capture)
    lights = _add_lights(image, sky, rng, layout, sun)
    return image, {"kind": "procedural", "layout": layout, "sun_ratio": sun, "lights": lights, **exposure}

