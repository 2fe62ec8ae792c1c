"""JPEG, PNG and TIFF frames (8 or 16 bit) through imageio, as float32 HxWx3 in [0, 1]."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from smarthdr_cli.errors import InputError
from smarthdr_cli.io.quiet import captured_output, first_line

# tifffile logs its complaints about broken files as warnings; the error raised here says it once.
logging.getLogger("tifffile").setLevel(logging.ERROR)

LDR_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})
# Pillow's decompression-bomb limit (2 * PIL.Image.MAX_IMAGE_PIXELS), also applied to TIFF (tifffile has none).
MAX_PIXELS = 178_956_970


# TIFF PhotometricInterpretation values read as they are stored (grey, RGB); others are converted.
_MINISWHITE, _MINISBLACK, _RGB, _PALETTE, _SEPARATED = 0, 1, 2, 3, 5
# Pillow modes (JPEG and other Pillow-read files) that are not RGB or grey samples: converted by Pillow
# ("CMYK" includes YCCK and Adobe's inverted CMYK, which Pillow's JPEG decoder undoes).
_PILLOW_TO_RGB = frozenset({"CMYK", "YCbCr", "LAB", "HSV"})


class _Undecodable(Exception):
    """A decoder gave up without a message of its own: the captured library output says why."""


def is_ldr(path: Path) -> bool:
    return path.suffix.lower() in LDR_EXTENSIONS


def _read_cv2(path: Path, kind: str) -> np.ndarray:
    """PNG through OpenCV, which keeps 16-bit RGB (Pillow reduces it to 8 bits); also TIFFs whose
    compression (LZW, Deflate: what OpenCV itself writes) tifffile cannot decode without imagecodecs,
    or whose colour space (palette, CMYK, YCbCr, CIELab) libtiff's RGBA interface converts."""
    import cv2

    # TIFF: IMREAD_COLOR so that libtiff converts palette/CMYK/YCbCr/Lab to RGB; ANYDEPTH keeps 16 bits.
    flags = cv2.IMREAD_UNCHANGED if kind == "PNG" else cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH
    data = np.fromfile(path, dtype=np.uint8)
    with captured_output() as said:  # libpng and libtiff report through OpenCV's log, on stderr
        try:
            pixels = cv2.imdecode(data, flags)
        except cv2.error as exc:
            pixels, error = None, str(exc)
        else:
            error = ""
    # libtiff may report an error ("Using code not yet in table") and OpenCV still return the
    # garbled pixels: an error the decoder reported is a corrupt file, whatever came back.
    errors = [line for line in said.text.splitlines() if line.lstrip().startswith("[ERROR") or "libpng error" in line]
    if pixels is None or errors:
        reason = first_line("\n".join(errors) or error or said.text, str(path), path.name)
        if not reason and kind == "PNG" and b"IEND" not in data[-12:].tobytes():  # OpenCV 5.1 gives no reason for a cut-off file
            reason = "truncated (the file ends before its IEND chunk)"
        raise _Undecodable(f"corrupt {kind}" + (f": {reason}" if reason else ""))
    if pixels.ndim == 3:
        pixels = pixels[:, :, [2, 1, 0, 3][: pixels.shape[2]]] if pixels.shape[2] >= 3 else pixels
    return pixels


def _tiff_to_rgb(path: Path, pixels: np.ndarray, tags: dict) -> np.ndarray:
    """tifffile returns samples as stored: inverted grey, palette indices and ink amounts become RGB here."""
    photometric = int(tags.get("PhotometricInterpretation", _MINISBLACK))
    if photometric in (_MINISBLACK, _RGB) or pixels.dtype not in (np.uint8, np.uint16):
        return pixels
    top = np.iinfo(pixels.dtype).max
    if photometric == _MINISWHITE:
        return top - pixels
    if photometric == _PALETTE and isinstance(tags.get("ColorMap"), np.ndarray) and pixels.ndim == 2:
        colours = np.asarray(tags["ColorMap"], dtype=np.uint16)  # 3 x 2**bits, 16-bit entries
        if colours.ndim != 2 or colours.shape[0] != 3 or int(pixels.max(initial=0)) >= colours.shape[1]:
            raise InputError(f"{path}: corrupt TIFF palette (colour map {colours.shape})")
        return (colours[:, pixels] >> 8).astype(np.uint8).transpose(1, 2, 0)  # as libtiff: 8-bit colours
    if photometric == _SEPARATED and int(tags.get("InkSet", 1)) == 1 and pixels.ndim == 3 and pixels.shape[2] >= 4:
        inks = pixels[:, :, :4].astype(np.float32) / top  # C, M, Y, K; not inverted in TIFF
        rgb = (1.0 - inks[:, :, :3]) * (1.0 - inks[:, :, 3:4])  # as libtiff's and Pillow's CMYK -> RGB
        return np.round(rgb * top).astype(pixels.dtype)
    if photometric == _PALETTE:
        raise _Undecodable("palette TIFF without a usable colour map")
    raise _Undecodable(f"TIFF colour space {_photometric_name(photometric)} is not supported")


def _photometric_name(value: int) -> str:
    try:
        import tifffile

        return tifffile.PHOTOMETRIC(value).name
    except (ImportError, ValueError):
        return str(value)


def _check_declared(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse a declared size before any pixel is decoded: a tiny file may declare a gigantic image."""
    if math.prod(int(n) for n in shape) > 4 * MAX_PIXELS:
        raise InputError(f"{path}: image too large ({'x'.join(map(str, shape))} declared)")


def _read_jpeg(path: Path) -> np.ndarray | None:
    """A JPEG's pixels; None when the file holds another format. Pillow reads the header (format,
    size, colour space); colour and grey JPEGs are decoded by OpenCV straight into the array,
    other colour spaces (CMYK, YCCK) by Pillow, which converts them. Pillow's decoder holds a
    12 MP frame at 4 bytes a pixel and copies it out again: 0.11 s and 30,000 page faults a
    frame against OpenCV's 0.06 s and 10,000, the same pixels (both are libjpeg-turbo)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.format != "JPEG":
            return None
        _check_declared(path, (image.height, image.width, len(image.getbands())))
        if image.mode not in ("RGB", "L"):
            return np.asarray(image.convert("RGB") if image.mode in _PILLOW_TO_RGB else image)
    import cv2

    with captured_output() as said:  # libjpeg's warnings (extraneous bytes, ...): read on, as Pillow does
        pixels = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if pixels is None:  # orientation is applied by the reader, from the EXIF it reads itself
        reason = first_line(said.text, str(path), path.name)
        raise _Undecodable("corrupt JPEG: " + (reason or "truncated or damaged image data"))
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels)


def _decode(path: Path) -> np.ndarray:
    """Pixels as stored, converted to RGB where the file holds another colour space."""
    import imageio.v3 as iio

    if path.suffix.lower() in (".jpg", ".jpeg"):
        pixels = _read_jpeg(path)
        if pixels is not None:
            return pixels
    with iio.imopen(path, "r", legacy_mode=False) as image:  # as iio.imread, but the first image only
        tiff = type(image).__name__ == "TifffilePlugin"
        first = {"index": 0, "page": 0} if tiff else {"index": 0}
        _check_declared(path, tuple(image.properties(**first).shape))
        if path.suffix.lower() == ".png":
            return _read_cv2(path, "PNG")
        tags = image.metadata(**first) if tiff else {}
        if tiff and int(tags.get("PhotometricInterpretation", _MINISBLACK)) not in (
            _MINISWHITE, _MINISBLACK, _RGB, _PALETTE, _SEPARATED
        ):  # YCbCr, CIELab, ...: libtiff converts them (8-bit), tifffile does not
            return _read_cv2(path, "TIFF")
        if not tiff and type(image).__name__ == "PillowPlugin":
            mode = image.metadata(index=0).get("mode")
            if mode in _PILLOW_TO_RGB:
                return np.asarray(image.read(index=0, mode="RGB"))
        try:
            pixels = np.asarray(image.read(**first))
        except ValueError as exc:
            if "imagecodecs" in str(exc):  # compressed as tifffile cannot decode alone: libtiff can
                return _read_cv2(path, "TIFF")
            raise
        return _tiff_to_rgb(path, pixels, tags) if tiff else pixels


def code_values(codes: np.ndarray) -> np.ndarray:
    """8-bit codes as float32 values in [0, 1], in one pass and one array (astype, then divide:
    two of each)."""
    return np.divide(codes, np.float32(255.0), dtype=np.float32)


def read_ldr(path: Path, codes: bool = False) -> tuple[np.ndarray, int]:
    """Pixels of `path` scaled to [0, 1] and the file's bit depth (8 or 16); with `codes`, an
    8-bit frame's codes as they are (uint8), for a reader that maps them through a response
    itself (a lookup from the codes: no float copy to convert back).

    The decoders run inside `captured_output`: libpng, libtiff and OpenCV print their complaints
    about a broken file themselves; what they said becomes part of the one-line InputError instead.
    """
    failure: str | None = None
    with captured_output() as captured:
        try:
            pixels = _decode(path)
        except InputError:
            raise
        except _Undecodable as exc:
            failure = str(exc)
        except Exception as exc:  # imageio's plugins (Pillow, tifffile, OpenCV) raise any kind, MemoryError too
            reason = (str(exc).strip().splitlines() or [""])[0][:120]  # imageio's messages run over many lines
            failure = f"{type(exc).__name__}: {reason}" if reason else ""
    if failure is not None:
        said = captured.reason(str(path), path.name)
        raise InputError(f"{path}: cannot decode image ({first_line(failure, str(path)) or said or 'unknown reason'})")
    if pixels.ndim == 4 and pixels.shape[0] >= 1:  # multi-page TIFF: first page
        pixels = pixels[0]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or min(pixels.shape[:2]) < 2:
        raise InputError(f"{path}: unsupported image layout {pixels.shape}")
    if pixels.shape[2] in (1, 2):  # grey (+ alpha)
        pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
    pixels = pixels[:, :, :3]
    if pixels.dtype == np.uint8 and codes:
        return np.ascontiguousarray(pixels), 8
    if pixels.dtype == np.uint8:
        return code_values(pixels), 8
    if pixels.dtype == np.uint16:
        return np.divide(pixels, np.float32(65535.0), dtype=np.float32), 16
    if np.issubdtype(pixels.dtype, np.floating):
        raise InputError(f"{path}: floating-point image; brackets must be LDR frames (8 or 16 bit)")
    raise InputError(f"{path}: unsupported sample type {pixels.dtype}")
