"""The dataset on disk: Kalantari-layout scene folders and synth.json.

`OUT/0000/` ... or, with a split, `OUT/labeled/`, `OUT/unlabeled/`, `OUT/test/` holding scene
folders named by global scene index. A scene folder holds `input_1.tif`, `input_2.tif`,
`input_3.tif` (short, reference, long; 8- or 16-bit RGB TIFF, uncompressed; `.jpg` when the
capture stores JPEGs), `exposure.txt` (EV per line relative to the shortest frame), `motion.pgm`
(8-bit, 255 = moving; a PGM, not a PNG, so that `smarthdr merge FOLDER` does not take it for a
frame) and, for labeled and test scenes, `HDRImg.hdr` (Radiance RGBE). `OUT/synth.json` records
the settings, the version and every scene's parameters. Each scene is written to a hidden
temporary folder and renamed into place, so an interrupted run leaves only complete scenes (and
no synth.json). A non-empty OUT is refused unless `overwrite`, which replaces the scene folders
listed in OUT's previous synth.json (and half-written ones) and never touches other files.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from smarthdr_cli.data.synth.options import SPLIT_HAS_GT, SPLIT_NAMES, SynthSettings
from smarthdr_cli.data.synth.profiles import REFERENCE
from smarthdr_cli.errors import OutputError
from smarthdr_cli.io.hdr import write_hdr
from smarthdr_cli.io.output import atomic_folder, atomic_output, write_file

if TYPE_CHECKING:
    from smarthdr_cli.data.synth.scene import SynthScene

FORMAT_VERSION = 1  # bump when the same settings start giving different scenes
FRAME_NAMES = ("input_1.tif", "input_2.tif", "input_3.tif")
JPEG_FRAME_NAMES = ("input_1.jpg", "input_2.jpg", "input_3.jpg")
EXPOSURE_NAME = "exposure.txt"
GT_NAME = "HDRImg.hdr"
MOTION_NAME = "motion.pgm"  # not .png: `merge.resolve_inputs` takes every PNG/TIFF of a folder as a frame
SUMMARY_NAME = "synth.json"
_PARTIAL = re.compile(r"^\..+\.partial$")


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


def prepare_output(out: Path, overwrite: bool) -> None:
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


def check_targets(out: Path, names: Sequence[str]) -> None:
    """With --overwrite, a scene folder already at a planned place is replaced: refuse before
    anything is written or removed when one was not written by synth (it has no motion mask),
    e.g. the user's own bracket folders named 0000, 0001 ..."""
    for name in names:
        folder = out / name
        if folder.exists() and not (folder / MOTION_NAME).is_file():
            raise OutputError(
                f"{folder}: exists and was not written by synth (no {MOTION_NAME}); --overwrite replaces only "
                "synth's own scene folders: choose another output folder"
            )


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


def write_summary(out: Path, settings: SynthSettings, scenes: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """synth.json (written last, atomically): generator, version, settings, layout and every
    scene's parameters; returns what it wrote."""
    summary = {
        "generator": "smarthdr synth",
        "smarthdr_version": version,
        "format_version": FORMAT_VERSION,
        "seed": settings.seed,
        "settings": round_floats(settings.describe()),
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
        temp.write_text(to_json(summary) + "\n", encoding="utf-8")
    return summary


def round_floats(value: Any) -> Any:
    """Floats (also nested in lists/dicts) to 6 significant digits, for a readable synth.json."""
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.6g}")
    if isinstance(value, (list, tuple)):
        return [round_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: round_floats(v) for k, v in value.items()}
    if isinstance(value, np.integer):
        return int(value)
    return value


def to_json(value: Any, indent: str = "") -> str:
    """JSON with one key per line but lists of plain values on one line: readable and compact."""
    inner = indent + " "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {to_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) and v for v in value):
        return "[\n" + ",\n".join(inner + to_json(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value)
