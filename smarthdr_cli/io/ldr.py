"""JPEG, PNG and TIFF frames (8 or 16 bit) through imageio, as float32 HxWx3 in [0, 1]."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from smarthdr_cli.errors import InputError

# tifffile logs its complaints about broken files as warnings; the error raised here says it once.
logging.getLogger("tifffile").setLevel(logging.ERROR)

LDR_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})
# Pillow's decompression-bomb limit (2 * PIL.Image.MAX_IMAGE_PIXELS), also applied to TIFF (tifffile has none).
MAX_PIXELS = 178_956_970


def is_ldr(path: Path) -> bool:
    return path.suffix.lower() in LDR_EXTENSIONS


def _read_cv2(path: Path, kind: str) -> np.ndarray:
    """PNG through OpenCV, which keeps 16-bit RGB (Pillow reduces it to 8 bits); also TIFFs whose
    compression (LZW, Deflate: what OpenCV itself writes) tifffile cannot decode without imagecodecs."""
    import cv2

    pixels = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise InputError(f"{path}: cannot decode image (corrupt {kind})")
    if pixels.ndim == 3:
        pixels = pixels[:, :, [2, 1, 0, 3][: pixels.shape[2]]] if pixels.shape[2] >= 3 else pixels
    return pixels


def read_ldr(path: Path) -> tuple[np.ndarray, int]:
    """Pixels of `path` scaled to [0, 1] and the file's bit depth (8 or 16)."""
    import imageio.v3 as iio

    try:
        with iio.imopen(path, "r", legacy_mode=False) as image:  # as iio.imread, but the first image only
            first = {"index": 0, "page": 0} if type(image).__name__ == "TifffilePlugin" else {"index": 0}
            # The declared size, before any pixel is decoded: a tiny file may declare a gigantic image.
            declared = image.properties(**first)
            if math.prod(int(n) for n in declared.shape) > 4 * MAX_PIXELS:
                raise InputError(f"{path}: image too large ({'x'.join(map(str, declared.shape))} declared)")
            pixels = _read_cv2(path, "PNG") if path.suffix.lower() == ".png" else np.asarray(image.read(**first))
    except InputError:
        raise
    except Exception as exc:  # imageio's plugins (Pillow, tifffile, OpenCV) raise any kind, MemoryError too
        if isinstance(exc, ValueError) and "imagecodecs" in str(exc):
            pixels = _read_cv2(path, "TIFF")
        else:
            reason = (str(exc).strip().splitlines() or [""])[0][:120]  # imageio's messages run over many lines
            raise InputError(f"{path}: cannot decode image ({type(exc).__name__}: {reason})") from None
    if pixels.ndim == 4 and pixels.shape[0] >= 1:  # multi-page TIFF: first page
        pixels = pixels[0]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or min(pixels.shape[:2]) < 2:
        raise InputError(f"{path}: unsupported image layout {pixels.shape}")
    if pixels.shape[2] in (1, 2):  # grey (+ alpha)
        pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
    pixels = pixels[:, :, :3]
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0, 8
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0, 16
    if np.issubdtype(pixels.dtype, np.floating):
        raise InputError(f"{path}: floating-point image; brackets must be LDR frames (8 or 16 bit)")
    raise InputError(f"{path}: unsupported sample type {pixels.dtype}")
