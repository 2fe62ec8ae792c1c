"""Moving objects: textured, coloured sprites (ellipses and polygons, 12-36% of the image's short
side), some much brighter than the background, about a third placed over its brightest area.

Between the reference and each other frame an object moves rigidly (shift of 1-8% of the short
side per frame step along a random direction, rotation up to 8 degrees, scale up to 5%), and half
of them also deform smoothly (a random displacement field of up to 8% of their size,
`cv2.remap`). Moving objects uncover background: disocclusions, which the motion mask marks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smarthdr_cli.data.synth.primitives import bbox, log_uniform, luminance, random_colour, value_noise


@dataclass
class MovingObject:
    """A sprite (premultiplied radiance and alpha, square) and its pose in every frame."""

    radiance: np.ndarray
    alpha: np.ndarray
    poses: list[tuple[float, float, float, float]]  # centre x, centre y, rotation (deg), scale
    fields: list[np.ndarray | None]  # per frame: (2, s, s) displacement, None = rigid
    params: dict[str, Any] = field(default_factory=dict)


def _sprite(rng: np.random.Generator, diameter: int, level: float) -> tuple[np.ndarray, np.ndarray, str]:
    """A textured, coloured shape: premultiplied radiance (s x s x 3), alpha (s x s), its kind."""
    import cv2

    size = diameter + 6
    centre = size / 2.0
    mask = np.zeros((size, size), dtype=np.uint8)
    shift = 4  # fixed-point bits for sub-pixel, anti-aliased drawing
    if rng.random() < 0.4:
        kind = "ellipse"
        axes = (int(diameter / 2 * 16), int(diameter / 2 * rng.uniform(0.4, 1.0) * 16))
        cv2.ellipse(mask, (int(centre * 16), int(centre * 16)), axes, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA, shift)
    else:
        kind = "polygon"
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(5, 10)))
        radii = diameter / 2 * rng.uniform(0.55, 1.0, len(angles))
        points = np.stack([centre + radii * np.cos(angles), centre + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 255, cv2.LINE_AA, shift)
    texture = 0.6 * value_noise(rng, size, size, max(3, size / 5)) + 0.4 * value_noise(rng, size, size, 2)
    if rng.random() < 0.5:  # stripes or checks: strong texture for correspondence
        period = size * rng.uniform(0.08, 0.25)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        texture = texture * (0.5 + 0.5 * (np.sin(2 * np.pi * (xx * rng.uniform(-1, 1) + yy) / period) > 0))
    alpha = mask.astype(np.float32) / 255.0
    radiance = (level * (0.2 + 0.8 * np.clip(texture, 0.0, 1.0)))[:, :, None] * random_colour(rng, rng.uniform(0.3, 1.0))
    return (radiance * alpha[:, :, None]).astype(np.float32), alpha, kind


def _object_centre(rng: np.random.Generator, background: np.ndarray) -> tuple[float, float, bool]:
    """Where an object sits in the reference frame: random, or (1 in 3) over the brightest area."""
    import cv2

    height, width = background.shape[:2]
    if rng.random() < 1 / 3:
        small = cv2.resize(luminance(background, 4), (max(1, width // 32), max(1, height // 32)), interpolation=cv2.INTER_AREA)
        y, x = np.unravel_index(int(np.argmax(small)), small.shape)
        return (x + rng.random()) * width / small.shape[1], (y + rng.random()) * height / small.shape[0], True
    return rng.uniform(0.1, 0.9) * width, rng.uniform(0.15, 0.9) * height, False


def make_object(rng: np.random.Generator, background: np.ndarray, frames: int, reference: int, bright_share: float = 0.3) -> MovingObject:
    """One moving object: sprite, reference pose, and rigid (and maybe non-rigid) motion per frame."""
    height, width = background.shape[:2]
    size = min(height, width)
    diameter = max(8, int(size * rng.uniform(0.12, 0.36)))
    bright = bool(rng.random() < bright_share)
    median = float(np.median(luminance(background, 8)))
    level = log_uniform(rng, 0.2, 2.0) if bright else max(median, 1e-6) * log_uniform(rng, 0.3, 10.0)
    radiance, alpha, kind = _sprite(rng, diameter, level)
    cx, cy, over_bright = _object_centre(rng, background)
    direction = rng.uniform(0, 2 * np.pi)
    step = size * rng.uniform(0.01, 0.08)
    spin, growth = rng.uniform(-8.0, 8.0), rng.uniform(-0.05, 0.05)
    rigid = bool(rng.random() < 0.5)
    amplitude = 0.0 if rigid else diameter * rng.uniform(0.02, 0.08)
    poses, fields = [], []
    for frame in range(frames):
        k = frame - reference
        jitter = rng.uniform(0.7, 1.3, 2) if k else np.ones(2)
        along, across = step * k * jitter[0], step * k * (jitter[1] - 1.0)
        dx = along * np.cos(direction) - across * np.sin(direction)
        dy = along * np.sin(direction) + across * np.cos(direction)
        poses.append((cx + dx, cy + dy, spin * k * jitter[0] + 0.0, float(np.exp(growth * k))))
        fields.append(_displacement(rng, radiance.shape[0], amplitude) if k and amplitude else None)
    params = {
        "shape": kind, "diameter": diameter, "level": level, "bright": bright, "over_bright": over_bright,
        "rigid": rigid, "deformation": amplitude, "poses": [list(p) for p in poses],
    }
    return MovingObject(radiance, alpha, poses, fields, params)


def _displacement(rng: np.random.Generator, size: int, amplitude: float) -> np.ndarray:
    """A smooth random displacement field (2 x size x size, pixels) for non-rigid motion."""
    return np.stack([amplitude * 2.0 * (value_noise(rng, size, size, size / 3) - 0.5) for _ in range(2)])


def paste(canvas: np.ndarray, covered: np.ndarray, thing: MovingObject, frame: int) -> None:
    """Composite `thing` at its pose of `frame` over `canvas` (in place); mark `covered` pixels."""
    import cv2

    height, width = canvas.shape[:2]
    radiance, alpha = thing.radiance, thing.alpha
    size = alpha.shape[0]
    displacement = thing.fields[frame]
    if displacement is not None:
        grid = np.arange(size, dtype=np.float32)
        map_x, map_y = grid[None, :] + displacement[0], grid[:, None] + displacement[1]
        radiance = cv2.remap(radiance, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = cv2.remap(alpha, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    cx, cy, angle, scale = thing.poses[frame]
    centre = (size - 1) / 2.0
    matrix = cv2.getRotationMatrix2D((centre, centre), angle, scale)
    matrix[:, 2] += (cx - centre, cy - centre)
    reach = size * scale * 0.75  # half diagonal of the sprite
    box = bbox(cx, cy, reach, height, width)
    if box is None:
        return
    y0, y1, x0, x1 = box
    matrix[:, 2] -= (x0, y0)
    warp = {"flags": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_CONSTANT, "borderValue": 0}
    placed = cv2.warpAffine(radiance, matrix, (x1 - x0, y1 - y0), **warp)
    cover = cv2.warpAffine(alpha, matrix, (x1 - x0, y1 - y0), **warp)
    region = canvas[y0:y1, x0:x1]
    region *= (1.0 - cover)[:, :, None]
    region += placed
    covered[y0:y1, x0:x1] |= cover > 0

