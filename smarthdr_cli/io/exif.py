"""Capture metadata of one frame: exposure, ISO, aperture, orientation, camera, capture time.

exifread reads JPEG/TIFF and the TIFF-based RAW containers (DNG, CR2, NEF, ARW) even when the image
data itself is broken; for containers it cannot parse (CRW, KDC) LibRaw's own metadata is the
fallback (see `smarthdr_cli.io.raw.raw_metadata`).
"""
from __future__ import annotations

import codecs
import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import exifread

from smarthdr_cli.errors import InputError
from smarthdr_cli.io.ldr import is_ldr

# exifread logs "File format not recognized" and the like as warnings: the caller decides what
# a missing tag means, so these stay off the user's terminal.
logging.getLogger("exifread").setLevel(logging.CRITICAL)

# EXIF Orientation values -> (number of 90-degree counter-clockwise turns, mirror left-right first)
_ORIENTATIONS: dict[int, tuple[int, bool]] = {
    1: (0, False),
    2: (0, True),
    3: (2, False),
    4: (2, True),
    5: (1, True),
    6: (3, False),
    7: (3, True),
    8: (1, False),
}


@dataclass(frozen=True)
class CaptureInfo:
    """What the camera recorded about one frame; every field may be unknown (None)."""

    exposure_time: float | None = None  # seconds
    iso: float | None = None
    f_number: float | None = None
    orientation: int = 1  # EXIF orientation 1..8
    make: str | None = None
    model: str | None = None
    capture_time: datetime | None = None
    source: str = "none"  # "exif", "libraw" or "none"

    @property
    def camera(self) -> str | None:
        parts = [p for p in (self.make, self.model) if p]
        return " ".join(parts) if parts else None

    def merged(self, fallback: "CaptureInfo") -> "CaptureInfo":
        """Fill unknown fields from `fallback` (e.g. LibRaw where exifread found nothing)."""
        updates = {
            name: getattr(fallback, name)
            for name in ("exposure_time", "iso", "f_number", "make", "model", "capture_time")
            if getattr(self, name) is None and getattr(fallback, name) is not None
        }
        if not updates:
            return self
        if self.exposure_time is None and "exposure_time" in updates:
            updates["source"] = fallback.source
        return replace(self, **updates)


def _ratio(value: object) -> float | None:
    """An exifread tag value (Ratio, int or list of them) as a positive float, or None."""
    values = getattr(value, "values", None)
    if values is None or len(values) == 0:
        return None
    first = values[0]
    try:
        if hasattr(first, "num") and hasattr(first, "den"):
            if first.den == 0:
                return None
            number = float(Fraction(first.num, first.den))
        else:
            number = float(first)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip().strip("\x00").strip()
    return text or None


def _datetime(value: object) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    try:
        return datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


# exifread makes about 2,000 reads and seeks on the largest real files; some broken containers send
# it round in circles for ever (a HEIC box whose 64-bit size is 0 is "skipped" by seeking to itself).
_MAX_FILE_CALLS = 250_000


class _TooManyCalls(Exception):
    pass


class _BoundedFile:
    """The file as exifread sees it (read, seek, tell), cut off after `_MAX_FILE_CALLS` calls."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._left = _MAX_FILE_CALLS

    def _spend(self) -> None:
        self._left -= 1
        if self._left < 0:
            raise _TooManyCalls

    def read(self, size: int = -1) -> bytes:
        self._spend()
        return self._handle.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._spend()
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        self._spend()
        return self._handle.tell()


def read_exif(path: Path) -> CaptureInfo:
    """Read the capture metadata of `path` with exifread; unparseable containers give no fields."""
    try:
        with open(path, "rb") as handle:
            tags = exifread.process_file(_BoundedFile(handle), details=False)  # type: ignore[arg-type]
    except OSError:
        raise
    except Exception:  # exifread raises many kinds of errors on containers it does not know
        return CaptureInfo()
    if not tags:
        return CaptureInfo()

    exposure = _ratio(tags.get("EXIF ExposureTime"))
    if exposure is None or exposure <= 0:
        apex = _ratio(tags.get("EXIF ShutterSpeedValue"))  # APEX Tv: t = 2^-Tv
        exposure = 2.0 ** (-apex) if apex is not None and abs(apex) < 40 else None
    iso = _ratio(tags.get("EXIF ISOSpeedRatings")) or _ratio(tags.get("EXIF PhotographicSensitivity"))
    f_number = _ratio(tags.get("EXIF FNumber"))
    if f_number is None or f_number <= 0:
        apex = _ratio(tags.get("EXIF ApertureValue"))  # APEX Av: N = sqrt(2)^Av
        f_number = math.sqrt(2.0) ** apex if apex is not None and 0 < apex < 40 else None
    orientation_tag = tags.get("Image Orientation")
    orientation = int(_ratio(orientation_tag) or 1) if orientation_tag is not None else 1
    if orientation not in _ORIENTATIONS:
        orientation = 1
    return CaptureInfo(
        exposure_time=exposure if exposure and exposure > 0 else None,
        iso=iso if iso and iso > 0 else None,
        f_number=f_number if f_number and f_number > 0 else None,
        orientation=orientation,
        make=_text(tags.get("Image Make")),
        model=_text(tags.get("Image Model")),
        capture_time=_datetime(tags.get("EXIF DateTimeOriginal") or tags.get("Image DateTime")),
        source="exif" if exposure else "none",
    )


# How JPEG, PNG, TIFF and BigTIFF files start (the LDR frames this tool reads); RAW containers
# are too many to list, so they are only checked for being empty or text.
_LDR_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_SNIFF_BYTES = 1024


def _is_text(head: bytes) -> bool:
    """No NUL byte and valid UTF-8 (a character cut at the end allowed): every image header has NULs."""
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def check_image(path: Path) -> None:
    """Refuse an empty file or one that is no image, from its first bytes.

    `read_exif` finds no EXIF in such a file and says nothing; without this check it would be
    reported as a frame without exposure time, or as a single shot by `batch`. A file that cannot
    be opened passes: opening it is the reader's to report, with its own message.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return
    if not head:
        raise InputError(f"{path}: empty file (0 bytes); copy it again or leave it out")
    if _is_text(head):
        raise InputError(f"{path}: not a JPEG/PNG/TIFF/RAW image (it holds text); leave it out")
    if is_ldr(path) and not head.startswith(_LDR_SIGNATURES):
        raise InputError(f"{path}: not a JPEG/PNG/TIFF/RAW image (no JPEG, PNG or TIFF signature); leave it out")


def orientation_turns(orientation: int) -> tuple[int, bool]:
    """(counter-clockwise quarter turns, mirror first) that display an image upright."""
    return _ORIENTATIONS.get(orientation, (0, False))
