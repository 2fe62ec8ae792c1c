"""RAW frames through LibRaw (rawpy), developed into the network's LDR domain.

The development, identical for every frame of a bracket so that eq. (1) holds between them:
linear demosaic (AHD) to 16-bit, camera colour matrix to sRGB primaries, the white balance of the
*reference* frame applied to all frames, no auto-brightness, no gamma, highlights clipped; then
`x = (linear / 65535) ** (1 / 2.2)` brings the frame into the gamma-2.2 LDR domain, so that
`x ** 2.2 / t` is proportional to scene radiance exactly, with no camera response to estimate.
"""
from __future__ import annotations

import contextlib
import math
from datetime import datetime
from pathlib import Path
from typing import Iterator

import numpy as np

from smarthdr_cli.bracket import GAMMA
from smarthdr_cli.errors import InputError
from smarthdr_cli.io.exif import CaptureInfo
from smarthdr_cli.io.quiet import captured_output

RAW_EXTENSIONS = frozenset(
    ".3fr .ari .arw .bay .cr2 .cr3 .crw .dcr .dng .erf .fff .iiq .k25 .kdc .mef .mos .mrw .nef "
    ".nrw .orf .pef .raf .raw .rw2 .rwl .sr2 .srf .srw .x3f".split()
)


def is_raw(path: Path) -> bool:
    return path.suffix.lower() in RAW_EXTENSIONS


@contextlib.contextmanager
def _quiet_libraw() -> Iterator[None]:
    """Keep LibRaw's own C-level messages ("Unexpected end of file") off the user's terminal; the
    shared capture is safe where fd 2 is closed, redirected or used from several threads at once."""
    with captured_output():
        yield


@contextlib.contextmanager
def _libraw(path: Path, doing: str) -> Iterator[None]:
    """LibRaw's errors, raised at open, unpack or postprocess alike, as one-line InputErrors."""
    import rawpy

    with _quiet_libraw():
        try:
            yield
        except rawpy.LibRawFileUnsupportedError:
            raise InputError(f"{path}: not a RAW format LibRaw can read") from None
        except (rawpy.LibRawError, OSError, MemoryError, ValueError) as exc:
            raise InputError(f"{path}: cannot {doing} ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text).strip() or type(exc).__name__


def raw_metadata(path: Path) -> CaptureInfo:
    """LibRaw's metadata: the fallback where exifread cannot parse the container (CRW, KDC)."""
    import rawpy

    try:
        with _libraw(path, "read RAW metadata"), rawpy.imread(str(path)) as raw:
            other = raw.other
            shutter = float(other.shutter_speed)
            iso = float(other.iso_speed)
            aperture = float(other.aperture)
            stamp = other.timestamp
    except InputError:
        return CaptureInfo()
    if not isinstance(stamp, datetime):
        try:
            stamp = datetime.fromtimestamp(float(stamp)) if stamp else None
        except (TypeError, ValueError, OverflowError, OSError):
            stamp = None
    elif stamp == datetime.fromtimestamp(0):  # rawpy's rendering of LibRaw's "no date" (timestamp 0)
        stamp = None
    # LibRaw passes on what the file says: an ExposureTime stored as a double may be inf or NaN.
    shutter, iso, aperture = (v if math.isfinite(v) and v > 0 else 0.0 for v in (shutter, iso, aperture))
    return CaptureInfo(
        exposure_time=shutter if shutter > 0 else None,
        iso=iso if iso > 0 else None,
        f_number=aperture if aperture > 0 else None,
        capture_time=stamp,
        source="libraw" if shutter > 0 else "none",
    )


def camera_white_balance(path: Path) -> list[float] | None:
    """As-shot white-balance multipliers of `path`, or None where the camera recorded none."""
    import rawpy

    with _libraw(path, "read RAW file"), rawpy.imread(str(path)) as raw:
        wb = [float(v) for v in raw.camera_whitebalance]
        daylight = [float(v) for v in raw.daylight_whitebalance]
    for candidate in (wb, daylight):
        if len(candidate) >= 3 and all(v > 0 for v in candidate[:3]):
            if len(candidate) == 4 and candidate[3] <= 0:
                candidate = candidate[:3] + [candidate[1]]
            return candidate
    return None


def decode_raw(path: Path, white_balance: list[float] | None) -> np.ndarray:
    """Develop `path` to float32 HxWx3 in the gamma-2.2 LDR domain, EXIF orientation applied."""
    import rawpy

    with _libraw(path, "decode RAW data"), rawpy.imread(str(path)) as raw:
        rgb = raw.postprocess(
            demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD,
            user_wb=white_balance,
            use_camera_wb=False,
            use_auto_wb=False,
            output_color=rawpy.ColorSpace.sRGB,
            gamma=(1.0, 1.0),
            no_auto_bright=True,
            output_bps=16,
            highlight_mode=rawpy.HighlightMode.Clip,
            user_flip=None,
        )
    linear = rgb.astype(np.float32) / 65535.0
    return np.power(linear, 1.0 / GAMMA, dtype=np.float32)
