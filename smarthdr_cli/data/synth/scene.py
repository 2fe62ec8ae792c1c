"""One synthetic scene in memory: radiance (a procedural world or a photograph), moving objects,
camera motion and the captured bracket, with its ground truth and motion mask.

Every random choice is drawn from `np.random.SeedSequence([seed, index])`, split into one stream
per part (STREAMS), so scene `i` is the same whatever the number of scenes, the split or the other
parts' settings; e.g. turning noise off leaves the content unchanged.

* **Ground truth** (`gt`): the reference frame's radiance (no camera motion, objects at their
  reference poses), in the same units as the frames (t_short = 1), clipped to [0, 1] like
  Kalantari's ground truth: radiance above 1 clips in every frame, so a merge of the bracket can
  only know it as 1.
* **Motion mask** (`motion`): the pixels covered by a moving object in any frame, in the
  reference frame's coordinates: where a non-reference frame, once camera motion is undone,
  disagrees with the reference (objects and their disocclusions).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from smarthdr_cli.data.synth.camera_motion import camera_moves, camera_warp
from smarthdr_cli.data.synth.capture import shoot
from smarthdr_cli.data.synth.layout import FRAME_NAMES, JPEG_FRAME_NAMES, round_floats
from smarthdr_cli.data.synth.objects import make_object, paste
from smarthdr_cli.data.synth.options import SynthSettings, check_settings
from smarthdr_cli.data.synth.photos import source_files, source_scene
from smarthdr_cli.data.synth.profiles import REFERENCE, draw_capture
from smarthdr_cli.data.synth.worlds import procedural_scene

STREAMS = ("source", "content", "objects", "camera", "capture", "profile")  # append only: keeps older streams


@dataclass
class SynthScene:
    """One synthetic bracket in memory.

    `frames`: uint8/uint16 HxWx3 RGB, short -> long; `radiance`: the linear radiance each frame
    saw (camera motion and objects included; before noise and clipping); `gt`: the reference
    frame's radiance clipped to [0, 1]; `motion`: bool HxW, True where objects move.
    """

    index: int
    frames: list[np.ndarray]
    ev: tuple[float, ...]
    exposures: tuple[float, ...]
    gt: np.ndarray
    motion: np.ndarray
    radiance: list[np.ndarray]
    params: dict[str, Any]
    reference: int = REFERENCE
    bits: int = 16
    jpegs: list[bytes] | None = None  # the frames as JPEG files, when the capture stores JPEGs

    @property
    def frame_names(self) -> tuple[str, ...]:
        return JPEG_FRAME_NAMES if self.jpegs is not None else FRAME_NAMES


def streams(seed: int, index: int) -> dict[str, np.random.Generator]:
    """Independent random streams for each part of scene `index`: one part's settings never shift another's."""
    children = np.random.SeedSequence([seed, index]).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children)}


def synth_scene(settings: SynthSettings, index: int) -> SynthScene:
    """Scene `index` of the dataset `settings` describe; depends only on the settings, seed and index."""
    check_settings(settings)
    rng = streams(settings.seed, index)
    shot = draw_capture(settings, rng)
    ev = shot.ev
    exposures = tuple(float(2.0 ** (v - ev[0])) for v in ev)
    frames = len(ev)
    height, width = settings.height, settings.width
    photo = settings.hdr_source is not None and not (settings.procedural_share and rng["profile"].random() < settings.procedural_share)
    if photo:
        files = source_files(settings.hdr_source)  # type: ignore[arg-type]
        background, content = source_scene(files, height, width, exposures, rng["source"], rng["content"], shot)
    else:
        background, content = procedural_scene(height, width, exposures, rng["content"], shot)

    count = int(rng["objects"].integers(shot.objects[0], shot.objects[1] + 1))
    things = [make_object(rng["objects"], background, frames, REFERENCE, shot.bright_objects) for _ in range(count)]
    motion = np.zeros((height, width), dtype=bool)
    radiance = []
    for frame in range(frames):
        scene = background.copy()
        for thing in things:
            paste(scene, motion, thing, frame)
        radiance.append(scene)

    camera = camera_moves(shot, rng["camera"], frames)
    for frame, move in enumerate(camera):
        if move["shift"] != [0.0, 0.0] or move["rotation"] != 0.0 or move.get("perspective"):
            radiance[frame] = camera_warp(radiance[frame], move["shift"], move["rotation"], move.get("perspective"))

    images, jpegs, noise = shoot(radiance, exposures, shot, settings.noise, settings.shot_gain, rng["capture"])
    gt = np.minimum(radiance[REFERENCE], 1.0)
    params = {
        "index": index,
        "ev": list(ev),
        "exposures": list(exposures),
        "reference": REFERENCE,
        "response": shot.response,
        "bits": shot.bits,
        **({"capture": shot.describe()} if settings.profile != "custom" else {}),
        "noise": noise,
        "scene": content,
        "camera": camera,
        "objects": [thing.params for thing in things],
        "moving_fraction": float(motion.mean()),
        "clipped_in_gt": float((radiance[REFERENCE] >= 1.0).any(axis=2).mean()),
    }
    return SynthScene(index, images, ev, exposures, gt, motion, radiance, round_floats(params), REFERENCE, shot.bits, jpegs)

