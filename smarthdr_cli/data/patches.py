"""Bounded-memory training patches: scenes decoded once into an on-disk cache, cropped lazily.

A folder of hundreds of 24 MP scenes does not fit in memory, and RAW decoding costs seconds per
frame. Each scene is therefore decoded once into a cache entry (frames as uint16 in the gamma
domain: exact for 8- and 16-bit sources, a 1.5e-5 step for RAW; ground truth as float32) and read
back memory-mapped, so a 64 px crop touches 64 rows of each frame, not the whole file. The entry is
keyed by the content of every file of the scene and by the read settings, so editing a file or a
setting makes a new entry and never serves stale pixels.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from smarthdr_cli.data.grid import grid_origins
from smarthdr_cli.data.layouts import ReadSettings, SceneSource, read_scene
from smarthdr_cli.errors import OutputError, SmartHDRError
from smarthdr_cli.io.output import atomic_folder, atomic_output

CACHE_FORMAT = 1
FRAME_SCALE = 65535.0


def default_cache_dir() -> Path:
    """$SMARTHDR_CACHE, else $XDG_CACHE_HOME/smarthdr/scenes, else ~/.cache/smarthdr/scenes."""
    if os.environ.get("SMARTHDR_CACHE"):
        return Path(os.environ["SMARTHDR_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "smarthdr" / "scenes"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(source: SceneSource, settings: ReadSettings) -> str:
    """sha256 over the scene's file contents (with their roles) and the read settings."""
    description = {
        "format": CACHE_FORMAT,
        "settings": settings.key(),
        "frames": [_file_digest(p) for p in source.frames],
        "gt": _file_digest(source.gt) if source.gt else None,
        "exposure": _file_digest(source.exposure_file) if source.exposure_file else None,
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:40]


@dataclass
class CachedScene:
    """One decoded scene, memory-mapped: frames (3, H, W, 3) uint16, gt (H, W, 3) float32 or None."""

    name: str
    frames: np.ndarray
    exposures: np.ndarray
    gt: np.ndarray | None
    folder: Path

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as float32 HxWx3 in [0, 1]."""
        return self.frames[index].astype(np.float32) / np.float32(FRAME_SCALE)

    def crop(self, top: int, left: int, size: int) -> dict[str, torch.Tensor]:
        """A training sample: frames (3, 3, s, s) in [0, 1], exposures (3,), gt (3, s, s) if labeled."""
        frames = self.frames[:, top : top + size, left : left + size].astype(np.float32) / np.float32(FRAME_SCALE)
        sample = {
            "frames": torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))),
            "exposures": torch.from_numpy(self.exposures.astype(np.float32)),
        }
        if self.gt is not None:
            gt = np.asarray(self.gt[top : top + size, left : left + size], dtype=np.float32)
            sample["gt"] = torch.from_numpy(np.ascontiguousarray(gt.transpose(2, 0, 1)))
        return sample


def _open_entry(folder: Path) -> CachedScene:
    meta = json.loads((folder / "meta.json").read_text())
    frames = np.load(folder / "frames.npy", mmap_mode="r")
    gt = np.load(folder / "gt.npy", mmap_mode="r") if (folder / "gt.npy").exists() else None
    return CachedScene(meta["name"], frames, np.asarray(meta["exposures"], dtype=np.float32), gt, folder)


def _write_entry(folder: Path, source: SceneSource, settings: ReadSettings) -> None:
    # An entry is keyed by its content: when another run (two trainings on one cache) publishes it
    # while this one decodes, keep theirs, which they may already have mapped. A folder without
    # meta.json is no entry (an older version's leftover) and is replaced.
    broken = folder.exists() and not (folder / "meta.json").exists()
    scene = read_scene(source, settings)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"scene cache {folder.parent}: cannot create ({exc.strerror or exc})") from None
    with atomic_folder(folder, overwrite=True, first_wins=not broken) as temp:
        frames = np.stack([np.round(np.clip(f, 0, 1) * FRAME_SCALE).astype(np.uint16) for f in scene.frames])
        np.save(temp / "frames.npy", frames)
        if scene.gt is not None:
            np.save(temp / "gt.npy", scene.gt.astype(np.float32))
        meta = {"name": scene.name, "exposures": scene.exposures.tolist(), "source": str(source.folder), "gt_scale": scene.gt_scale, "notes": scene.notes}
        (temp / "meta.json").write_text(json.dumps(meta, indent=1))


def _failure_of(folder: Path, source: SceneSource, settings: ReadSettings) -> str | None:
    """Why an optional scene (a library bracket) cannot be read, or None once it is in the cache.

    The reason is cached beside the entries, keyed like them: every DDP rank and every later run
    (a `--resume`) skip the same brackets without decoding them again."""
    failed = folder.with_name(folder.name + ".failed")
    if failed.is_file():
        return failed.read_text(encoding="utf-8", errors="replace").strip() or "cannot be read"
    try:
        _write_entry(folder, source, settings)
    except OutputError:
        raise  # the cache's trouble (a full disk), not the bracket's
    except SmartHDRError as exc:
        try:
            failed.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"scene cache {failed.parent}: cannot create ({error.strerror or error})") from None
        with atomic_output(failed, overwrite=True) as temp:
            temp.write_text(str(exc), encoding="utf-8")
        return str(exc)
    return None


def prepare_scenes(
    sources: Sequence[SceneSource],
    cache_dir: Path,
    settings: ReadSettings = ReadSettings(),
    progress: Callable[[int, int, str], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> list[CachedScene]:
    """Each scene from the cache, decoding (once) the ones that are not there yet; an optional
    source that cannot be read is left out, with a note."""
    scenes = []
    for index, source in enumerate(sources):
        folder = cache_dir / cache_key(source, settings)
        if not (folder / "meta.json").exists():  # entries appear whole (atomic_folder); none yet
            if not source.optional:
                _write_entry(folder, source, settings)
            elif (reason := _failure_of(folder, source, settings)) is not None:
                if note:
                    note(f"skipped bracket {source.name} ({', '.join(p.name for p in source.frames)}): {reason}")
                continue
        scene = _open_entry(folder)
        scene.name = source.name
        scenes.append(scene)
        if progress:
            progress(index + 1, len(sources), source.name)
    return scenes


def patch_index(shapes: Sequence[tuple[int, int]], size: int, stride: int, keep: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """(M, 3) int array of (scene, top, left) over every scene's patch grid, minus dropped patches.

    `keep[i]` is the patch-level mask of scene i over `grid_origins` (eq. 11), when one applies.
    """
    parts = []
    for number, (height, width) in enumerate(shapes):
        origins = grid_origins(height, width, size, stride)
        if keep is not None:
            origins = origins[np.asarray(keep[number], dtype=bool)]
        parts.append(np.column_stack([np.full(len(origins), number), origins]))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 3), dtype=np.int64)
