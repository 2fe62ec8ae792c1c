"""How each scene is shot: the `Capture` of profile "custom" (the settings' fields) or one scene's
draw of a profile ("mixed", the training distribution, or a test class that pushes one factor).

A profile draws from the scene's "profile" stream only, so changing profiles never moves the
content of a scene; "custom" keeps the draw order of format 1 (EV set first, capture stream).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from smarthdr_cli.camera import RESPONSES, Curve, with_black

if TYPE_CHECKING:
    from smarthdr_cli.data.synth.options import SynthSettings

REFERENCE = 1  # the middle frame of every EV set
KEY_RANGE = (0.3, 2.0)  # 99.9th percentile of luminance, in units of the short frame's clip level
LONG_MEDIAN_MAX = 0.7  # the median pixel of the long frame stays below clipping (linear) ...
REFERENCE_MEDIAN_MIN = 0.02  # ... and that of the reference frame above deep shadow
ISO_STOPS = 1.0  # per-scene noise scale 2^U(-ISO_STOPS, ISO_STOPS)


@dataclass(frozen=True)
class Capture:
    """How one scene is shot: the fixed settings of profile "custom", or one scene's draw of a profile.

    `key_range`: where the 99.9th percentile of luminance lands, in units of the short frame's
    clip level (log-uniform). `reference_median_min` and `long_median_max`: the metering guards
    of `capture.meter` (linear); `long_low_max`: the long frame's 5th percentile stays below it,
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

    def curve(self) -> Curve:
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
# Whole cameras rather than one pushed factor: "film-jpeg" is a second camera for domain-shift
# experiments (train on one camera, adapt to another): film curve with a lifted black, 8-bit
# JPEGs, 2-8x the noise, every scene hand-held.
CAMERAS = ("film-jpeg",)
PROFILES = ("custom", "mixed", *TEST_CLASSES, *CAMERAS)
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
    elif settings.profile == "film-jpeg":
        placement = "standard"
        ev = EVEN_EV_SETS[int(draw.integers(len(EVEN_EV_SETS)))]
        camera = _hand_held(width, draw)
        objects = (1, 3)
        tone = {**_jpeg_tone(draw), "response": "film"}
        iso = (1.0, 3.0)
        name = settings.profile
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

