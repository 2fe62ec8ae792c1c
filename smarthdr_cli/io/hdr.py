"""HDR images in and out: OpenEXR through the OpenEXR package, Radiance .hdr through OpenCV.

OpenCV's Radiance decoder refuses files whose header has lines before `#?RADIANCE` (e.g. `VIEW=`),
so the header is parsed here, tolerantly, and only the pixel stream is handed to OpenCV.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from smarthdr_cli.errors import InputError, OutputError
from smarthdr_cli.io.output import atomic_output, write_file
from smarthdr_cli.io.quiet import captured_output, first_line
from smarthdr_cli.machine import usable_cores

HDR_EXTENSIONS = frozenset({".exr", ".hdr", ".pic", ".rgbe"})
# Rec. 709 luminance weights: OpenEXR's default chromaticities for luminance/chroma images.
_REC709_Y = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def is_hdr(path: Path) -> bool:
    return path.suffix.lower() in HDR_EXTENSIONS


def read_hdr(path: Path) -> np.ndarray:
    """Radiance of `path` as float32 HxWx3 (linear RGB)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() == ".exr":
        return _read_exr(path)
    return _read_radiance(path)


def _read_exr(path: Path) -> np.ndarray:
    import OpenEXR

    failure: str | None = None
    # OpenEXR prints its own account of a damaged file (to stderr and stdout, up to hundreds of
    # lines); captured, its first line is the reason given, as it names the actual damage.
    with captured_output() as captured:
        try:
            channels = {
                name: np.asarray(channel.pixels, dtype=np.float32)
                for name, channel in OpenEXR.File(str(path), separate_channels=True).channels().items()
            }
        except Exception as exc:  # the bindings raise plain RuntimeError/Exception on broken files
            failure = first_line(str(exc), str(path)) or type(exc).__name__
    if failure is not None:
        raise InputError(f"{path}: cannot read OpenEXR file ({captured.reason(str(path), path.name) or failure})")

    def find(name: str) -> np.ndarray | None:  # "R", or "<layer>.R" for the first layer that has it
        if name in channels:
            return channels[name]
        for key, value in sorted(channels.items()):
            if key.rsplit(".", 1)[-1] == name:
                return value
        return None

    if any(plane.ndim != 2 or plane.size == 0 for plane in channels.values()):
        raise InputError(f"{path}: OpenEXR file has channels without pixels (deep or unsupported data)")
    red, green, blue, luma = find("R"), find("G"), find("B"), find("Y")
    if red is not None and green is not None and blue is not None:
        rgb = np.stack(_full_size([red, green, blue]), axis=2)
    elif luma is not None and find("RY") is not None and find("BY") is not None:
        rgb = _from_luminance_chroma(luma, find("RY"), find("BY"))
    elif luma is not None:
        rgb = np.repeat(luma[:, :, None], 3, axis=2)
    else:
        raise InputError(f"{path}: OpenEXR file has no RGB or Y channels ({', '.join(sorted(channels))})")
    return np.nan_to_num(rgb, nan=0.0, posinf=65504.0, neginf=0.0).astype(np.float32)


def _full_size(planes: list[np.ndarray]) -> list[np.ndarray]:
    """Channels stored subsampled (x/ySampling > 1) resized to the largest one's size."""
    import cv2

    size = (max(p.shape[1] for p in planes), max(p.shape[0] for p in planes))  # OpenCV's (width, height)
    return [p if p.shape[::-1] == size else cv2.resize(p, size, interpolation=cv2.INTER_LINEAR) for p in planes]


def _from_luminance_chroma(luma: np.ndarray, ry: np.ndarray, by: np.ndarray) -> np.ndarray:
    """OpenEXR's luminance/chroma encoding: RY = (R - Y) / Y and BY = (B - Y) / Y, chroma subsampled."""
    import cv2

    height, width = luma.shape
    ry = cv2.resize(ry, (width, height), interpolation=cv2.INTER_LINEAR)
    by = cv2.resize(by, (width, height), interpolation=cv2.INTER_LINEAR)
    red = (ry + 1.0) * luma
    blue = (by + 1.0) * luma
    green = (luma - _REC709_Y[0] * red - _REC709_Y[2] * blue) / _REC709_Y[1]
    return np.maximum(np.stack([red, green, blue], axis=2), 0.0)


def _read_radiance(path: Path) -> np.ndarray:
    data = path.read_bytes()
    end = data.find(b"\n\n", 0, 1 << 16)
    if end < 0:
        raise InputError(f"{path}: not a Radiance .hdr file (no header end)")
    header = data[:end].decode("latin-1").splitlines()
    if not any(line.startswith("#?") for line in header):
        raise InputError(f"{path}: not a Radiance .hdr file (no #?RADIANCE line)")
    formats = [line.split("=", 1)[1].strip() for line in header if line.startswith("FORMAT=")]
    if formats and formats[-1] != "32-bit_rle_rgbe":
        raise InputError(f"{path}: unsupported Radiance pixel format {formats[-1]}")
    stream = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + data[end + 2 :]
    rgb = np.ascontiguousarray(_decode_rgbe(path, stream)[:, :, ::-1])
    if not np.isfinite(rgb).all():
        raise InputError(f"{path}: corrupt Radiance .hdr pixel data (non-finite values)")
    return rgb


def _decode_rgbe(path: Path, stream: bytes) -> np.ndarray:
    """OpenCV's decoding of `path`'s pixels, given as a standard Radiance `stream`; InputError if it fails.

    The stream goes through a temporary file of ours: cv2.imdecode writes one itself for this
    format and leaves it behind in the temp folder when the decoder throws (oversized images).
    """
    import tempfile

    import cv2

    try:
        handle, name = tempfile.mkstemp(prefix="smarthdr-", suffix=".hdr")
    except OSError as exc:
        raise InputError(f"{path}: cannot decode Radiance .hdr (temporary file: {exc.strerror or exc})") from None
    failure = ""
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(stream)
        with captured_output() as captured:  # OpenCV logs "RGBE read error" and the like to stderr itself
            try:
                bgr = cv2.imread(name, cv2.IMREAD_UNCHANGED)
            except cv2.error as exc:
                bgr, failure = None, str(exc)
    except OSError as exc:
        raise InputError(f"{path}: cannot decode Radiance .hdr (temporary file: {exc.strerror or exc})") from None
    finally:
        os.unlink(name)
    if bgr is None or bgr.ndim != 3 or bgr.dtype != np.float32:
        said = captured.text + "\n" + failure
        said = "image too large" if "CV_IO_MAX_IMAGE" in said else first_line(said, str(path), path.name)
        raise InputError(f"{path}: corrupt Radiance .hdr pixel data" + (f" ({said})" if said else ""))
    return bgr


def write_hdr(
    path: Path,
    rgb: np.ndarray,
    *,
    attributes: Mapping[str, object] | None = None,
    float32: bool = False,
    overwrite: bool = False,
) -> None:
    """Write linear HxWx3 radiance to .exr (PIZ, half unless `float32`) or Radiance .hdr, atomically."""
    _check_hdr_suffix(path)
    with atomic_output(path, overwrite) as temp:
        save_hdr(temp, rgb, kind=path.suffix, attributes=attributes, float32=float32)


def _check_hdr_suffix(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in (".exr", ".hdr"):
        raise OutputError(f"{path}: unsupported HDR output type {suffix or '(none)'}; use .exr or .hdr")


@functools.lru_cache(maxsize=1)
def _exr_threads() -> None:
    """OpenEXR compresses line blocks in parallel only when told how many threads it may use."""
    import OpenEXR

    OpenEXR.set_global_thread_count(usable_cores())


def save_hdr(
    temp: Path, rgb: np.ndarray, *, kind: str, attributes: Mapping[str, object] | None = None, float32: bool = False
) -> None:
    """Write `rgb` as `kind` (.exr or .hdr) into `temp`, a temporary of `io.output` (not atomic itself)."""
    exr = kind.lower() == ".exr"
    pixels = _finite(rgb, np.float16 if exr and not float32 else np.float32)
    if exr:
        _exr_threads()
        _write_exr(temp, pixels, attributes or {})
    else:
        _write_radiance(temp, pixels)


def _finite(rgb: np.ndarray, dtype: type) -> np.ndarray:
    """`rgb` as `dtype`, negative and NaN values 0, +inf and what half floats cannot hold
    65504. Row blocks at a time: on the whole image the intermediate copies were three more
    full-size arrays at the moment memory peaks (the frames, the HDR and the output)."""
    import cv2

    out = np.empty(rgb.shape, dtype=dtype)
    step = max(1, (1 << 20) // max(1, rgb[0].size))
    for start in range(0, rgb.shape[0], step):
        block = np.fmax(rgb[start : start + step], np.float32(0.0))  # fmax: NaN (and -inf) become 0
        rows = out[start : start + step]
        if dtype == np.float16:
            np.minimum(block, np.float32(65504.0), out=block)  # +inf too
            # OpenCV's conversion gives the same bits as numpy's, in 60% of its time.
            cv2.multiply(block.reshape(len(block), -1), 1.0, dst=rows.reshape(len(rows), -1), dtype=cv2.CV_16F)
        else:
            np.copyto(block, np.float32(65504.0), where=block == np.inf)
            rows[...] = block
    return out


def _write_exr(temp: Path, pixels: np.ndarray, attributes: Mapping[str, object]) -> None:
    import OpenEXR

    # PIZ (wavelet + Huffman, lossless): on a 12 MP merged photograph 0.43 s and 31 MiB against
    # ZIP's 0.82 s and 34 MiB; photographic noise is what it was made for.
    header: dict[str, object] = {"compression": OpenEXR.PIZ_COMPRESSION, "type": OpenEXR.scanlineimage}
    for key, value in attributes.items():
        # The bindings type an attribute by its value: a list of numbers is a float vector, a
        # tuple one of the fixed types (chromaticities: 8 floats; V2f: 2).
        if isinstance(value, list):
            value = [float(v) for v in value]
        elif isinstance(value, tuple):
            value = tuple(float(v) for v in value)
        header[key] = value
    try:
        OpenEXR.File(header, {"RGB": pixels}).write(str(temp))
    except Exception as exc:  # e.g. disk full: the bindings raise a generic error
        raise OutputError(f"{temp.name}: cannot write OpenEXR ({str(exc).splitlines()[0][:160]})") from None


def _write_radiance(temp: Path, rgb: np.ndarray) -> None:
    import cv2

    ok, encoded = cv2.imencode(".hdr", np.ascontiguousarray(rgb[:, :, ::-1].astype(np.float32)))
    if not ok:
        raise OutputError(f"{temp.name}: OpenCV could not encode Radiance .hdr")
    write_file(temp, encoded.tobytes())
