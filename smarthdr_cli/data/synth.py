"""Synthetic training data: dynamic LDR exposure brackets with HDR ground truth, Kalantari layout.

Learned merges need brackets with ground truth, and real ones are scarce (Kalantari has 89
scenes). This engine makes any number of them, deterministically from a seed, fast enough for
hundreds of 1000x1500 scenes, for pre-training and for the project's training experiments.

The model, per scene (every random choice is drawn from `np.random.SeedSequence([seed, index])`,
split into one stream per part below, so scene `i` is the same whatever the number of scenes, the
split or the other parts' settings; e.g. turning noise off leaves the content unchanged):

* **Scene radiance** (linear RGB, float32):
  - *procedural* (default): one of three layouts. *Day*: sky gradient with clouds, a textured
    ground (value-noise, tile or stripe reflectance, colour tint) lit by ambient plus direct sun
    (3-20x, or overcast) with soft cast shadows, buildings with their own surfaces, lit or
    shaded faces and windows, and usually a sun disc with a halo. *Night*: dark sky, dim ambient,
    lit windows and 2-6 lamps. *Interior*: dim textured walls and floor, 1-2 windows showing a
    daylight scene 10-100x brighter (with mullions) and a sun patch on the floor, ceiling lamps.
    Light sources (sun, lamps) are 1e3-1e4x the scene's mean radiance: every frame clips them.
  - *`hdr_source`*: a folder of real HDR photographs (.exr/.hdr). Each scene picks one file, crops
    it at a random position and size (50-100% of the largest crop of the output's aspect ratio;
    from rows 25%-75% of an equirectangular panorama (width = 2 x height), where distortion is
    small, wrapping around horizontally), flips it half of the time and resizes it to the output
    size. Each file is decoded once per process (up to 64 files are kept).
  - **Exposure**: the scene is scaled so that the 99.9th percentile of its luminance (light
    sources excluded for procedural scenes) lands at a log-uniform level in [0.3, 2] of the short
    frame's clip level: most scenes keep their highlights in the short frame, some clip there.
    Like a photographer metering the reference, the scale is then lowered where the long frame's
    median pixel would clip (linear 0.7) and raised where the reference's median would sink below
    linear 0.02 (in high-contrast scenes the highlights then clip in the short frame too).
* **Moving objects** (1-4 by default): textured, coloured sprites (ellipses and polygons, 12-36% of
  the image's short side), some much brighter than the background, about a third placed over its
  brightest area. Between the reference and each other frame an object moves rigidly (shift of
  1-8% of the short side per frame step along a random direction, rotation up to 8 degrees,
  scale up to 5%), and half of them also deform smoothly (a random displacement field of up to 8%
  of their size, `cv2.remap`). Moving objects uncover background: disocclusions.
* **Camera motion**: each non-reference frame is shifted by up to `camera_shift` pixels and rotated
  by up to `camera_rotation` degrees about the image centre (`cv2.warpAffine`, reflected border),
  applied to the whole radiance, objects included. The reference frame never moves.
* **Capture**: an EV set per scene (from `ev_sets`; the middle frame is the reference),
  exposures normalised so the shortest is t = 1 (radiance 1 saturates the short frame), sensor
  noise in the linear domain (heteroscedastic Gaussian approximation of Poisson-Gaussian noise:
  variance `noise^2 + shot_gain * signal`, both scaled per scene by a random ISO factor
  2^U(-1, 1)), clipping to [0, 1], a response curve (gamma 2.2, or `s-curve`: sRGB plus a
  contrast S-curve like a camera JPEG) and quantisation to 8 or 16 bits (`camera.expose`).
* **Profiles**: with `profile="custom"` every scene is shot with the settings' fields; any
  other profile draws the capture of each scene (`Capture`, `draw_capture`) from a stream of
  its own: "mixed" (the training distribution) draws exposure placement (standard, dim,
  bright, clipped in all frames), EV set (even or uneven), hand-held motion with perspective,
  0-6 objects, tone curve and storage (16-bit gamma as merge makes of a RAW, 8-bit gamma,
  S-curve or film curve with lifted blacks stored as JPEGs) and ISO independently; the test
  classes (TEST_CLASSES) each push one of those factors. Custom scenes are those of format 1.
* **Ground truth** (`HDRImg.hdr`): the reference frame's radiance (no camera motion, objects at
  their reference poses), in the same units as the frames (t_short = 1), clipped to [0, 1] like
  Kalantari's ground truth: radiance above 1 clips in every frame, so a merge of the bracket can
  only know it as 1.
* **Motion mask** (`motion.pgm`, 8-bit, 255 = moving): the pixels covered by a moving object in
  any frame, in the reference frame's coordinates: where a non-reference frame, once camera
  motion is undone, disagrees with the reference (objects and their disocclusions). Camera
  motion is global and is not marked.

Layout (`generate`): `OUT/0000/` ... or, with a split, `OUT/labeled/`, `OUT/unlabeled/`,
`OUT/test/` holding scene folders named by global scene index. A scene folder holds `input_1.tif`,
`input_2.tif`, `input_3.tif` (short, reference, long; 8- or 16-bit RGB TIFF, uncompressed),
`exposure.txt` (EV per line relative to the shortest frame), `motion.pgm` (a PGM, not a PNG, so
that `smarthdr merge FOLDER` does not take it for a frame) and, for labeled and test scenes,
`HDRImg.hdr` (Radiance RGBE). `OUT/synth.json` records the settings, the version and every
scene's parameters. Each scene is written to a hidden temporary folder and renamed into place, so
an interrupted run leaves only complete scenes (and no synth.json). A non-empty OUT is refused
unless `overwrite`, which replaces the scene folders listed in OUT's previous synth.json (and
half-written ones) and never touches other files.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from smarthdr_cli.camera import expose, film_curve, gamma_curve, s_curve, value_noise, with_black
from smarthdr_cli.errors import InputError, OutputError
from smarthdr_cli.io.hdr import is_hdr, read_hdr, write_hdr
from smarthdr_cli.io.output import atomic_folder, atomic_output, write_file

FORMAT_VERSION = 1  # bump when the same settings start giving different scenes
DEFAULT_SCENES = 20
MIN_SIZE = 64
SPLIT_NAMES = ("labeled", "unlabeled", "test")
SPLIT_HAS_GT = {"labeled": True, "unlabeled": False, "test": True}
FRAME_NAMES = ("input_1.tif", "input_2.tif", "input_3.tif")
JPEG_FRAME_NAMES = ("input_1.jpg", "input_2.jpg", "input_3.jpg")
EXPOSURE_NAME = "exposure.txt"
GT_NAME = "HDRImg.hdr"
MOTION_NAME = "motion.pgm"  # not .png: `merge.resolve_inputs` takes every PNG/TIFF of a folder as a frame
SUMMARY_NAME = "synth.json"
REFERENCE = 1  # the middle frame of every EV set
RESPONSES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"gamma": gamma_curve, "s-curve": s_curve, "film": film_curve}

KEY_RANGE = (0.3, 2.0)  # 99.9th percentile of luminance, in units of the short frame's clip level
LONG_MEDIAN_MAX = 0.7  # the median pixel of the long frame stays below clipping (linear) ...
REFERENCE_MEDIAN_MIN = 0.02  # ... and that of the reference frame above deep shadow
LIGHT_RANGE = (1e3, 1e4)  # light sources relative to the scene's mean radiance
ISO_STOPS = 1.0  # per-scene noise scale 2^U(-ISO_STOPS, ISO_STOPS)
LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
_PARTIAL = re.compile(r"^\..+\.partial$")
_STREAMS = ("source", "content", "objects", "camera", "capture", "profile")  # append only: keeps older streams


# --------------------------------------------------------------------------- settings


@dataclass
class SynthSettings:
    """What `smarthdr synth` can be told; defaults are the CLI's defaults.

    `scenes`: None means the split's total, or DEFAULT_SCENES without a split. `noise` is the
    read-noise standard deviation relative to full scale and `shot_gain` the shot-noise variance
    per unit of signal (full scale = 1), before the per-scene ISO factor; 0 and 0 disable noise.
    `objects`: (fewest, most) moving objects per scene; (0, 0) gives static scenes.
    `camera_shift` (pixels) and `camera_rotation` (degrees): largest camera motion of a
    non-reference frame; 0 and 0 disable it. `jobs`: worker processes for `generate`.
    `procedural_share`: with `hdr_source`, this fraction of the scenes is procedural instead.
    `profile`: "custom" shoots every scene with the fields above; any other name of PROFILES
    draws the capture of each scene (EV set, exposure placement, camera motion, objects, tone
    curve, bit depth, JPEG, ISO) from that profile instead, and those fields are not used.
    """

    scenes: int | None = None
    seed: int = 0
    height: int = 1000
    width: int = 1500
    ev_sets: tuple[tuple[float, float, float], ...] = ((-2.0, 0.0, 2.0), (-3.0, 0.0, 3.0))
    bits: int = 16
    response: str = "gamma"
    noise: float = 0.0005
    shot_gain: float = 1e-4
    objects: tuple[int, int] = (1, 4)
    camera_shift: float = 4.0
    camera_rotation: float = 0.5
    hdr_source: Path | None = None
    split: dict[str, int] | None = None
    profile: str = "custom"
    procedural_share: float = 0.0
    overwrite: bool = False
    jobs: int = 1

    def scene_count(self) -> int:
        if self.split is not None:
            return sum(self.split.values())
        return DEFAULT_SCENES if self.scenes is None else self.scenes

    def describe(self) -> dict[str, Any]:
        """The settings that define the dataset's content (not `overwrite`, `jobs`), for synth.json."""
        values = asdict(self)
        for key in ("overwrite", "jobs"):
            values.pop(key)
        values["scenes"] = self.scene_count()
        values["hdr_source"] = None if self.hdr_source is None else str(self.hdr_source)
        values["ev_sets"] = [[float(v) for v in evs] for evs in self.ev_sets]
        values["objects"] = list(self.objects)
        return values


def _finite(value: float, name: str, low: float = 0.0, high: float = math.inf) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
        raise InputError(f"{name} {value}: must be a number in {low:g}..{high:g}")


def check_settings(settings: SynthSettings) -> None:
    """Refuse settings no dataset could be made from, before any work (InputError)."""
    if settings.height < MIN_SIZE or settings.width < MIN_SIZE:
        raise InputError(f"image size {settings.width}x{settings.height}: width and height must be at least {MIN_SIZE}")
    if settings.bits not in (8, 16):
        raise InputError(f"bits {settings.bits}: choose 8 or 16")
    if settings.response not in RESPONSES:
        raise InputError(f"--response {settings.response}: choose {', '.join(RESPONSES)}")
    if settings.profile not in PROFILES:
        raise InputError(f"--profile {settings.profile}: choose {', '.join(PROFILES)}")
    if not isinstance(settings.seed, int) or settings.seed < 0:
        raise InputError(f"--seed {settings.seed}: must be a non-negative integer")
    _finite(settings.noise, "--noise", 0.0, 0.5)
    _finite(settings.shot_gain, "--shot-gain", 0.0, 0.5)
    _finite(settings.camera_shift, "--camera-shift", 0.0, 0.25 * min(settings.height, settings.width))
    _finite(settings.camera_rotation, "--camera-rotation", 0.0, 45.0)
    _finite(settings.procedural_share, "--procedural-share", 0.0, 1.0)
    if settings.procedural_share and settings.hdr_source is None:
        raise InputError("--procedural-share needs --hdr-source (without it every scene is procedural)")
    low, high = settings.objects
    if not 0 <= low <= high <= 16:
        raise InputError(f"--objects {low},{high}: need 0 <= fewest <= most <= 16")
    if settings.jobs < 1:
        raise InputError(f"--jobs {settings.jobs}: must be at least 1")
    _check_ev_sets(settings.ev_sets)
    if settings.split is not None:
        _check_split(settings.split)
        if settings.scenes is not None and settings.scenes != sum(settings.split.values()):
            raise InputError(f"--scenes {settings.scenes} differs from the split's total {sum(settings.split.values())}")
    elif settings.scenes is not None and settings.scenes < 1:
        raise InputError(f"--scenes {settings.scenes}: must be at least 1")
    if settings.hdr_source is not None:
        source_files(settings.hdr_source)


def _check_ev_sets(ev_sets: Sequence[Sequence[float]]) -> None:
    if not ev_sets:
        raise InputError("no EV sets given")
    for evs in ev_sets:
        shown = ",".join(f"{v:g}" for v in evs) if all(isinstance(v, (int, float)) for v in evs) else repr(evs)
        if len(evs) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in evs):
            raise InputError(f"EV set {shown}: need three numbers (short, reference, long)")
        if not all(b - a >= 1 / 6 for a, b in zip(evs, evs[1:])):
            raise InputError(f"EV set {shown}: EVs must increase by at least 1/6 stop (short, reference, long)")
        if evs[-1] - evs[0] > 20:
            raise InputError(f"EV set {shown}: spans more than 20 stops")


def _check_split(split: dict[str, int]) -> None:
    unknown = [name for name in split if name not in SPLIT_NAMES]
    if unknown:
        raise InputError(f"split part {unknown[0]!r}: choose {', '.join(SPLIT_NAMES)}")
    if any(not isinstance(n, int) or n < 0 for n in split.values()):
        raise InputError("split counts must be non-negative integers")
    if sum(split.values()) < 1:
        raise InputError("the split holds no scenes")


def parse_ev_sets(text: str) -> tuple[tuple[float, float, float], ...]:
    """`-2,0,2;-3,0,3` -> ((-2, 0, 2), (-3, 0, 3)); each scene draws one of the sets."""
    sets = []
    for part in (p.strip() for p in text.split(";") if p.strip()):
        try:
            values = tuple(float(v) for v in part.split(","))
        except ValueError:
            raise InputError(f"--ev-sets {text!r}: expected EV,EV,EV;... (e.g. -2,0,2;-3,0,3)") from None
        sets.append(values)
    _check_ev_sets(sets)
    return tuple(sets)  # type: ignore[return-value]


def parse_objects(text: str) -> tuple[int, int]:
    """`1-4` -> (1, 4), `2` -> (2, 2): the fewest and most moving objects per scene."""
    low, _, high = text.strip().partition("-")
    if not low.strip().isdigit() or (high and not high.strip().isdigit()):
        raise InputError(f"--objects {text!r}: expected N or FEWEST-MOST (e.g. 1-4; 0 for static scenes)")
    return int(low), int(high or low)


def parse_split(text: str) -> dict[str, int]:
    """`labeled=5,unlabeled=69,test=15` -> {"labeled": 5, "unlabeled": 69, "test": 15}, in that order."""
    split: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        name, sep, count = (s.strip() for s in part.partition("="))
        if not sep or not name or not count:
            raise InputError(f"--split {text!r}: expected NAME=COUNT,... (e.g. labeled=5,unlabeled=69,test=15)")
        if name in split:
            raise InputError(f"--split {text!r}: {name} given twice")
        if not count.isdigit():
            raise InputError(f"--split {text!r}: {count!r} is not a whole number of scenes")
        split[name] = int(count)
    try:
        _check_split(split)
    except InputError as exc:
        raise InputError(f"--split {text!r}: {exc}") from None
    return split


# --------------------------------------------------------------------------- small helpers


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _colour(rng: np.random.Generator, saturation: float) -> np.ndarray:
    """A random hue at `saturation` (0 grey .. 1 vivid), RGB with mean 1 (keeps the brightness)."""
    hue = rng.random()
    rgb = 1.0 + saturation * np.cos(2 * np.pi * (hue - np.arange(3) / 3.0))
    return (rgb / rgb.mean()).astype(np.float32)


def _luminance(image: np.ndarray, step: int = 1) -> np.ndarray:
    return image[::step, ::step] @ LUMA


def _round(value: Any) -> Any:
    """Floats (also nested in lists/dicts) to 6 significant digits, for a readable synth.json."""
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.6g}")
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, np.integer):
        return int(value)
    return value


def _bbox(cx: float, cy: float, radius: float, height: int, width: int) -> tuple[int, int, int, int] | None:
    """Integer box (y0, y1, x0, x1) of a disc, clipped to the image; None when outside."""
    y0, y1 = max(0, int(cy - radius)), min(height, int(cy + radius) + 2)
    x0, x1 = max(0, int(cx - radius)), min(width, int(cx + radius) + 2)
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


# --------------------------------------------------------------------------- how a scene is shot


@dataclass(frozen=True)
class Capture:
    """How one scene is shot: the fixed settings of profile "custom", or one scene's draw of a profile.

    `key_range`: where the 99.9th percentile of luminance lands, in units of the short frame's
    clip level (log-uniform). `reference_median_min` and `long_median_max`: the metering guards
    of `_expose_scene` (linear); `long_low_max`: the long frame's 5th percentile stays below it,
    so some of it is not clipped. `camera_shift` in pixels, `camera_rotation` in degrees,
    `perspective`: largest corner displacement of the perspective terms, as a fraction of the
    short side. `black`: lowest code of the tone curve (encoded, 0..1). `jpeg_quality`: frames
    are stored as JPEGs at this quality (None: TIFF). `iso_stops`: noise scale 2^U(low, high).
    """

    name: str
    ev: tuple[float, float, float]
    camera_shift: float
    camera_rotation: float
    objects: tuple[int, int]
    key_range: tuple[float, float] = KEY_RANGE
    reference_median_min: float = REFERENCE_MEDIAN_MIN
    long_median_max: float = LONG_MEDIAN_MAX
    long_low_max: float = math.inf
    perspective: float = 0.0
    response: str = "gamma"
    black: float = 0.0
    bits: int = 16
    jpeg_quality: int | None = None
    iso_stops: tuple[float, float] = (-ISO_STOPS, ISO_STOPS)
    bright_objects: float = 0.3  # share of moving objects far brighter than the background

    def curve(self) -> Callable[[np.ndarray], np.ndarray]:
        curve = RESPONSES[self.response]
        return with_black(curve, self.black) if self.black > 0 else curve

    def describe(self) -> dict[str, Any]:
        values = asdict(self)
        values["long_low_max"] = None if math.isinf(self.long_low_max) else self.long_low_max
        values["long_median_max"] = None if math.isinf(self.long_median_max) else self.long_median_max
        return values


# The test classes: each shoots like a careful photographer (EV +-2 or +-3, highlights near the
# short frame's clip level, 16-bit gamma, small hand-held motion, 1-3 objects) except for the one
# thing it pushes. "mixed", the training profile, draws every factor independently per scene.
TEST_CLASSES = ("dim", "bright", "clipped", "camera-motion", "moving", "tone-jpeg")
PROFILES = ("custom", "mixed", *TEST_CLASSES)
EVEN_EV_SETS = ((-2.0, 0.0, 2.0), (-3.0, 0.0, 3.0))
UNEVEN_EV_SETS = ((-2.0, 0.0, 1.0), (-1.0, 0.0, 2.0), (-3.0, 0.0, 2.0), (-2.0, 0.0, 3.0), (-1.0, 0.0, 1.0), (-3.0, 0.0, 1.0))
PLACEMENTS: dict[str, dict[str, Any]] = {
    # 99.9th percentile in the short frame's clip units; guards as in `Capture`
    "standard": {"key_range": KEY_RANGE},
    # reference nowhere saturated (t_ref >= 2: at most 0.25-0.5 of its clip level), deep shadows allowed
    "dim": {"key_range": (0.015, 0.08), "reference_median_min": 0.0, "bright_objects": 0.0},
    # highlights clip in the short frame too; the long frame may be mostly white
    "bright": {"key_range": (2.5, 6.0), "long_median_max": math.inf},
    # large regions clipped in every frame (suns, lamps, sky); some of the long frame unclipped
    "clipped": {"key_range": (8.0, 40.0), "long_median_max": math.inf},
}
HAND_HELD = {"shift": 0.03, "rotation": 1.5, "perspective": 0.01}  # shift as a fraction of the width


def _jpeg_tone(rng: np.random.Generator) -> dict[str, Any]:
    """A camera JPEG or a film scan: S-curve or film curve, lifted blacks, 8 bits, JPEG quality."""
    response = str(rng.choice(["s-curve", "film"]))
    return {"response": response, "black": float(rng.uniform(0.02, 0.075)), "bits": 8, "jpeg_quality": int(rng.integers(70, 96))}


def _hand_held(width: int, rng: np.random.Generator, strength: float = 1.0) -> dict[str, Any]:
    return {
        "camera_shift": HAND_HELD["shift"] * width * strength, "camera_rotation": HAND_HELD["rotation"] * strength,
        "perspective": HAND_HELD["perspective"] * strength,
    }


def draw_capture(settings: SynthSettings, rng: dict[str, np.random.Generator]) -> Capture:
    """The capture of one scene: from the settings ("custom") or drawn from the profile's stream."""
    if settings.profile == "custom":  # the draw order of format 1: EV set first from the capture stream
        ev = settings.ev_sets[int(rng["capture"].integers(len(settings.ev_sets)))]
        return Capture(
            "custom", tuple(float(v) for v in ev), camera_shift=settings.camera_shift,  # type: ignore[arg-type]
            camera_rotation=settings.camera_rotation, objects=settings.objects, response=settings.response, bits=settings.bits,
        )
    draw = rng["profile"]
    width = settings.width
    if settings.profile == "mixed":
        placement = str(draw.choice(list(PLACEMENTS), p=[0.4, 0.25, 0.2, 0.15]))
        sets = UNEVEN_EV_SETS if draw.random() < 0.4 else EVEN_EV_SETS
        ev = sets[int(draw.integers(len(sets)))]
        camera = _hand_held(width, draw) if draw.random() < 0.4 else _hand_held(width, draw, 1 / 3)
        objects = [(0, 2), (1, 3), (3, 6)][int(draw.choice(3, p=[0.3, 0.4, 0.3]))]
        tone_draw = draw.random()
        if tone_draw < 0.4:  # 16-bit gamma: what merge makes of a RAW file (linear ** (1 / 2.2))
            tone: dict[str, Any] = {"response": "gamma", "bits": 16}
        elif tone_draw < 0.55:
            tone = {"response": "gamma", "bits": 8}
        else:
            tone = _jpeg_tone(draw)
        iso = (-1.0, 3.0)
        name = f"mixed:{placement}"
    else:
        placement = settings.profile if settings.profile in PLACEMENTS else "standard"
        ev = EVEN_EV_SETS[int(draw.integers(len(EVEN_EV_SETS)))]
        camera = _hand_held(width, draw) if settings.profile == "camera-motion" else _hand_held(width, draw, 1 / 3)
        objects = (3, 6) if settings.profile == "moving" else (1, 3)
        tone = _jpeg_tone(draw) if settings.profile == "tone-jpeg" else {"response": "gamma", "bits": 16}
        iso = (0.0, 2.0) if settings.profile == "tone-jpeg" else (-ISO_STOPS, ISO_STOPS)
        name = settings.profile
    return Capture(
        name, tuple(float(v) for v in ev), long_low_max=0.8, objects=objects, iso_stops=iso,  # type: ignore[arg-type]
        **PLACEMENTS[placement], **camera, **tone,
    )


# --------------------------------------------------------------------------- procedural scenes


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
    return (albedo[:, :, None] * _colour(rng, rng.uniform(0.0, 0.6))).astype(np.float32)


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
    glow = _colour(rng, 0.3) * np.array([1.2, 1.0, 0.7], np.float32)
    for top in range(step_y // 3, height - win_h, step_y):
        for left in range(step_x // 4, width - win_w, step_x):
            emissive = rng.random() < (0.5 if night else 0.05)
            level = _log_uniform(rng, 0.3, 5.0) if emissive else ambient * rng.uniform(0.02, 0.2)
            face[top : top + win_h, left : left + win_w] = level * (glow if emissive else 1.0)


def _outdoor(rng: np.random.Generator, height: int, width: int, night: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """A day or night street/landscape without light sources; its sky mask and direct-sun ratio."""
    ambient = _log_uniform(rng, 0.005, 0.05) if night else 1.0
    sun = 0.0 if night or rng.random() < 0.25 else rng.uniform(3.0, 20.0)
    hills = value_noise(rng, 1, width, width / 4)[0] - 0.5
    horizon = height * (rng.uniform(0.15, 0.65) + rng.uniform(0.0, 0.15) * hills)
    sky = np.arange(height)[:, None] < horizon[None, :]
    image = _sky(rng, height, width, horizon, _log_uniform(rng, 0.01, 0.05) if night else _log_uniform(rng, 2.0, 10.0))
    ground = _surface(rng, height, width)
    ground *= (ambient * (1.0 + sun * (1.0 - _shadows(rng, height, width))))[:, :, None]
    image = np.where(sky[:, :, None], image, ground)
    for _ in range(rng.integers(0, 5)):
        _building(image, sky, rng, ambient, sun, night)
    return image, sky, sun


def _interior(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A dim room (walls, floor) with 1-2 windows onto a daylight scene 10-100x brighter."""
    import cv2

    ambient = _log_uniform(rng, 0.01, 0.1)
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
        transmission = _log_uniform(rng, 0.3, 1.0)  # glass, and the view partly in shade
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
    box = _bbox(cx, cy, radius * 12, height, width)
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
    mean = float(_luminance(image, 4).mean())
    size = min(height, width)
    lights: list[dict[str, Any]] = []
    if layout == "day" and sun > 0 and rng.random() < 0.7 and sky.any():
        rows, cols = np.nonzero(sky[::4, ::4])
        pick = rng.integers(len(rows))
        cx, cy = cols[pick] * 4.0, rows[pick] * 4.0
        radius, level = max(1.5, size * rng.uniform(0.004, 0.015)), mean * _log_uniform(rng, *LIGHT_RANGE)
        _glow(image, (cx, cy), radius, level, np.array([1.0, 0.95, 0.85], np.float32), sky.astype(np.float32))
        lights.append({"kind": "sun", "centre": [cx, cy], "radius": radius, "level": level})
    lamps = {"day": (0, 2), "night": (2, 7), "interior": (0, 4)}[layout]
    for _ in range(rng.integers(*lamps)):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height * (0.5 if layout == "interior" else 0.9))
        radius, level = max(1.0, size * rng.uniform(0.002, 0.008)), mean * _log_uniform(rng, *LIGHT_RANGE)
        _glow(image, (cx, cy), radius, level, _colour(rng, 0.3) * np.array([1.1, 1.0, 0.8], np.float32), None)
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
    image, exposure = _expose_scene(np.maximum(image, 0.0).astype(np.float32), exposures, rng, capture)
    lights = _add_lights(image, sky, rng, layout, sun)
    return image, {"kind": "procedural", "layout": layout, "sun_ratio": sun, "lights": lights, **exposure}


def _expose_scene(
    image: np.ndarray, exposures: Sequence[float], rng: np.random.Generator, capture: Capture
) -> tuple[np.ndarray, dict[str, Any]]:
    """Scale radiance as a photographer brackets: by default, highlights kept by the short frame, mostly.

    The 99.9th percentile of luminance lands at a random level of the capture's key range
    (KEY_RANGE unless a profile placed it elsewhere; short frame's clip level = 1), unless that would clip the long
    frame's median pixel (the scale is lowered) or leave the reference frame's median in deep
    shadow (raised; highlights then clip): real brackets are metered around the reference. Last,
    the long frame keeps some unclipped pixels where the capture asks for it (`long_low_max`):
    `merge` refuses an all-white frame.
    """
    luminance = _luminance(image, max(1, min(image.shape[:2]) // 256))
    high, median, low = (float(v) for v in np.percentile(luminance, [99.9, 50.0, 5.0]))
    if not high > 0:
        raise InputError("scene radiance is black")
    target = _log_uniform(rng, *capture.key_range)
    scale = target / high
    if median > 0:
        scale = min(scale, capture.long_median_max / (median * exposures[-1]))
        scale = max(scale, capture.reference_median_min / (median * exposures[REFERENCE]))
    if low > 0:
        scale = min(scale, capture.long_low_max / (low * exposures[-1]))
    image *= np.float32(scale)
    return image, {"key": high * scale, "scale": scale}


# --------------------------------------------------------------------------- real HDR sources


def source_files(folder: Path) -> list[Path]:
    """The HDR files (.exr, .hdr) of `folder` (or `folder` itself if it is one), sorted by name."""
    if folder.is_file():
        if not is_hdr(folder):
            raise InputError(f"--hdr-source {folder}: not an HDR file (.exr or .hdr)")
        return [folder]
    if not folder.is_dir():
        raise InputError(f"--hdr-source {folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".exr", ".hdr"))
    if not files:
        raise InputError(f"--hdr-source {folder}: no .exr or .hdr files in this folder")
    return files


def _is_panorama(height: int, width: int) -> bool:
    return abs(width / height - 2.0) < 0.05


@lru_cache(maxsize=64)
def _load_source(path: Path, mtime_ns: int) -> tuple[np.ndarray, bool]:
    """Decoded, cleaned radiance of `path` (read-only; of a panorama only rows 25%-75%), panorama or not."""
    image = read_hdr(path)
    height, width = image.shape[:2]
    if min(height, width) < 8:
        raise InputError(f"{path}: image too small ({width}x{height}) for a training scene")
    panorama = _is_panorama(height, width)
    if panorama:
        image = image[height // 4 : height - height // 4]
    image = np.ascontiguousarray(np.maximum(np.nan_to_num(image, nan=0.0, posinf=0.0), 0.0), dtype=np.float32)
    if not float(image.max()) > 0:
        raise InputError(f"{path}: image is black")
    image.setflags(write=False)
    return image, panorama


def load_source(path: Path) -> tuple[np.ndarray, bool]:
    """`_load_source`, decoded again only when the file changed."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    return _load_source(path, mtime)


def source_scene(
    files: Sequence[Path],
    height: int,
    width: int,
    exposures: Sequence[float],
    pick: np.random.Generator,
    rng: np.random.Generator,
    capture: Capture,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A random crop of a random source file, resized and exposed (float32 HxWx3) and its parameters."""
    import cv2

    path = files[int(pick.integers(len(files)))]
    band, panorama = load_source(path)
    band_h, band_w = band.shape[:2]
    largest = min(band_h, band_w * height / width)
    crop_h = max(2, int(largest * rng.uniform(0.5, 1.0)))
    crop_w = max(2, min(band_w, int(round(crop_h * width / height))))
    top = int(rng.integers(0, band_h - crop_h + 1))
    left = int(rng.integers(0, band_w if panorama else band_w - crop_w + 1))
    columns = np.arange(left, left + crop_w) % band_w
    crop = np.take(band[top : top + crop_h], columns, axis=1)
    flip = bool(rng.random() < 0.5)
    if flip:
        crop = crop[:, ::-1]
    shrink = crop_h > height
    image = cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    image, exposure = _expose_scene(np.maximum(image, 0.0), exposures, rng, capture)
    params = {"kind": "hdr", "file": path.name, "crop": [left, top, crop_w, crop_h], "flip": flip, **exposure}
    return image, params


# --------------------------------------------------------------------------- moving objects


@dataclass
class _Object:
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
    radiance = (level * (0.2 + 0.8 * np.clip(texture, 0.0, 1.0)))[:, :, None] * _colour(rng, rng.uniform(0.3, 1.0))
    return (radiance * alpha[:, :, None]).astype(np.float32), alpha, kind


def _object_centre(rng: np.random.Generator, background: np.ndarray) -> tuple[float, float, bool]:
    """Where an object sits in the reference frame: random, or (1 in 3) over the brightest area."""
    import cv2

    height, width = background.shape[:2]
    if rng.random() < 1 / 3:
        small = cv2.resize(_luminance(background, 4), (max(1, width // 32), max(1, height // 32)), interpolation=cv2.INTER_AREA)
        y, x = np.unravel_index(int(np.argmax(small)), small.shape)
        return (x + rng.random()) * width / small.shape[1], (y + rng.random()) * height / small.shape[0], True
    return rng.uniform(0.1, 0.9) * width, rng.uniform(0.15, 0.9) * height, False


def _make_object(rng: np.random.Generator, background: np.ndarray, frames: int, reference: int, bright_share: float = 0.3) -> _Object:
    """One moving object: sprite, reference pose, and rigid (and maybe non-rigid) motion per frame."""
    height, width = background.shape[:2]
    size = min(height, width)
    diameter = max(8, int(size * rng.uniform(0.12, 0.36)))
    bright = bool(rng.random() < bright_share)
    median = float(np.median(_luminance(background, 8)))
    level = _log_uniform(rng, 0.2, 2.0) if bright else max(median, 1e-6) * _log_uniform(rng, 0.3, 10.0)
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
    return _Object(radiance, alpha, poses, fields, params)


def _displacement(rng: np.random.Generator, size: int, amplitude: float) -> np.ndarray:
    """A smooth random displacement field (2 x size x size, pixels) for non-rigid motion."""
    return np.stack([amplitude * 2.0 * (value_noise(rng, size, size, size / 3) - 0.5) for _ in range(2)])


def _paste(canvas: np.ndarray, covered: np.ndarray, thing: _Object, frame: int) -> None:
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
    box = _bbox(cx, cy, reach, height, width)
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


def _camera_moves(capture: Capture, rng: np.random.Generator, frames: int) -> list[dict[str, Any]]:
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


def _camera_warp(image: np.ndarray, shift: Sequence[float], rotation: float, perspective: Sequence[float] | None = None) -> np.ndarray:
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


# --------------------------------------------------------------------------- scenes


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


def _streams(seed: int, index: int) -> dict[str, np.random.Generator]:
    """Independent random streams for each part of scene `index`: one part's settings never shift another's."""
    children = np.random.SeedSequence([seed, index]).spawn(len(_STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(_STREAMS, children)}


def synth_scene(settings: SynthSettings, index: int) -> SynthScene:
    """Scene `index` of the dataset `settings` describe; depends only on the settings, seed and index."""
    check_settings(settings)
    rng = _streams(settings.seed, index)
    shot = draw_capture(settings, rng)
    capture = rng["capture"]
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
    things = [_make_object(rng["objects"], background, frames, REFERENCE, shot.bright_objects) for _ in range(count)]
    motion = np.zeros((height, width), dtype=bool)
    radiance = []
    for frame in range(frames):
        scene = background.copy()
        for thing in things:
            _paste(scene, motion, thing, frame)
        radiance.append(scene)

    camera = _camera_moves(shot, rng["camera"], frames)
    for frame, move in enumerate(camera):
        if move["shift"] != [0.0, 0.0] or move["rotation"] != 0.0 or move.get("perspective"):
            radiance[frame] = _camera_warp(radiance[frame], move["shift"], move["rotation"], move.get("perspective"))

    iso = float(2.0 ** capture.uniform(*shot.iso_stops))
    read, shot_gain = settings.noise * iso, settings.shot_gain * iso
    curve = shot.curve()
    images = [
        expose(scene, t, curve=curve, bits=shot.bits, read_noise=read, shot_gain=shot_gain, rng=capture)
        for scene, t in zip(radiance, exposures)
    ]
    jpegs = [_jpeg(image, shot.jpeg_quality) for image in images] if shot.jpeg_quality else None
    if jpegs is not None:
        images = [_unjpeg(data) for data in jpegs]
    gt = np.minimum(radiance[REFERENCE], 1.0)
    params = {
        "index": index,
        "ev": list(ev),
        "exposures": list(exposures),
        "reference": REFERENCE,
        "response": shot.response,
        "bits": shot.bits,
        **({"capture": shot.describe()} if settings.profile != "custom" else {}),
        "noise": {"iso_factor": iso, "read": read, "shot_gain": shot_gain},
        "scene": content,
        "camera": camera,
        "objects": [thing.params for thing in things],
        "moving_fraction": float(motion.mean()),
        "clipped_in_gt": float((radiance[REFERENCE] >= 1.0).any(axis=2).mean()),
    }
    return SynthScene(index, images, ev, exposures, gt, motion, radiance, _round(params), REFERENCE, shot.bits, jpegs)


# --------------------------------------------------------------------------- files


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
    """An 8-bit RGB frame as a baseline JPEG (4:2:0 chroma, as cameras store them)."""
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(frame[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OutputError("OpenCV could not encode a JPEG frame")
    return data.tobytes()


def _unjpeg(data: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def _write_frame(path: Path, frame: np.ndarray) -> None:
    import tifffile

    tifffile.imwrite(path, frame, photometric="rgb")


def exposure_text(ev: Sequence[float]) -> str:
    """exposure.txt: one EV per line relative to the shortest frame (Kalantari's convention)."""
    return "".join(f"{round(v - ev[0], 6):g}\n" for v in ev)


def write_scene(scene: SynthScene, folder: Path, with_gt: bool, overwrite: bool = False) -> None:
    """Write `scene` as a Kalantari-layout folder, all at once: built beside it, then renamed."""
    import cv2

    with atomic_folder(folder, overwrite) as temp:
        if scene.jpegs is not None:
            for name, data in zip(scene.frame_names, scene.jpegs):
                (temp / name).write_bytes(data)
        else:
            for name, frame in zip(FRAME_NAMES, scene.frames):
                _write_frame(temp / name, frame)
        (temp / EXPOSURE_NAME).write_text(exposure_text(scene.ev), encoding="utf-8")
        ok, motion = cv2.imencode(".pgm", scene.motion.astype(np.uint8) * 255)
        if not ok:
            raise OutputError(f"{folder}: OpenCV could not encode {MOTION_NAME}")
        write_file(temp / MOTION_NAME, motion.tobytes())  # checked: OpenCV's writers ignore a full disk
        if with_gt:
            write_hdr(temp / GT_NAME, scene.gt)


# --------------------------------------------------------------------------- datasets


def plan(settings: SynthSettings) -> list[tuple[int, str, bool]]:
    """(scene index, folder relative to OUT, has ground truth) for every scene, in index order."""
    count = settings.scene_count()
    digits = max(4, len(str(count - 1)))
    if settings.split is None:
        return [(i, f"{i:0{digits}d}", True) for i in range(count)]
    jobs, start = [], 0
    for name, number in settings.split.items():
        jobs += [(i, f"{name}/{i:0{digits}d}", SPLIT_HAS_GT[name]) for i in range(start, start + number)]
        start += number
    return jobs


def _prepare_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty OUT unless overwriting; then remove what a previous synth run left."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    if not out.exists():
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(f"{out}: parent folder {parent} does not exist")
        try:
            out.mkdir()
        except OSError as exc:
            raise OutputError(f"{out}: cannot create ({exc.strerror})") from None
        return
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: folder is not writable")
    if any(out.iterdir()) and not overwrite:
        raise OutputError(f"{out}: folder is not empty (pass --overwrite to replace a previous synth dataset)")
    _remove_previous(out)


def _remove_previous(out: Path) -> None:
    """Scene folders listed in an earlier synth.json, and half-written scenes; nothing else."""
    summary = out / SUMMARY_NAME
    folders: list[str] = []
    if summary.is_file():
        try:
            folders = [str(s["folder"]) for s in json.loads(summary.read_text(encoding="utf-8"))["scenes"]]
        except (OSError, ValueError, KeyError, TypeError):
            folders = []
        summary.unlink()
    root = out.resolve()
    for name in folders:
        target = (out / name).resolve()
        if root in target.parents and re.fullmatch(r"(\w+/)?\d+", name) and target.is_dir():
            shutil.rmtree(target)
    for parent in [out, *(out / name for name in SPLIT_NAMES)]:
        if parent.is_dir():
            for entry in parent.iterdir():
                if entry.is_dir() and _PARTIAL.match(entry.name):
                    shutil.rmtree(entry, ignore_errors=True)


def _make_scene(settings: SynthSettings, index: int, folder: Path, with_gt: bool) -> dict[str, Any]:
    """Generate and write one scene; its parameters for synth.json (also runs in worker processes)."""
    scene = synth_scene(settings, index)
    write_scene(scene, folder, with_gt, overwrite=settings.overwrite)
    return scene.params


def _start_worker(threads: int) -> None:
    import cv2

    cv2.setNumThreads(threads)


def _run(out: Path, settings: SynthSettings, jobs: list[tuple[int, str, bool]]) -> Iterator[dict[str, Any]]:
    """Parameters of every scene in `jobs`, in order, generated serially or in `settings.jobs` processes."""
    workers = max(1, min(settings.jobs, len(jobs)))
    if workers == 1:
        for index, name, with_gt in jobs:
            yield _make_scene(settings, index, out / name, with_gt)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(_make_scene, settings, index, out / name, with_gt) for index, name, with_gt in jobs]
        try:
            for future in futures:
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def generate(out: Path, settings: SynthSettings, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write the dataset `settings` describe to `out`; returns the summary also written to synth.json.

    Every check (settings, sources, output folder) runs before the first scene. A scene folder
    appears complete or not at all; synth.json is written last.
    """
    from smarthdr_cli import __version__

    check_settings(settings)
    jobs = plan(settings)
    if settings.hdr_source is not None:  # decode the sources the scenes use now: a broken file fails early
        files = source_files(settings.hdr_source)
        for index in sorted({int(_streams(settings.seed, i)["source"].integers(len(files))) for i, _, _ in jobs}):
            load_source(files[index])
    _prepare_output(out, settings.overwrite)
    for name in (settings.split or {}):
        (out / name).mkdir(exist_ok=True)
    scenes = []
    for (_, name, with_gt), params in zip(jobs, _run(out, settings, jobs)):
        scenes.append({"folder": name, "ground_truth": with_gt, **params})
        if progress is not None:
            progress(len(scenes), len(jobs))
    summary = {
        "generator": "smarthdr synth",
        "smarthdr_version": __version__,
        "format_version": FORMAT_VERSION,
        "seed": settings.seed,
        "settings": _round(settings.describe()),
        "layout": {
            "frames": list(FRAME_NAMES), "jpeg_frames": list(JPEG_FRAME_NAMES), "exposure_file": EXPOSURE_NAME, "ground_truth": GT_NAME,
            "motion_mask": MOTION_NAME, "reference_frame": FRAME_NAMES[REFERENCE],
            "units": "linear radiance with exposures normalised so the shortest frame has t = 1; "
            "ground truth is the reference frame's radiance clipped to [0, 1]",
        },
        "splits": None if settings.split is None else {
            name: {"scenes": number, "ground_truth": SPLIT_HAS_GT[name]} for name, number in settings.split.items()
        },
        "scenes": scenes,
    }
    with atomic_output(out / SUMMARY_NAME, overwrite=True) as temp:
        temp.write_text(_to_json(summary) + "\n", encoding="utf-8")
    return summary


def _to_json(value: Any, indent: str = "") -> str:
    """JSON with one key per line but lists of plain values on one line: readable and compact."""
    inner = indent + " "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {_to_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) and v for v in value):
        return "[\n" + ",\n".join(inner + _to_json(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value)
