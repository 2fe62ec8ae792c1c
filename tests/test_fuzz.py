"""Property-based fuzz tests of the file readers (hypothesis).

What is fuzzed:

* `io.exif.read_exif` on arbitrary bytes; on randomly mutated (bit flips, overwritten, inserted
  and deleted bytes, truncation) JPEG, TIFF, PNG and WebP files that carry EXIF exposure time,
  ISO, f-number and orientation, the mutations favouring the first ~2 KB where the EXIF lives;
  on hand-written TIFF/EXIF structures whose tag values are anything (zero denominators, NaN
  doubles, wrong types, lying counts); and on HEIC/AVIF/JPEG XL box sequences with odd sizes.
* `exposure.read_exposure_file`, `parse_exposures` and `parse_ev` on arbitrary and on
  number-like text (huge, tiny, `nan`, `inf`, `1/0`, comments, blank lines) and on raw bytes
  (non-UTF-8 included); `response.load_response` on arbitrary text.
* `io.ldr.read_ldr` on arbitrary bytes and on mutated 8- and 16-bit PNG, JPEG and TIFF files,
  plus decompression bombs (tiny files that declare gigantic images).
* `io.hdr.read_hdr` on arbitrary bytes named .hdr/.exr, on mutated files written by
  `io.hdr.write_hdr`, on valid OpenEXR files with any channel layout (RGB, Y, RY/BY, layers,
  uint/half/float, subsampling), plus headers that declare gigantic images.
* `io.raw.decode_raw`, `camera_white_balance` and `raw_metadata` on arbitrary bytes, on mutated
  TIFF containers and a mutated minimal DNG named like RAW files (.dng, .cr2, .nef, ...), and
  on that DNG with arbitrary EXIF values.
* The same readers on mutated real camera files from ../shared/data (skipped when absent).

The contract (project rules: bad input gets a clear one-line error): a reader either returns a
well-formed result (finite values, the documented shape and range) or raises a `SmartHDRError`
subclass (`InputError`, `ExposureError`) whose message is one line. Any other exception escaping
a reader is a bug, and so is a hang (each call gets HANG_SECONDS where SIGALRM exists).
`read_exif` never raises on a readable file: an unparseable container gives `CaptureInfo()`.

All runs are derandomized so CI is reproducible. `SMARTHDR_FUZZ_SCALE=20` multiplies the
number of examples for a harder search while developing.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import io
import math
import os
import shutil
import signal
import struct
import tempfile
import zlib
from datetime import datetime
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
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

HANG_SECONDS = 30


class Hang(BaseException):
    """Not an Exception, so that a reader's `except Exception` cannot swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Turn a hang into a test failure where the platform has interval timers."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum, frame):
        raise Hang(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_error(exc: SmartHDRError, kind: type[SmartHDRError]) -> None:
    assert isinstance(exc, kind), f"expected {kind.__name__}, got {type(exc).__name__}: {exc}"
    message = str(exc)
    assert message, "empty error message"
    assert len(message.splitlines()) == 1 and "\n" not in message and "\r" not in message, repr(message)


def expect(kind: type[SmartHDRError], function, *args):
    """`function(*args)`, or None after checking that it raised a one-line `kind` error."""
    try:
        with time_limit(HANG_SECONDS):
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
    folder = tempfile.mkdtemp(prefix="smarthdr-fuzz-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


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

    if kind in ("exif.jpg", "exif.png", "exif.webp"):
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
        image_format = {"exif.jpg": "JPEG", "exif.png": "PNG", "exif.webp": "WEBP"}[kind]
        Image.fromarray(_pixels(16, 16)).save(out, image_format, exif=exif)
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


def exif_of(data: bytes, suffix: str) -> CaptureInfo:
    """read_exif never raises on a readable file: broken containers give no fields."""
    with time_limit(HANG_SECONDS):
        return read_exif(scratch(data, suffix))


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
    for kind in ("exif.jpg", "exif.tif", "exif.png"):  # exifread misses WebP's EXIF: a mutation seed only
        info = read_exif(scratch(seed(kind), "." + kind.split(".")[1]))
        assert info.exposure_time == pytest.approx(0.01) and info.orientation == 6, kind
        assert info.iso == 200 and info.f_number == pytest.approx(2.8), kind


@fuzz(100)
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".jpg", ".tif", ".dng", ".png", ".cr2"]))
def test_exif_arbitrary_bytes(data, suffix):
    check_capture_info(exif_of(data, suffix))


@fuzz(150)
@given(data=mutations_of("exif.jpg", "exif.tif", "exif.png", "exif.webp"), suffix=st.sampled_from([".jpg", ".tif", ".nef"]))
def test_exif_mutated(data, suffix):
    check_capture_info(exif_of(data, suffix))


def _box(kind: bytes, body: bytes, size: int | None = None, large: int | None = None) -> bytes:
    """An ISO-BMFF box (HEIC, AVIF, JPEG XL); `size` 1 means a 64-bit `large` size follows."""
    size = len(body) + 8 if size is None else size
    return struct.pack(">I", size) + kind + (struct.pack(">Q", large) if size == 1 else b"") + body


def test_exif_heic_box_of_size_zero_is_no_hang():
    """exifread "skips" a box whose 64-bit size is 0 by seeking to itself, for ever."""
    data = _box(b"ftyp", b"heic" + struct.pack(">I", 0)) + _box(b"free", b"", size=1, large=0)
    with time_limit(10):
        assert read_exif(scratch(data, ".jpg")) == CaptureInfo()


@st.composite
def bmff_container(draw) -> bytes:
    """ftyp and then boxes of any kind and size, as in HEIC/AVIF/JPEG XL files."""
    brand = draw(st.sampled_from([b"heic", b"avif", b"mif1", b"jxl "]))
    out = b"\x00\x00\x00\x0cJXL \r\n\x87\n" if brand == b"jxl " else b""
    out += _box(b"ftyp", brand + struct.pack(">I", draw(st.sampled_from([0, 0, 0, 1]))))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from([b"meta", b"iinf", b"infe", b"iloc", b"free", b"Exif", b"\xff\xfe\x00\x01"]))
        body = draw(st.binary(max_size=32))
        size = draw(st.sampled_from([None, None, 1, 1, 1, 0, 7, 0xFFFFFFFF]))  # None: the right size
        large = draw(st.sampled_from([0, 0, 8, len(body) + 16, 2**63]))  # 64-bit size, where size is 1
        out += _box(kind, body, size, large)
    return out


@fuzz(150)
@given(data=bmff_container(), suffix=st.sampled_from([".jpg", ".dng"]))
def test_exif_bmff_boxes(data, suffix):
    check_capture_info(exif_of(data, suffix))


# A hand-made TIFF/EXIF writer, so that tag values can be anything (Pillow's writer refuses values
# that do not fit a tag's type): zero and negative rationals, NaN doubles, text where numbers belong.
_TIFF_FORMATS = {1: "B", 2: "B", 3: "H", 4: "I", 5: "I", 6: "b", 7: "B", 8: "h", 9: "i", 10: "i", 11: "f", 12: "d"}
_IFD0_TAGS = [0x0112, 0x010F, 0x0110, 0x0132]  # orientation, make, model, date
_EXIF_TAGS = [0x829A, 0x829D, 0x8827, 0x8833, 0x9201, 0x9202, 0x9003]  # time, f-number, ISO x2, Tv, Av, date
_INTERESTING_INTS = [0, 1, 2, 6, 8, 9, 100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


@st.composite
def tiff_entry(draw, tag: int):
    kind = draw(st.sampled_from([1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 0, 13]))
    code = _TIFF_FORMATS.get(kind, "B")
    per_value = 2 if kind in (5, 10) else 1
    count = draw(st.integers(0, 3))
    if kind in (11, 12):
        values = draw(st.lists(st.floats(width=32 if kind == 11 else 64), min_size=count, max_size=count))
    elif kind == 2:
        text = draw(st.sampled_from([b"2024:01:02 03:04:05", b"", b"\xff\xfe", b"1/100", b"nan"]) | st.binary(max_size=24))
        values, count = list(text + b"\x00"), len(text) + 1
    else:
        bits = struct.calcsize(code) * 8
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if code.islower() else (0, 2**bits - 1)
        pick = st.sampled_from(_INTERESTING_INTS).map(lambda v: max(low, min(high, v if code.isupper() else v - 2 ** (bits - 1))))
        values = draw(st.lists(st.integers(low, high) | pick, min_size=count * per_value, max_size=count * per_value))
    declared = draw(st.one_of(st.just(count), st.just(count), st.sampled_from([0, 1, 2, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])))
    return tag, kind, declared, code, values


def _tiff_bytes(order: str, ifd0: list, exif: list) -> bytes:
    """A TIFF header, IFD0 (with an EXIF IFD pointer when `exif` is given) and the EXIF IFD."""
    end = "<" if order == "II" else ">"

    def ifd(entries: list, start: int) -> bytes:
        table = bytearray(struct.pack(end + "H", len(entries)))
        data_at = start + 2 + 12 * len(entries) + 4
        blob = bytearray()
        for tag, kind, declared, code, values in entries:
            payload = struct.pack(end + code * len(values), *values)
            if len(payload) <= 4:
                field = payload.ljust(4, b"\x00")
            else:  # values that do not fit the entry live after the table
                field = struct.pack(end + "I", data_at + len(blob))
                blob += payload + b"\x00" * (len(payload) % 2)
            table += struct.pack(end + "HHI", tag, kind, declared) + field
        return bytes(table + struct.pack(end + "I", 0) + blob)

    header = order.encode() + struct.pack(end + "HI", 42, 8)
    if not exif:
        return header + ifd(ifd0, 8)
    first = ifd(ifd0 + [(0x8769, 4, 1, "I", [0])], 8)  # the pointer's value is known once IFD0's size is
    first = ifd(ifd0 + [(0x8769, 4, 1, "I", [8 + len(first)])], 8)
    return header + first + ifd(exif, 8 + len(first))


@st.composite
def exif_container(draw) -> tuple[bytes, str]:
    order = draw(st.sampled_from(["II", "MM"]))
    ifd0 = [draw(tiff_entry(tag)) for tag in draw(st.lists(st.sampled_from(_IFD0_TAGS), unique=True))]
    exif = [draw(tiff_entry(tag)) for tag in draw(st.lists(st.sampled_from(_EXIF_TAGS), unique=True, min_size=1))]
    tiff = _tiff_bytes(order, sorted(ifd0), sorted(exif))
    if draw(st.booleans()):
        return tiff, ".tif"
    app1 = b"Exif\x00\x00" + tiff
    jpeg = b"\xff\xd8\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + seed("ldr8.jpg")[2:]
    return jpeg, ".jpg"


def test_exif_writer_round_trip():
    exposure = (0x829A, 5, 1, "I", [1, 250])
    orientation = (0x0112, 3, 1, "H", [8])
    for order in ("II", "MM"):
        tiff = _tiff_bytes(order, [orientation], [exposure])
        info = read_exif(scratch(tiff, ".tif"))
        assert info.exposure_time == pytest.approx(1 / 250) and info.orientation == 8, order


@fuzz(150)
@given(container=exif_container())
def test_exif_structured_values(container):
    data, suffix = container
    check_capture_info(exif_of(data, suffix))


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
NUMBER_PART = st.one_of(NUMBERISH, st.text(max_size=12), st.floats().map(repr), st.integers().map(str))
SEPARATOR = st.sampled_from([",", ";", "\n", "\r\n", "\r", " ", ", "])
NUMBER_TEXT = st.lists(st.tuples(NUMBER_PART, SEPARATOR), max_size=8).map(lambda items: "".join(p + s for p, s in items))
COUNTS = st.integers(1, 5)


def check_times(times, count: int) -> None:
    assert isinstance(times, list) and len(times) == count
    assert all(isinstance(t, float) and math.isfinite(t) and t > 0 for t in times), times


@fuzz(150)
@given(text=st.one_of(NUMBER_TEXT, st.text(max_size=64)), count=COUNTS)
@example(text="9" * 400 + "/1", count=1)  # was OverflowError from float(Fraction(...))
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
@example(data=b"abc", suffix=".png")  # was struct.error from Pillow's BMP sniffer on files under 4 bytes
@example(data=b"", suffix=".jpg")  # was a two-line message (imageio's "Could not find a backend ...")
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


def _exr_attribute(name: str, kind: str, body: bytes) -> bytes:
    return name.encode() + b"\x00" + kind.encode() + b"\x00" + struct.pack("<i", len(body)) + body


def _exr_bytes(width: int, height: int, channels: list[tuple[str, int, int, int]]) -> bytes:
    """An uncompressed scanline OpenEXR file; channels are (name, type 0=uint 1=half 2=float, xs, ys)."""
    channels = sorted(channels)
    chlist = b"".join(n.encode() + b"\x00" + struct.pack("<iB3xii", t, 0, xs, ys) for n, t, xs, ys in channels)
    box = struct.pack("<iiii", 0, 0, width - 1, height - 1)
    header = (
        _exr_attribute("channels", "chlist", chlist + b"\x00")
        + _exr_attribute("compression", "compression", b"\x00")
        + _exr_attribute("dataWindow", "box2i", box)
        + _exr_attribute("displayWindow", "box2i", box)
        + _exr_attribute("lineOrder", "lineOrder", b"\x00")
        + _exr_attribute("pixelAspectRatio", "float", struct.pack("<f", 1.0))
        + _exr_attribute("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0))
        + _exr_attribute("screenWindowWidth", "float", struct.pack("<f", 1.0))
        + b"\x00"
    )
    start = b"v/1\x01" + struct.pack("<I", 2) + header
    dtypes = {0: np.uint32, 1: np.float16, 2: np.float32}
    chunks = []
    for y in range(height):
        line = b"".join(
            np.linspace(0.0, 3.0, -(-width // xs)).astype(dtypes[t]).tobytes()
            for _, t, xs, ys in channels
            if y % ys == 0
        )
        chunks.append(struct.pack("<ii", y, len(line)) + line)
    offsets, at = [], len(start) + 8 * height
    for chunk in chunks:
        offsets.append(at)
        at += len(chunk)
    return start + struct.pack(f"<{height}Q", *offsets) + b"".join(chunks)


@fuzz(80)
@given(
    width=st.sampled_from([2, 4, 6, 8]),
    height=st.sampled_from([2, 4, 6, 8]),
    channels=st.lists(
        st.tuples(
            st.sampled_from(["R", "G", "B", "Y", "RY", "BY", "A", "Z", "left.R", "left.G", "left.B", "x.Y", "R.x"]),
            st.integers(0, 2),
            st.sampled_from([1, 1, 2]),
            st.sampled_from([1, 1, 2]),
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda c: c[0],
    ),
)
@example(width=8, height=8, channels=[("R", 2, 1, 1), ("G", 2, 1, 1), ("B", 2, 2, 2)])  # was ValueError (np.stack)
def test_hdr_exr_channel_layouts(width, height, channels):
    """Valid OpenEXR files with any mix of RGB, luminance/chroma, layers, types and subsampling."""
    rgb = expect(InputError, read_hdr, scratch(_exr_bytes(width, height, channels), ".exr"))
    check_hdr(rgb)
    names = {name.rsplit(".", 1)[-1] for name, *_ in channels}
    if rgb is not None and ({"R", "G", "B"} <= names) and all(xs == ys == 1 for *_, xs, ys in channels):
        assert rgb.shape == (height, width, 3)


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


def _dng_bytes(exif: list, width: int = 32, height: int = 32) -> bytes:
    """A minimal uncompressed Bayer DNG that LibRaw develops (it refuses images under 22 pixels)."""
    pixels = (np.arange(width * height) * 97 % 4096).astype("<u2").tobytes()

    def ifd0(strip_offset: int) -> list:
        return [
            (0x00FE, 4, 1, "I", [0]),  # full-resolution image
            (0x0100, 4, 1, "I", [width]),
            (0x0101, 4, 1, "I", [height]),
            (0x0102, 3, 1, "H", [16]),
            (0x0103, 3, 1, "H", [1]),  # uncompressed
            (0x0106, 3, 1, "H", [32803]),  # CFA
            (0x010F, 2, 5, "B", list(b"Fuzz\x00")),
            (0x0110, 2, 5, "B", list(b"Cam1\x00")),
            (0x0111, 4, 1, "I", [strip_offset]),
            (0x0115, 3, 1, "H", [1]),
            (0x0116, 4, 1, "I", [height]),
            (0x0117, 4, 1, "I", [len(pixels)]),
            (0x828D, 3, 2, "H", [2, 2]),  # CFA repeat pattern
            (0x828E, 1, 4, "B", [0, 1, 1, 2]),  # RGGB
            (0xC612, 1, 4, "B", [1, 4, 0, 0]),  # DNG version
            (0xC614, 2, 5, "B", list(b"Fuzz\x00")),
            (0xC621, 10, 9, "i", [1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1, 1, 0, 1]),  # colour matrix
            (0xC628, 5, 3, "I", [1, 2, 1, 1, 1, 2]),  # as-shot neutral
        ]

    size = len(_tiff_bytes("II", ifd0(0), exif))
    return _tiff_bytes("II", ifd0(size), exif) + pixels


def check_raw_info(info: CaptureInfo) -> None:
    assert isinstance(info, CaptureInfo)
    for value in (info.exposure_time, info.iso, info.f_number):
        assert value is None or (math.isfinite(value) and value > 0), info
    assert info.capture_time != datetime.fromtimestamp(0), info  # LibRaw's "no date" is no date


def test_dng_seed_is_developed():
    path = scratch(_dng_bytes([(0x829A, 5, 1, "I", [1, 100]), (0x8827, 3, 1, "H", [200])]), ".dng")
    assert decode_raw(path, None).shape == (32, 32, 3)
    assert camera_white_balance(path) == pytest.approx([2.0, 1.0, 2.0, 1.0])
    info = raw_metadata(path)
    assert info.exposure_time == pytest.approx(0.01) and info.iso == 200 and info.capture_time is None


RAW_DATA = st.one_of(
    st.binary(max_size=1024),
    mutations_of("exif.tif", "ldr16.tif"),  # TIFF containers are what most RAW formats are built on
    st.deferred(lambda: mutated(_dng_bytes([(0x829A, 5, 1, "I", [1, 100])]), hot=512)),
)


def check_raw_readers(path: Path) -> None:
    """Every RAW entry point on one file: a developed image, a white balance and metadata, or InputError."""
    rgb = expect(InputError, decode_raw, path, None)
    if rgb is not None:
        assert rgb.dtype == np.float32 and rgb.ndim == 3 and np.isfinite(rgb).all()
    balance = expect(InputError, camera_white_balance, path)
    assert balance is None or all(math.isfinite(v) for v in balance)
    with time_limit(HANG_SECONDS):
        check_raw_info(raw_metadata(path))


@fuzz(100)
@given(data=RAW_DATA, suffix=RAW_SUFFIXES)
def test_raw_readers(data, suffix):
    check_raw_readers(scratch(data, suffix))


@fuzz(60)
@given(exif=st.lists(st.sampled_from(_EXIF_TAGS), unique=True, min_size=1).flatmap(
    lambda tags: st.tuples(*[tiff_entry(tag) for tag in sorted(tags)])
))
@example(exif=((0x829A, 12, 1, "d", [math.inf]), (0x8827, 12, 1, "d", [math.inf])))  # was inf from LibRaw
def test_raw_metadata_values(exif):
    """LibRaw's metadata of a DNG whose EXIF values are anything, as the merge's fallback."""
    path = scratch(_dng_bytes(list(exif)), ".dng")
    with time_limit(HANG_SECONDS):
        check_raw_info(raw_metadata(path))
        check_capture_info(read_exif(path))


# ---------------------------------------------------------------------------------------------
# Real camera files (../shared/data, skipped when absent) as mutation seeds
# ---------------------------------------------------------------------------------------------

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not present beside the checkout")


@functools.lru_cache(maxsize=None)
def real(name: str) -> bytes:
    return (SHARED_DATA / name).read_bytes()


def real_mutations(*names: str) -> st.SearchStrategy[tuple[bytes, str]]:
    """A real file with a few edits, mostly in its first 4 KB, and its suffix."""
    return st.sampled_from(names).flatmap(
        lambda name: st.tuples(mutated(real(name), hot=4096), st.just(Path(name).suffix.lower()))
    )


@needs_shared_data
@fuzz(60)
@given(
    sample=st.deferred(
        lambda: real_mutations(
            "exif/canon-ixus.jpg",
            "exif/nikon-e950.jpg",
            "exif/kodak-dc240.jpg",
            "exif/fujifilm-dx10.jpg",
            "malformed/exifpy_sony_a7iii_stripped.ARW",
            "malformed/exiv2_IMG_1361_pruned_iphone12pro.dng",
        )
    )
)
def test_exif_mutated_camera_files(sample):
    data, suffix = sample
    check_capture_info(exif_of(data, suffix))


@needs_shared_data
@fuzz(40)
@given(
    sample=st.deferred(
        lambda: real_mutations(
            "raw/RAW_KODAK_DC50.KDC",
            "malformed/exifpy_sony_a7iii_stripped.ARW",
            "malformed/exiv2_canon_powershot_s40_truncated.crw",
        )
    )
)
def test_raw_readers_mutated_camera_files(sample):
    data, suffix = sample
    check_raw_readers(scratch(data, suffix))


@needs_shared_data
@fuzz(30)
@given(sample=st.deferred(lambda: real_mutations("brackets/frobisher/IMG_2600.jpg")))
def test_ldr_mutated_camera_files(sample):
    data, suffix = sample
    check_ldr(expect(InputError, read_ldr, scratch(data, suffix)))
