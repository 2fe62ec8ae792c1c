"""What the outputs of a merge say about the shot: standard OpenEXR header attributes and the EXIF
of previews, taken from the reference frame, so that photo managers and compositing tools file
and interpret an HDR and its preview like the frames they came from; and the previews themselves
(tone-mapped, encoded with that EXIF, written like every output).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from smarthdr_cli import __version__
from smarthdr_cli.io.exif import CaptureInfo
from smarthdr_cli.io.output import atomic_output, write_file
from smarthdr_cli.tonemap import OPERATORS, to_8bit

# Linear sRGB, the colour space of every merge (RAW is developed to sRGB primaries, camera JPEGs
# are sRGB): Rec. 709 primaries and the D65 white point, as OpenEXR's chromaticities attribute
# (red x, y, green x, y, blue x, y, white x, y). A tuple: the bindings write it as that type.
REC709_CHROMATICITIES = (0.6400, 0.3300, 0.3000, 0.6000, 0.1500, 0.0600, 0.3127, 0.3290)
EXIF_DATE = "%Y:%m:%d %H:%M:%S"  # EXIF's and OpenEXR's capDate's format

# EXIF tags a preview keeps: what identifies the shot (camera, lens, time, author), not what
# describes one frame's pixels (exposure, orientation, size, thumbnail, maker notes).
_IFD0_TAGS = (0x010F, 0x0110, 0x0132, 0x013B, 0x8298)  # Make, Model, DateTime, Artist, Copyright
_EXIF_TAGS = (
    0x9003, 0x9004, 0x9010, 0x9011, 0x9012,  # DateTimeOriginal, DateTimeDigitized, OffsetTime(Original, Digitized)
    0x9290, 0x9291, 0x9292,  # SubSecTime(Original, Digitized)
    0x829D, 0x920A, 0xA405,  # FNumber, FocalLength, FocalLengthIn35mmFilm
    0xA431, 0xA432, 0xA433, 0xA434, 0xA435,  # BodySerialNumber, LensSpecification, LensMake, LensModel, LensSerialNumber
)
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_SOFTWARE, _DATE_TIME_ORIGINAL = 0x0131, 0x9003


def exr_attributes(info: CaptureInfo, exposure_seconds: float | None) -> dict[str, object]:
    """OpenEXR's standard attributes for the merge of a bracket whose reference is described by
    `info`; `exposure_seconds`: the reference's exposure time, where it is known in seconds."""
    attributes: dict[str, object] = {"chromaticities": REC709_CHROMATICITIES}
    if info.capture_time is not None:
        attributes["capDate"] = info.capture_time.strftime(EXIF_DATE)  # local time, as the camera's clock
    if exposure_seconds is not None and exposure_seconds > 0:
        attributes["expTime"] = float(exposure_seconds)
    if info.f_number is not None:
        attributes["aperture"] = float(info.f_number)
    if info.iso is not None:
        attributes["isoSpeed"] = float(info.iso)
    return attributes


def preview_exif(reference: Path | None, info: CaptureInfo) -> bytes:
    """EXIF for a preview of a merge: the reference frame's camera, lens, time and place.

    Read with Pillow where it can open the frame (JPEG, TIFF, PNG and some TIFF-based RAW);
    otherwise, and for tags Pillow did not find, from `info` (exifread or LibRaw). Never fails:
    a frame whose EXIF cannot be copied gives a preview that says less.
    """
    from PIL import Image

    exif = Image.Exif()
    source = _pillow_exif(reference) if reference is not None else None
    if source is not None:
        try:
            for tag in _IFD0_TAGS:
                if tag in source:
                    exif[tag] = source[tag]
            details, place = source.get_ifd(_EXIF_IFD), source.get_ifd(_GPS_IFD)
            copied = {tag: details[tag] for tag in _EXIF_TAGS if tag in details}
            if copied:
                exif.get_ifd(_EXIF_IFD).update(copied)
            if place:
                exif.get_ifd(_GPS_IFD).update(place)
            exif.tobytes()  # a value Pillow read but cannot write: fall back to what `info` knows
        except Exception:
            exif = Image.Exif()
    if info.make and 0x010F not in exif:
        exif[0x010F] = info.make
    if info.model and 0x0110 not in exif:
        exif[0x0110] = info.model
    if info.capture_time is not None and _DATE_TIME_ORIGINAL not in exif.get_ifd(_EXIF_IFD):
        exif.get_ifd(_EXIF_IFD)[_DATE_TIME_ORIGINAL] = info.capture_time.strftime(EXIF_DATE)
    exif[_SOFTWARE] = f"smarthdr {__version__}"
    return exif.tobytes()


def _pillow_exif(path: Path):  # -> PIL.Image.Exif | None
    from PIL import Image

    try:
        with warnings.catch_warnings():  # e.g. DecompressionBombWarning: only the header is read
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                exif = image.getexif()
                exif.get_ifd(_EXIF_IFD)  # read the sub-IFDs while the file is open
                exif.get_ifd(_GPS_IFD)
                return exif
    except Exception:  # RAW containers and files Pillow does not know
        return None


def encode_preview(pixels, kind: str, exif: bytes | None = None) -> bytes:
    """8-bit HxWx3 `pixels` as JPEG (quality 92) or PNG bytes, with `exif` if given."""
    from PIL import Image

    buffer = io.BytesIO()
    jpeg = kind.lower() in (".jpg", ".jpeg")
    options: dict[str, object] = {"quality": 92} if jpeg else {}
    if exif:
        options["exif"] = exif
    Image.fromarray(pixels).save(buffer, format="JPEG" if jpeg else "PNG", **options)
    return buffer.getvalue()


def save_preview(temp: Path, hdr: np.ndarray, operator: str, kind: str, exif: bytes | None = None) -> None:
    """Tone-map `hdr` and write it as `kind` (.jpg or .png) into `temp`, encoded in memory first
    so that a short write on a full disk is an error (see io.output.write_file).

    `exif`: EXIF bytes for the file (`preview_exif`: the reference frame's camera, lens and
    capture time), so that photo managers file the preview with the shoot."""
    write_file(temp, encode_preview(to_8bit(OPERATORS[operator](hdr)), kind, exif))


def write_preview(path: Path, hdr: np.ndarray, operator: str, overwrite: bool, exif: bytes | None = None) -> None:
    """`save_preview` to `path` on its own, atomically (the file appears complete or not at all)."""
    with atomic_output(path, overwrite) as temp:
        save_preview(temp, hdr, operator, path.suffix, exif)
