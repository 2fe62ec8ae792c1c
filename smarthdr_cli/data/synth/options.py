"""What `smarthdr synth` can be told: the settings, their checks and the parsers of option strings.

Every check runs before any work, so a bad setting fails before the first scene; the parsers turn
the CLI's strings (`--ev-sets`, `--objects`, `--split`) into typed values at the boundary.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from smarthdr_cli.camera import RESPONSES
from smarthdr_cli.data.synth.photos import source_files
from smarthdr_cli.data.synth.profiles import PROFILES
from smarthdr_cli.errors import InputError

DEFAULT_SCENES = 20
MIN_SIZE = 64
SPLIT_NAMES = ("labeled", "unlabeled", "test")
SPLIT_HAS_GT = {"labeled": True, "unlabeled": False, "test": True}


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

