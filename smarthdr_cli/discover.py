"""Bracket discovery in photo libraries: which files were shot together as one bracket.

From each file's EXIF (camera, capture time, exposure) and pixel size, shots are ordered by
capture time (then file name, as cameras number files in shooting order) and grouped:
consecutive shots of the same folder, camera, size and kind (RAW or not) belong together while each
starts within `gap` seconds of the *end* of the previous exposure (so a 30 s exposure does not
split its bracket) and its exposure differs from those already in the group (a repeated
exposure starts the next bracket, as with back-to-back brackets). With a fixed bracket size,
every N consecutive shots of one folder, camera, size and kind form a bracket instead. Groups of one are
single shots; they are reported, not merged. A bracket never spans folders: copies of one shoot
in several folders carry identical capture times and would otherwise interleave.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

from smarthdr_cli.errors import SmartHDRError
from smarthdr_cli.io.capture import capture_info
from smarthdr_cli.io.ldr import is_ldr
from smarthdr_cli.io.raw import is_raw


@dataclass(frozen=True)
class Shot:
    """One file with what grouping needs; `root` is the input folder it was found under."""

    path: Path
    root: Path
    camera: str | None
    size: tuple[int, int] | None
    capture_time: datetime | None
    exposure: float | None
    raw: bool

    @property
    def group_key(self) -> tuple[object, ...]:
        return (self.path.parent, self.camera, self.size, self.raw)


@dataclass
class Discovery:
    brackets: list[list[Shot]]
    singles: list[tuple[Shot, str]]
    unreadable: list[tuple[Path, str]]


def find_files(roots: Sequence[Path]) -> list[tuple[Path, Path]]:
    """(file, root) for every JPEG/PNG/TIFF/RAW file under the roots, hidden folders skipped."""
    found = []
    for root in roots:
        if root.is_file():
            found.append((root, root.parent))
            continue
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in sorted(files):
                path = Path(folder) / name
                if not name.startswith(".") and (is_ldr(path) or is_raw(path)):
                    found.append((path, root))
    return found


def _pixel_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file header without decoding pixels; None if unknown."""
    try:
        if is_raw(path):
            import rawpy

            with rawpy.imread(str(path)) as raw:
                return int(raw.sizes.width), int(raw.sizes.height)
        from PIL import Image

        with Image.open(path) as image:
            return image.size
    except Exception:  # unreadable headers are for the merge to report, with its own message
        return None


def read_shot(path: Path, root: Path) -> Shot:
    """The shot's metadata; an empty or non-image file raises InputError (reported as unreadable)."""
    info = capture_info(path)  # checks first that the file is an image at all
    return Shot(path, root, info.camera, _pixel_size(path), info.capture_time, info.exposure_time, is_raw(path))


def _order(shot: Shot) -> tuple[object, ...]:
    return (shot.capture_time or datetime.min, str(shot.path.parent), shot.path.name)


def _same_exposure(a: float, b: float) -> bool:
    return abs(math.log2(a / b)) < 1 / 6


def _streams(shots: Iterable[Shot]) -> list[list[Shot]]:
    """Shots split by folder, camera, size and kind, each stream in shooting order.

    Interleaved streams (RAW+JPEG shooting, two cameras, copies in two folders) are grouped separately.
    """
    streams: dict[tuple[object, ...], list[Shot]] = {}
    for shot in sorted(shots, key=_order):
        streams.setdefault(shot.group_key, []).append(shot)
    return list(streams.values())


def reference_shot(shots: Sequence[Shot]) -> Shot:
    """The frame `merge` will take as reference: the middle one in exposure order (batch names
    its outputs after it; a library bracket used for training is named after it too)."""
    from smarthdr_cli.bracket import choose_three

    ordered = sorted(shots, key=lambda s: (s.exposure or 0.0, s.path.name))
    chosen, position = choose_three(len(ordered), None)
    return ordered[chosen[position]]


def group_by_time(shots: Iterable[Shot], gap: float) -> list[list[Shot]]:
    """Consecutive shots within `gap` seconds of the previous exposure's end, exposures distinct."""
    return [group for stream in _streams(shots) for group in _group_stream_by_time(stream, gap)]


def _group_stream_by_time(stream: list[Shot], gap: float) -> list[list[Shot]]:
    groups: list[list[Shot]] = []
    for shot in stream:
        current = groups[-1] if groups else None
        if current is not None:
            last = current[-1]
            started = (shot.capture_time - last.capture_time).total_seconds() - (last.exposure or 0.0)  # type: ignore[operator]
            if (
                started <= gap
                and not any(_same_exposure(shot.exposure, s.exposure) for s in current)  # type: ignore[arg-type]
            ):
                current.append(shot)
                continue
        groups.append([shot])
    return groups


def group_by_count(shots: Iterable[Shot], size: int) -> list[list[Shot]]:
    """Every `size` consecutive shots of one folder, camera, size and kind; a shorter remainder stays."""
    return [stream[i : i + size] for stream in _streams(shots) for i in range(0, len(stream), size)]


def discover(roots: Sequence[Path], gap: float = 2.0, bracket_size: int | None = None) -> Discovery:
    """Group every image file under `roots` into brackets; report singles and unreadable files."""
    shots, unreadable = [], []
    for path, root in find_files(roots):
        try:
            shots.append(read_shot(path, root))
        except SmartHDRError as exc:
            unreadable.append((path, str(exc)))
    singles: list[tuple[Shot, str]] = []
    if bracket_size is None:
        timed = [s for s in shots if s.capture_time is not None and s.exposure is not None]
        for shot in shots:
            if shot.capture_time is None or shot.exposure is None:
                what = "capture time" if shot.capture_time is None else "exposure time"
                singles.append((shot, f"no EXIF {what}; group such files with --bracket-size N"))
        groups = group_by_time(timed, gap)
    else:
        groups = group_by_count(shots, bracket_size)
    brackets = []
    for group in groups:
        if len(group) >= 2:
            brackets.append(group)
        else:
            reason = "single shot" if bracket_size is None else f"fewer than {bracket_size} shots left in its sequence"
            singles.append((group[0], reason))
    return Discovery(brackets, singles, unreadable)
