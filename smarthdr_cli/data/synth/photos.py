"""Scenes from real HDR photographs (`hdr_source`: a folder of .exr/.hdr files).

Each scene picks one file, crops it at a random position and size (50-100% of the largest crop of
the output's aspect ratio; from rows 25%-75% of an equirectangular panorama (width = 2 x
height), where distortion is small, wrapping around horizontally), flips it half of the time,
resizes it to the output size and meters it like a procedural scene. Each file is decoded once
per process (up to 64 files are kept).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from smarthdr_cli.data.synth.capture import meter
from smarthdr_cli.data.synth.profiles import Capture
from smarthdr_cli.errors import InputError
from smarthdr_cli.io.hdr import is_hdr, read_hdr


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
    image, exposure = meter(np.maximum(image, 0.0), exposures, rng, capture)
    params = {"kind": "hdr", "file": path.name, "crop": [left, top, crop_w, crop_h], "flip": flip, **exposure}
    return image, params

