"""Capture metadata of one frame file, whatever its container: EXIF first, LibRaw's for RAW.

Its own module, beside `io.exif` (the EXIF parser) and `io.raw` (which imports `io.exif` for
`CaptureInfo`): with this function in `io.exif` the two modules would import each other.
"""
from __future__ import annotations

from pathlib import Path

from smarthdr_cli.errors import InputError
from smarthdr_cli.io import raw as raw_io
from smarthdr_cli.io.exif import CaptureInfo, check_image, read_exif


def capture_info(path: Path) -> CaptureInfo:
    """exifread first; LibRaw's metadata fills the gaps for RAW containers exifread cannot parse."""
    check_image(path)  # an empty or text file is that, not a photo without an exposure time
    try:
        info = read_exif(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw_io.is_raw(path) and info.exposure_time is None:
        info = info.merged(raw_io.raw_metadata(path))
    return info
