"""Camera motion: each non-reference frame is shifted by up to `camera_shift` pixels, rotated by up
to `camera_rotation` degrees about the image centre and, for hand-held profiles, tilted in
perspective (`cv2.warpAffine` / `cv2.warpPerspective`, reflected border). It applies to the whole
radiance, objects included; the reference frame never moves, so camera motion is global and the
motion mask does not mark it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from smarthdr_cli.data.synth.profiles import REFERENCE, Capture


def camera_moves(capture: Capture, rng: np.random.Generator, frames: int) -> list[dict[str, Any]]:
    """Per frame: camera shift (px), rotation (deg) and perspective terms (corner displacement as
    a fraction of the short side, x and y) relative to the reference, which never moves."""
    moves = []
    for frame in range(frames):
        if frame == REFERENCE or not (capture.camera_shift or capture.camera_rotation or capture.perspective):
            moves.append({"shift": [0.0, 0.0], "rotation": 0.0})
            continue
        shift = [float(v) for v in rng.uniform(-capture.camera_shift, capture.camera_shift, 2)]
        move: dict[str, Any] = {"shift": shift, "rotation": float(rng.uniform(-capture.camera_rotation, capture.camera_rotation))}
        if capture.perspective:
            move["perspective"] = [float(v) for v in rng.uniform(-capture.perspective, capture.perspective, 2)]
        moves.append(move)
    return moves


def camera_warp(image: np.ndarray, shift: Sequence[float], rotation: float, perspective: Sequence[float] | None = None) -> np.ndarray:
    """The whole radiance moved by a camera shift (px), rotation (deg) about the image centre and,
    if given, a perspective tilt that moves the corners by about `perspective` x the short side."""
    import cv2

    height, width = image.shape[:2]
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, rotation, 1.0)
    matrix[:, 2] += shift
    warp = {"flags": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_REFLECT}
    if not perspective or not any(perspective):
        return cv2.warpAffine(image, matrix, (width, height), **warp)
    # A tilt about the centre: w = 1 + px * x + py * y in centred coordinates; at a corner
    # (x = width / 2) it moves points by about (width / 2)^2 * px pixels.
    size = min(height, width)
    tilt = np.eye(3)
    tilt[2, 0] = perspective[0] * size / (width / 2.0) ** 2
    tilt[2, 1] = perspective[1] * size / (height / 2.0) ** 2
    to_centre, back = np.eye(3), np.eye(3)
    to_centre[:2, 2] = [-centre[0], -centre[1]]
    back[:2, 2] = centre
    homography = np.vstack([matrix, [0.0, 0.0, 1.0]]) @ back @ tilt @ to_centre
    return cv2.warpPerspective(image, homography, (width, height), **warp)

