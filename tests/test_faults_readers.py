"""Faults of the frame and HDR readers found in issue 14: colour spaces read as RGB, third-party
diagnostics printed past the CLI's one-line errors, and OpenCV's temporary files left behind."""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image

from smarthdr_cli.errors import InputError
from smarthdr_cli.io.hdr import read_hdr, write_hdr
from smarthdr_cli.io.ldr import read_ldr

# Three flat patches (red, green, blue-ish), wide enough that JPEG's 8x8 blocks inside them are flat.
COLOURS = np.array([[200, 30, 40], [20, 180, 60], [50, 60, 220]], dtype=np.uint8)


def patches() -> np.ndarray:
    return np.repeat(np.repeat(COLOURS[None], 32, axis=0), 32, axis=1)  # 32 x 96 x 3


def centres(pixels: np.ndarray) -> np.ndarray:
    """The mean colour of the middle of each patch, 0..255."""
    scale = 255.0 if pixels.max() <= 1.0 else 1.0
    return np.array([pixels[8:24, 32 * i + 8 : 32 * i + 24].reshape(-1, 3).mean(axis=0) * scale for i in range(3)])


# ---------------------------------------------------------------------------------------------
# Colour spaces
# ---------------------------------------------------------------------------------------------


def test_cmyk_jpeg_has_the_source_colours(tmp_path: Path):
    """Adobe CMYK JPEGs (stored inverted) were read as their first three ink channels: inverted colours."""
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(patches()).convert("CMYK").save(path, "JPEG", quality=95)
    with Image.open(path) as check:
        assert check.mode == "CMYK" and "adobe" in check.info  # what Photoshop writes, too
    pixels, bits = read_ldr(path)
    assert bits == 8 and pixels.shape == (32, 96, 3)
    assert np.abs(centres(pixels) - COLOURS).max() < 6, centres(pixels).round()


def _tiff(path: Path, kind: str) -> None:
    source = Image.fromarray(patches())
    if kind == "cmyk8":
        source.convert("CMYK").save(path)
    elif kind == "cmyk16":  # no Pillow mode for this: C, M, Y as 16-bit inks, K empty
        inks = 65535 - patches().astype(np.uint16) * 257
        tifffile.imwrite(path, np.dstack([inks, np.zeros(inks.shape[:2], np.uint16)]), photometric="separated")
    elif kind == "palette":
        source.convert("P", palette=Image.ADAPTIVE, colors=8).save(path)
    elif kind == "ycbcr":
        source.convert("YCbCr").save(path)
    elif kind == "miniswhite":  # grey stored with 0 = white (fax and scanner TIFFs)
        grey = np.asarray(source.convert("L"))
        tifffile.imwrite(path, 255 - grey, photometric="miniswhite")


@pytest.mark.parametrize("kind", ["cmyk8", "cmyk16", "palette", "ycbcr", "miniswhite"])
def test_tiff_colour_spaces_become_rgb(tmp_path: Path, kind: str):
    """tifffile returns samples as stored (inks, palette indices, Y/Cb/Cr, inverted grey); they were
    taken as RGB."""
    path = tmp_path / f"{kind}.tif"
    _tiff(path, kind)
    pixels, bits = read_ldr(path)
    assert bits == (16 if kind == "cmyk16" else 8) and pixels.shape == (32, 96, 3)
    want = COLOURS.astype(float)
    if kind == "miniswhite":
        want = np.repeat(np.asarray(Image.fromarray(COLOURS[None]).convert("L"), float).reshape(3, 1), 3, axis=1)
    assert np.abs(centres(pixels) - want).max() < 4, (centres(pixels).round(), want)


def _other(path: Path, kind: str) -> np.ndarray:
    """Files of the modes that already worked, and the RGB (0..255) each must give."""
    source = Image.fromarray(patches())
    grey = np.asarray(source.convert("L"))
    if kind == "palette.png":
        image = source.convert("P", palette=Image.ADAPTIVE, colors=8)
        image.save(path)
        return np.asarray(image.convert("RGB"))
    if kind == "palette-transparent.png":
        image = source.convert("P", palette=Image.ADAPTIVE, colors=8)
        image.save(path, transparency=0)
        return np.asarray(image.convert("RGB"))
    if kind == "la.png":
        source.convert("LA").save(path)
        return np.dstack([grey] * 3)
    if kind == "rgba.png":
        source.convert("RGBA").save(path)
        return patches()
    if kind == "grey16.png":
        cv2.imwrite(str(path), grey.astype(np.uint16) * 257)
        return np.dstack([grey] * 3)
    if kind == "grey.jpg":
        source.convert("L").save(path, quality=95)
        return np.dstack([grey] * 3)
    if kind == "rgb16.tif":
        iio.imwrite(path, patches().astype(np.uint16) * 257)
        return patches()
    if kind == "rgb-lzw.tif":  # tifffile needs imagecodecs for LZW: read through OpenCV
        cv2.imwrite(str(path), np.ascontiguousarray(patches()[:, :, ::-1]), [cv2.IMWRITE_TIFF_COMPRESSION, 5])
        return patches()
    if kind == "multipage.tif":
        tifffile.imwrite(path, np.stack([patches(), 255 - patches()]), photometric="rgb")
        return patches()
    raise KeyError(kind)


@pytest.mark.parametrize(
    "kind",
    ["palette.png", "palette-transparent.png", "la.png", "rgba.png", "grey16.png", "grey.jpg", "rgb16.tif", "rgb-lzw.tif", "multipage.tif"],
)
def test_other_colour_modes_still_read(tmp_path: Path, kind: str):
    path = tmp_path / kind.replace("-", "_")
    want = _other(path, kind)
    pixels, bits = read_ldr(path)
    assert bits == (16 if "16" in kind else 8)
    assert pixels.shape == (32, 96, 3)
    assert np.abs(centres(pixels) - centres(want.astype(np.float64))).max() < 3


def test_bilevel_tiff_is_still_refused(tmp_path: Path):
    Image.fromarray(patches()).convert("1").save(tmp_path / "bw.tif")
    with pytest.raises(InputError, match="sample type bool"):
        read_ldr(tmp_path / "bw.tif")


# ---------------------------------------------------------------------------------------------
# Third-party diagnostics: nothing printed, the reason folded into the one-line error
# ---------------------------------------------------------------------------------------------


def _truncated_png(path: Path) -> None:
    iio.imwrite(path, (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _png_bomb(path: Path) -> None:
    """144 Mpx declared (above Pillow's warning limit, below the readers' own), one tiny IDAT."""
    from test_fuzz import _png_bomb as bomb

    path.write_bytes(bomb(12_000, 12_000))


def _garbled_lzw_tiff(path: Path) -> None:
    """LZW strips (read through OpenCV/libtiff) with damaged codes: libtiff logs an error, OpenCV
    still returns pixels; this merged with exit 0 and a libtiff line on stderr."""
    cv2.imwrite(str(path), (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8), [cv2.IMWRITE_TIFF_COMPRESSION, 5])
    data = bytearray(path.read_bytes())
    ifd = struct.unpack("<I", data[4:8])[0]
    for offset in range(100, min(ifd, 6000), 7):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _damaged_exr(path: Path) -> None:
    """A half-written OpenEXR file: OpenEXR printed its own report to stderr and to stdout."""
    write_hdr(path, np.linspace(0, 40, 64 * 96 * 3, dtype=np.float32).reshape(64, 96, 3))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damaged_exr_chunks(path: Path) -> None:
    """An OpenEXR file whose chunk offset table and chunk sizes are overwritten: OpenEXR printed
    lines per broken chunk (161 on a larger file) on stderr, and one more on stdout."""
    write_hdr(path, np.linspace(0, 40, 64 * 96 * 3, dtype=np.float32).reshape(64, 96, 3))
    data = bytearray(path.read_bytes())
    at = 8  # magic and version; then attributes (name, type, size, value) up to an empty name
    while data[at] != 0:
        at = data.index(b"\x00", data.index(b"\x00", at) + 1) + 1
        at += 4 + struct.unpack("<i", data[at : at + 4])[0]
    table, chunks = at + 1, 64 // 32  # PIZ compression: 32 scanlines per chunk
    offsets = struct.unpack(f"<{chunks}Q", data[table : table + 8 * chunks])
    data[table : table + 8 * chunks] = b"\x7f" * 8 * chunks
    for offset in offsets:  # each chunk: scanline (int32), packed size (int32), data
        data[offset + 4 : offset + 8] = struct.pack("<i", 0x7FFFFF00)
    path.write_bytes(bytes(data))


def _truncated_radiance(path: Path) -> None:
    write_hdr(path, np.linspace(0, 40, 64 * 96 * 3, dtype=np.float32).reshape(64, 96, 3))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "make, name, reader, reason",
    [
        # libpng's words through OpenCV 5.0 ("PNG input buffer is incomplete"); 5.1 says nothing: ours
        (_truncated_png, "cut.png", read_ldr, re.compile(r"corrupt PNG: (PNG input buffer is incomplete|truncated)")),
        (_png_bomb, "bomb.png", read_ldr, "libpng error: Not enough image data"),
        (_garbled_lzw_tiff, "garbled.tif", read_ldr, "corrupt TIFF"),
        (_damaged_exr, "cut.exr", read_hdr, "EXR_ERR_"),
        (_damaged_exr_chunks, "chunks.exr", read_hdr, "EXR_ERR_"),
        (_truncated_radiance, "cut.hdr", read_hdr, "RGBE"),
    ],
    ids=["png-truncated", "png-bomb", "tiff-lzw-garbled", "exr-truncated", "exr-chunks", "radiance-truncated"],
)
def test_readers_print_nothing_and_say_why(tmp_path: Path, capfd, make, name, reader, reason):
    """libpng, libtiff and OpenCV's logger, OpenEXR and Pillow's warnings went to the terminal
    (fds 1 and 2, past sys.stderr) beside the CLI's own error line, or even after a 'successful' read."""
    path = tmp_path / name
    make(path)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        with pytest.raises(InputError) as caught:
            reader(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)), message
    assert (reason.search(message) if isinstance(reason, re.Pattern) else reason in message), message
    out, err = capfd.readouterr()
    assert (out, err) == ("", ""), (out, err)
    assert [str(w.message) for w in escaped] == []  # e.g. Pillow's DecompressionBombWarning


def test_radiance_decoding_leaves_no_temporary_files(tmp_path: Path):
    """cv2.imdecode writes Radiance data to a temp file of its own and left it behind when the
    decoder threw (an oversized image): one `__opencv_temp.*` per failed read."""
    temp = tmp_path / "temp"
    temp.mkdir()
    bomb = tmp_path / "bomb.hdr"
    bomb.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 100000 +X 100000\n" + b"\x02\x02\x00\x10" * 8)
    code = (
        "import sys; from pathlib import Path\n"
        "from smarthdr_cli.errors import InputError\nfrom smarthdr_cli.io.hdr import read_hdr\n"
        "try:\n    read_hdr(Path(sys.argv[1]))\nexcept InputError as exc:\n    print(exc)\n"
    )
    env = {**os.environ, "OPENCV_TEMP_PATH": str(temp), "TMPDIR": str(temp)}
    done = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and "bomb.hdr: corrupt Radiance .hdr pixel data (image too large)" in done.stdout, done
    assert done.stderr == ""
    assert list(temp.iterdir()) == []


def test_shared_malformed_files_print_nothing(shared_data: Path, capfd):
    """The real broken files: the CRLF-damaged Radiance file and the truncated Canon CRW."""
    from smarthdr_cli.io.raw import camera_white_balance, decode_raw

    capfd.readouterr()
    with pytest.raises(InputError):
        read_hdr(shared_data / "malformed" / "memorial_CRLF_corrupted.hdr")
    crw = shared_data / "malformed" / "exiv2_canon_powershot_s40_truncated.crw"
    with pytest.raises(InputError):
        decode_raw(crw, camera_white_balance(crw))
    assert capfd.readouterr() == ("", "")


# ---------------------------------------------------------------------------------------------
# The capture itself: descriptors always restored, nesting, threads, closed fd 2
# ---------------------------------------------------------------------------------------------


def test_capture_holds_fd_output_and_restores_on_errors(capfd):
    from smarthdr_cli.io.quiet import captured_output

    capfd.readouterr()
    with pytest.raises(KeyboardInterrupt):
        with captured_output() as outer:
            os.write(2, b"[ WARN:0@0.1] global grfmt_png.cpp:793 readFromStreamOrBuffer outer\n")
            with captured_output() as inner:
                os.write(1, b"inner on stdout\n")
                warnings.warn("a library's warning", UserWarning, stacklevel=1)
            raise KeyboardInterrupt
    assert "outer" in outer.text and "inner on stdout" in outer.text  # the inner text reaches both
    assert inner.text == "inner on stdout\n" and inner.warnings == ["UserWarning: a library's warning"]
    assert outer.reason() == "outer" and inner.reason() == "inner on stdout"
    os.write(2, b"ours\n")  # after the block: the user's terminal again
    assert capfd.readouterr() == ("", "ours\n")


def test_capture_from_threads_restores_the_terminal(capfd):
    """Overlapping captures from threads share one redirection: the last one out restores fd 2."""
    from smarthdr_cli.io.quiet import captured_output

    capfd.readouterr()
    gate = threading.Barrier(4)
    texts: list[str] = []

    def work(index: int) -> None:
        with captured_output() as captured:
            gate.wait(timeout=10)
            os.write(2, f"thread {index}\n".encode())
            gate.wait(timeout=10)
        texts.append(captured.text)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(texts) == 4 and all(f"thread {i}" in "".join(texts) for i in range(4))
    os.write(2, b"ours\n")
    assert capfd.readouterr() == ("", "ours\n")


def test_capture_with_fd2_closed(tmp_path: Path):
    """A process started with stderr closed (`2>&-`): readers still raise their error, and fd 2 is
    closed again afterwards instead of pointing at a deleted temporary file."""
    path = tmp_path / "cut.png"
    _truncated_png(path)
    code = (
        "import os, sys; from pathlib import Path\n"
        "from smarthdr_cli.errors import InputError\nfrom smarthdr_cli.io.ldr import read_ldr\n"
        "os.close(2)\n"
        "try:\n    read_ldr(Path(sys.argv[1]))\nexcept InputError as exc:\n    print(exc)\n"
        "try:\n    os.fstat(2)\n    print('fd 2 open')\nexcept OSError:\n    print('fd 2 closed')\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done
    first, second = done.stdout.splitlines()
    assert re.fullmatch(re.escape(f"{path}: cannot decode image (corrupt PNG: ") + r"(PNG input buffer is incomplete|truncated .*)\)", first), first
    assert second == "fd 2 closed"


def test_first_line_cleans_library_messages():
    from smarthdr_cli.io.quiet import first_line

    opencv = (
        "[ERROR:0@0.020] global loadsave.cpp:1390 imdecode_ imdecode_('/tmp/__opencv_temp.XMMibn'): can't read data: "
        "OpenCV(5.0.0) /io/opencv/modules/imgcodecs/src/rgbe.cpp:88: error: (-2:Unspecified error) RGBE read error in function 'rgbe_error'"
    )
    assert first_line("\n\n" + opencv + "\nsecond") == "can't read data: RGBE read error"
    assert first_line("/a/b.exr: (EXR_ERR_CORRUPT_CHUNK) bad\nmore", "/a/b.exr") == "(EXR_ERR_CORRUPT_CHUNK) bad"
    assert first_line("Unable to open '/a/b.exr' for read", "/a/b.exr") == "Unable to open the file for read"
    assert len(first_line("x" * 1000)) == 160 and first_line(" \n--\n") == ""
