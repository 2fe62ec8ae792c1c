"""Property-based fuzz tests of the file readers (hypothesis).

What is fuzzed:

* `io.exif.read_exif` on arbitrary bytes and on randomly mutated (bit flips, overwritten,
  inserted and deleted bytes, truncation) JPEG and TIFF files that carry EXIF exposure time,
  ISO, f-number and orientation; the mutations favour the first ~2 KB, where the EXIF lives.
* `exposure.read_exposure_file`, `parse_exposures` and `parse_ev` on arbitrary and on
  number-like text (huge, tiny, `nan`, `inf`, `1/0`, comments, blank lines) and on raw bytes
  (non-UTF-8 included).
* `io.ldr.read_ldr` on arbitrary bytes and on mutated 8- and 16-bit PNG, JPEG and TIFF files,
  plus decompression bombs (tiny files that declare gigantic images).
* `io.hdr.read_hdr` on arbitrary bytes named .hdr/.exr and on mutated files written by
  `io.hdr.write_hdr`, plus headers that declare gigantic images.
* `io.raw.decode_raw`, `camera_white_balance` and `raw_metadata` on arbitrary bytes and on
  mutated TIFF containers named like RAW files (.dng, .cr2, .nef, ...).
* `response.load_response` on arbitrary text.

The contract (project rules: bad input gets a clear one-line error): a reader either returns a
well-formed result or raises a `SmartHDRError` subclass (`InputError`, `ExposureError`) whose
message is one line. Any other exception escaping a reader is a bug. `read_exif` never raises
on a readable file: an unparseable container gives an empty `CaptureInfo()`.

All runs are derandomized so CI is reproducible. `SMARTHDR_FUZZ_SCALE=20` multiplies the
number of examples for a harder search while developing.
"""
from __future__ import annotations

import functools
import io
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smarthdr_cli.errors import ExposureError, InputError, SmartHDRError
from smarthdr_cli.exposure import parse_ev, parse_exposures, read_exposure_file
from smarthdr_cli.io.exif import CaptureInfo, read_exif
from smarthdr_cli.io.hdr import read_hdr, write_hdr
from smarthdr_cli.io.ldr import read_ldr
from smarthdr_cli.io.raw import camera_white_balance, decode_raw, raw_metadata
from smarthdr_cli.response import load_response

SCALE = float(os.environ.get("SMARTHDR_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---------------------------------------------------------------------------------------------
# Helpers: the contract, scratch files, seed files and mutations
# ---------------------------------------------------------------------------------------------


def check_error(exc: SmartHDRError, kind: type[SmartHDRError]) -> None:
    assert isinstance(exc, kind), f"expected {kind.__name__}, got {type(exc).__name__}: {exc}"
    message = str(exc)
    assert message, "empty error message"
    assert len(message.splitlines()) == 1 and "\n" not in message and "\r" not in message, repr(message)


def expect(kind: type[SmartHDRError], function, *args):
    """`function(*args)`, or None after checking that it raised a one-line `kind` error."""
    try:
        return function(*args)
    except SmartHDRError as exc:
        check_error(exc, kind)
        return None


def scratch(data: bytes, suffix: str) -> Path:
    """A fresh file holding `data` (hypothesis reuses function-scoped fixtures such as tmp_path)."""
    handle, name = tempfile.mkstemp(suffix=suffix, dir=_scratch_dir())
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    return Path(name)


@functools.lru_cache(maxsize=None)
def _scratch_dir() -> str:
    return tempfile.mkdtemp(prefix="smarthdr-fuzz-")


@pytest.fixture(autouse=True)
def _clean_scratch():
    yield
    folder = Path(_scratch_dir())
    for path in folder.iterdir():
        path.unlink(missing_ok=True)


def _pixels(height: int, width: int, dtype=np.uint8, channels: int = 3) -> np.ndarray:
    top = np.iinfo(dtype).max
    ramp = np.linspace(0, top, height * width * channels) % (top + 1)
    return ramp.astype(dtype).reshape(height, width, channels)


def _exif_tiff_info():
    from PIL import TiffImagePlugin

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[0x0112] = 6  # orientation
    ifd[0x010F] = "Fuzz"  # make
    ifd[0x0110] = "Camera 1"  # model
    ifd[0x8769] = {  # EXIF IFD
        0x829A: TiffImagePlugin.IFDRational(1, 100),  # ExposureTime
        0x8827: 200,  # ISO
        0x829D: TiffImagePlugin.IFDRational(28, 10),  # FNumber
        0x9003: "2024:01:02 03:04:05",  # DateTimeOriginal
    }
    return ifd


@functools.lru_cache(maxsize=None)
def seed(kind: str) -> bytes:
    """Small valid files to mutate."""
    from PIL import Image, TiffImagePlugin

    if kind == "exif.jpg":
        exif = Image.Exif()
        exif[0x0112] = 6
        exif[0x010F] = "Fuzz"
        exif[0x0110] = "Camera 1"
        sub = exif.get_ifd(0x8769)
        sub[0x829A] = TiffImagePlugin.IFDRational(1, 100)
        sub[0x8827] = 200
        sub[0x829D] = TiffImagePlugin.IFDRational(28, 10)
        sub[0x9003] = "2024:01:02 03:04:05"
        out = io.BytesIO()
        Image.fromarray(_pixels(16, 16)).save(out, "JPEG", exif=exif, quality=90)
        return out.getvalue()
    if kind == "exif.tif":
        out = io.BytesIO()
        Image.fromarray(_pixels(16, 16)).save(out, "TIFF", tiffinfo=_exif_tiff_info())
        return out.getvalue()
    if kind.startswith("ldr"):  # "ldr8.png", "ldr16.tif", ...
        bits, suffix = kind[3:].split(".")
        dtype = np.uint16 if bits == "16" else np.uint8
        extra = {"quality": 85} if suffix == "jpg" else {}
        pixels = _pixels(12, 10, dtype)
        if suffix == "png" and bits == "16":
            pixels = pixels[:, :, 0]  # Pillow writes 16-bit PNG as grey only
        return iio.imwrite("<bytes>", pixels, extension="." + suffix, **extra)
    if kind in ("hdr", "exr"):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"seed.{kind}"
            rgb = np.linspace(0.0, 40.0, 9 * 7 * 3, dtype=np.float32).reshape(9, 7, 3)
            write_hdr(path, rgb)
            return path.read_bytes()
    raise KeyError(kind)


@st.composite
def mutated(draw, base: bytes, hot: int = 2048) -> bytes:
    """`base` with a few random edits; offsets mostly fall within the first `hot` bytes."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 8))):
        size = max(1, len(data))
        offset = draw(st.one_of(st.integers(0, min(hot, size) - 1), st.integers(0, size - 1)))
        op = draw(st.sampled_from(["flip", "byte", "word", "insert", "delete", "truncate", "extreme"]))
        if op == "flip" and data:
            data[offset] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[offset] = draw(st.integers(0, 255))
        elif op == "word":  # overwrite with a 16/32-bit value that is often a length or offset
            value = draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFF, 0x8000, 0xFFFFFFFF, 0x7FFFFFFF, 0x10000]))
            data[offset : offset + 4] = struct.pack(draw(st.sampled_from(["<I", ">I"])), value)
        elif op == "insert":
            data[offset:offset] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[offset : offset + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[offset:]
        elif op == "extreme" and data:
            data[offset] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF]))
    return bytes(data)


def mutations_of(*kinds: str) -> st.SearchStrategy[bytes]:
    return st.sampled_from(kinds).flatmap(lambda kind: mutated(seed(kind)))


# ---------------------------------------------------------------------------------------------
# EXIF
# ---------------------------------------------------------------------------------------------


def check_capture_info(info: CaptureInfo) -> None:
    assert isinstance(info, CaptureInfo)
    assert info.exposure_time is None or (math.isfinite(info.exposure_time) and info.exposure_time > 0)
    for value in (info.iso, info.f_number):
        assert value is None or (math.isfinite(value) and value > 0)
    assert info.orientation in range(1, 9)
    assert info.make is None or isinstance(info.make, str)
    assert info.model is None or isinstance(info.model, str)
    assert info.source in ("exif", "none")
    assert (info.source == "exif") == (info.exposure_time is not None)


def test_exif_seeds_are_read():
    for kind in ("exif.jpg", "exif.tif"):
        info = read_exif(scratch(seed(kind), "." + kind.split(".")[1]))
        assert info.exposure_time == pytest.approx(0.01) and info.orientation == 6, kind
        assert info.iso == 200 and info.f_number == pytest.approx(2.8), kind


@fuzz(100)
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".jpg", ".tif", ".dng", ".png", ".cr2"]))
def test_exif_arbitrary_bytes(data, suffix):
    check_capture_info(read_exif(scratch(data, suffix)))


@fuzz(150)
@given(data=mutations_of("exif.jpg", "exif.tif"), suffix=st.sampled_from([".jpg", ".tif", ".nef"]))
def test_exif_mutated(data, suffix):
    check_capture_info(read_exif(scratch(data, suffix)))


# ---------------------------------------------------------------------------------------------
# Exposure times
# ---------------------------------------------------------------------------------------------

NUMBERISH = st.sampled_from(
    [
        "1", "-2", "0", "2", "0.5", "1/100", "1/3", "-1/2", "1/0", "0/0", "1e400", "-1e400", "1e-400",
        "5e-324", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "30", "-30", "30.0000001", "1e308",
        "9" * 400 + "/1", "1/" + "9" * 400, "9" * 5000, "1_000", "0x10", "+1", "١٢", "1/2/3", "/", "e",
        " ", "", "#", "# comment", "\t2\t", "1,", ",", ";", "\x00", "\u2028", "\x85",
    ]
)
NUMBER_TEXT = st.lists(
    st.one_of(NUMBERISH, st.text(max_size=12), st.floats().map(repr), st.integers().map(str)), max_size=8
).flatmap(
    lambda parts: st.lists(st.sampled_from([",", ";", "\n", "\r\n", "\r", " ", ", "]), min_size=len(parts), max_size=len(parts)).map(
        lambda seps: "".join(p + s for p, s in zip(parts, seps))
    )
)
COUNTS = st.integers(1, 5)


def check_times(times, count: int) -> None:
    assert isinstance(times, list) and len(times) == count
    assert all(isinstance(t, float) and math.isfinite(t) and t > 0 for t in times), times


@fuzz(150)
@given(text=st.one_of(NUMBER_TEXT, st.text(max_size=64)), count=COUNTS)
def test_parse_exposures_and_ev(text, count):
    for parse in (parse_exposures, parse_ev):
        times = expect(ExposureError, parse, text, count)
        if times is not None:
            check_times(times, count)


@fuzz(100)
@given(
    data=st.one_of(
        NUMBER_TEXT.map(lambda t: t.encode("utf-8")),
        NUMBER_TEXT.map(lambda t: t.encode("utf-16")),
        st.binary(max_size=256),
    ),
    count=COUNTS,
)
def test_read_exposure_file(data, count):
    times = expect(ExposureError, read_exposure_file, scratch(data, ".txt"), count)
    if times is not None:
        check_times(times, count)


def test_exposure_examples():
    assert parse_exposures("1/100, 1/25;0.16", 3) == pytest.approx([0.01, 0.04, 0.16])
    assert read_exposure_file(scratch(b"# evs\n-2\n\n0\n2\n", ".txt"), 3) == pytest.approx([0.25, 1.0, 4.0])
    for bad in ("1e400,1,2", "nan,1,2", "1/0,1,2", "9" * 400 + "/1,1,2", "inf,1,2"):
        with pytest.raises(ExposureError):
            parse_exposures(bad, 3)


@fuzz(60)
@given(text=st.one_of(st.text(max_size=64), NUMBER_TEXT))
def test_load_response(text):
    lines = (text + "\n") * 256 if len(text) < 32 else text  # also reach the 256-line branch
    curve = expect(InputError, load_response, scratch(lines.encode("utf-8", "surrogatepass"), ".txt"))
    if curve is not None:
        assert curve.curve.shape == (256, 3) and np.isfinite(curve.curve).all()


# ---------------------------------------------------------------------------------------------
# LDR frames
# ---------------------------------------------------------------------------------------------


def check_ldr(result) -> None:
    if result is None:
        return
    pixels, bits = result
    assert bits in (8, 16)
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.float32
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and min(pixels.shape[:2]) >= 2
    assert np.isfinite(pixels).all() and pixels.min() >= 0.0 and pixels.max() <= 1.0


def test_ldr_seeds_are_read():
    for kind in ("ldr8.png", "ldr16.png", "ldr8.jpg", "ldr8.tif", "ldr16.tif"):
        pixels, bits = read_ldr(scratch(seed(kind), "." + kind.split(".")[1]))
        assert pixels.shape == (12, 10, 3) and bits == int(kind[3:].split(".")[0]), kind


@fuzz(80)
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".jpeg", ".tif", ".tiff"]))
def test_ldr_arbitrary_bytes(data, suffix):
    check_ldr(expect(InputError, read_ldr, scratch(data, suffix)))


@fuzz(150)
@given(data=mutations_of("ldr8.png", "ldr16.png", "ldr8.jpg", "ldr8.tif", "ldr16.tif"), rename=st.booleans())
def test_ldr_mutated(data, rename):
    suffix = {b"\x89PNG": ".png", b"\xff\xd8\xff\xe0": ".jpg"}.get(data[:4], ".tif")
    if rename:  # the wrong extension for the content
        suffix = {".png": ".tif", ".jpg": ".png", ".tif": ".jpg"}[suffix]
    check_ldr(expect(InputError, read_ldr, scratch(data, suffix)))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_bomb(width: int, height: int, depth: int = 8) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def _jpeg_bomb(width: int, height: int) -> bytes:
    data = bytearray(seed("ldr8.jpg"))
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _tiff_bomb(width: int, height: int, bits: int = 16) -> bytes:
    """A little-endian baseline RGB TIFF whose single strip is far too short for its size."""
    entries = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, bits),  # BitsPerSample (one value: tifffile/Pillow accept it for all samples)
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 2),  # RGB
        (273, 4, 1, 8),  # StripOffsets
        (277, 3, 1, 3),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 16),  # StripByteCounts
    ]
    ifd_offset = 8 + 16
    out = b"II*\x00" + struct.pack("<I", ifd_offset) + b"\x00" * 16 + struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + packed
    return out + b"\x00\x00\x00\x00"


@pytest.mark.parametrize(
    "data, suffix",
    [
        (_png_bomb(200_000, 200_000), ".png"),
        (_png_bomb(12_000, 12_000), ".png"),  # above Pillow's warning limit, below its error limit
        (_png_bomb(2**31 - 1, 2**31 - 1, 16), ".png"),
        (_tiff_bomb(100_000, 100_000), ".tif"),
        (_tiff_bomb(60_000, 60_000, 8), ".tif"),
        (_tiff_bomb(4_000_000_000, 4_000_000_000), ".tif"),
    ],
    ids=["png-huge", "png-warning-band", "png-max", "tiff-huge", "tiff-60k", "tiff-max"],
)
def test_ldr_decompression_bombs(data, suffix):
    with pytest.raises(InputError) as caught:
        read_ldr(scratch(data, suffix))
    check_error(caught.value, InputError)


def test_ldr_jpeg_bomb():
    with pytest.raises(InputError) as caught:
        read_ldr(scratch(_jpeg_bomb(65_000, 65_000), ".jpg"))
    check_error(caught.value, InputError)


# ---------------------------------------------------------------------------------------------
# HDR images
# ---------------------------------------------------------------------------------------------


def check_hdr(rgb) -> None:
    if rgb is None:
        return
    assert isinstance(rgb, np.ndarray) and rgb.dtype == np.float32
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.size > 0
    assert np.isfinite(rgb).all()


def test_hdr_seeds_are_read():
    for kind in ("hdr", "exr"):
        rgb = read_hdr(scratch(seed(kind), "." + kind))
        assert rgb.shape == (9, 7, 3) and rgb.max() == pytest.approx(40.0, rel=0.02), kind


@fuzz(80)
@given(
    data=st.one_of(
        st.binary(max_size=2048),
        st.binary(max_size=512).map(lambda b: b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 4 +X 4\n" + b),
        st.binary(max_size=512).map(lambda b: b"v/1\x01\x02\x00\x00\x00" + b),  # OpenEXR magic, version 2
    ),
    suffix=st.sampled_from([".hdr", ".exr", ".pic"]),
)
def test_hdr_arbitrary_bytes(data, suffix):
    check_hdr(expect(InputError, read_hdr, scratch(data, suffix)))


@fuzz(150)
@given(kind=st.sampled_from(["hdr", "exr"]), data=st.data())
def test_hdr_mutated(kind, data):
    content = data.draw(mutated(seed(kind), hot=512))
    check_hdr(expect(InputError, read_hdr, scratch(content, "." + kind)))


@pytest.mark.parametrize("size", ["-Y 100000 +X 100000", "-Y 2000000000 +X 2000000000", "-Y 0 +X 0", "-Y -5 +X 3"])
def test_hdr_radiance_bombs(size):
    data = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + size.encode() + b"\n" + b"\x02\x02\x00\x10" * 8
    check_hdr(expect(InputError, read_hdr, scratch(data, ".hdr")))


@pytest.mark.parametrize("window", [(0, 0, 99_999, 99_999), (0, 0, 2**31 - 2, 0), (-(2**30), 0, 2**30, 3)])
def test_hdr_exr_bombs(window):
    """An OpenEXR header whose data window declares a gigantic image."""
    data = bytearray(seed("exr"))
    at = data.find(b"dataWindow\x00box2i\x00")
    assert at > 0
    at += len(b"dataWindow\x00box2i\x00") + 4
    data[at : at + 16] = struct.pack("<iiii", *window)
    check_hdr(expect(InputError, read_hdr, scratch(bytes(data), ".exr")))


# ---------------------------------------------------------------------------------------------
# RAW files (LibRaw)
# ---------------------------------------------------------------------------------------------

RAW_SUFFIXES = st.sampled_from([".dng", ".cr2", ".nef", ".arw", ".crw", ".raf", ".orf", ".rw2"])
RAW_DATA = st.one_of(
    st.binary(max_size=1024),
    mutations_of("exif.tif", "ldr16.tif"),  # TIFF containers are what most RAW formats are built on
)


@fuzz(60)
@given(data=RAW_DATA, suffix=RAW_SUFFIXES)
def test_raw_readers(data, suffix):
    path = scratch(data, suffix)
    rgb = expect(InputError, decode_raw, path, None)
    if rgb is not None:
        assert rgb.dtype == np.float32 and rgb.ndim == 3 and np.isfinite(rgb).all()
    balance = expect(InputError, camera_white_balance, path)
    assert balance is None or all(math.isfinite(v) for v in balance)
    info = raw_metadata(path)
    assert isinstance(info, CaptureInfo)
    assert info.exposure_time is None or (math.isfinite(info.exposure_time) and info.exposure_time > 0)
