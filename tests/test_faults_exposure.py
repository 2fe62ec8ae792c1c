"""Issue 14, exposure faults: implausible times, overflowing spans, empty flags, empty or text frames.

Each case must end in one line on stderr and exit code 2, never a merge with exit 0, inf in the
output header or numpy warnings.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import exif_jpeg
from smarthdr_cli import exposure
from smarthdr_cli.errors import ExposureError, InputError
from smarthdr_cli.io import exif
from smarthdr_cli.io.exif import CaptureInfo


@pytest.fixture(scope="module")
def frames(static_scene) -> list[np.ndarray]:
    """The static scene's EV -2/0/+2 frames: a bracket that merges, so only the exposures can fail it."""
    return list(static_scene[1])


def _merge(tmp_path: Path, paths: list[Path], *flags: str) -> subprocess.CompletedProcess:
    """`smarthdr merge` in its own process, so stderr is exactly what a user sees."""
    command = [sys.executable, "-m", "smarthdr_cli", "merge", *map(str, paths), "-o", str(tmp_path / "out.exr"), "--backend", "classic", "-q", *flags]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)


def _one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # no RuntimeWarning, no traceback
    return lines[0]


def test_exif_exposure_of_a_billion_seconds_is_refused(tmp_path, frames):
    paths = [exif_jpeg(tmp_path / "IMG_1.jpg", frames[0], (10**9, 1)), exif_jpeg(tmp_path / "IMG_2.jpg", frames[1], (1, 100))]
    result = _merge(tmp_path, paths)
    line = _one_line(result)
    assert "IMG_1.jpg" in line and "1e+09 s is implausible" in line and "--exposures" in line
    assert not (tmp_path / "out.exr").exists()


def test_exposures_beyond_float_range_are_refused_quietly(tmp_path, frames):
    paths = [exif_jpeg(tmp_path / f"IMG_{i}.jpg", f, (1, 100)) for i, f in enumerate(frames)]
    result = _merge(tmp_path, paths, "--exposures", "1e-300,1,1e300")
    line = _one_line(result)
    assert line.startswith("error: --exposures:") and "1e-300 s is implausible" in line
    assert "Warning" not in result.stderr
    assert not (tmp_path / "out.exr").exists()


def test_blank_exposures_flag_is_an_error_not_ignored(tmp_path, frames):
    """A blank value (an unset shell variable in quotes) must not fall back to the EXIF silently."""
    paths = [exif_jpeg(tmp_path / f"IMG_{i}.jpg", f, (1, t)) for i, (f, t) in enumerate(zip(frames, (400, 100, 25)))]
    line = _one_line(_merge(tmp_path, paths, "--exposures", " "))
    assert "--exposures is empty" in line
    assert not (tmp_path / "out.exr").exists()


@pytest.mark.parametrize("text", ["", " ", ",", " ;, "])
def test_parsers_refuse_empty_values(text):
    with pytest.raises(ExposureError, match="^--exposures is empty; .*--exposures 1/100"):
        exposure.parse_exposures(text, 3)
    with pytest.raises(ExposureError, match="^--ev is empty; .*--ev -2,0,2"):
        exposure.parse_ev(text, 3)


@pytest.mark.parametrize(
    "text, message",
    [
        ("1e-7,1/100,1/25", "1e-07 s is implausible"),  # below 1 us
        ("1/100,1,200000", "200000 s is implausible"),  # beyond ~28 h
        ("1e-6,1,10000", "span 33.2 stops"),  # each plausible, the span overflows the merge
    ],
)
def test_parse_exposures_bounds(text, message):
    with pytest.raises(ExposureError, match=message):
        exposure.parse_exposures(text, 3)


def test_parse_exposures_accepts_the_plausible_extremes():
    assert exposure.parse_exposures("1e-6,1/1000,1000", 3) == pytest.approx([1e-6, 1e-3, 1e3])  # 29.9 stops
    assert exposure.parse_exposures("3600,14400,86400", 3) == pytest.approx([3600, 14400, 86400])  # astro: hours


def test_ev_span_is_bounded(tmp_path):
    assert exposure.parse_ev("-15,0,15", 3) == pytest.approx([2.0**-15, 1.0, 2.0**15])
    with pytest.raises(ExposureError, match="--ev: exposures span 40.0 stops"):
        exposure.parse_ev("-20,0,20", 3)
    with pytest.raises(ExposureError, match="-30..30"):
        exposure.parse_ev("-31,0,2", 3)
    table = tmp_path / "exposure.txt"
    table.write_text("-20\n0\n20\n")
    with pytest.raises(ExposureError, match="exposure.txt: exposures span 40.0 stops"):
        exposure.read_exposure_file(table, 3)


def test_metadata_exposures_are_bounded():
    paths = [Path("a.jpg"), Path("b.jpg")]
    with pytest.raises(ExposureError, match="a.jpg: EXIF exposure time 1e-07 s is implausible"):
        exposure.effective_exposures([CaptureInfo(exposure_time=1e-7, source="exif"), CaptureInfo(exposure_time=0.01, source="exif")], paths)
    with pytest.raises(ExposureError, match="b.jpg: RAW metadata exposure time 1e\\+06 s"):
        exposure.effective_exposures([CaptureInfo(exposure_time=0.01, source="libraw"), CaptureInfo(exposure_time=1e6, source="libraw")], paths)
    # each time plausible, but ISO folded in takes the span past 30 stops
    infos = [CaptureInfo(exposure_time=1e-5, iso=50.0), CaptureInfo(exposure_time=1000.0, iso=3200.0)]
    with pytest.raises(ExposureError, match="effective exposures .* span 32.6 stops .*a.jpg"):
        exposure.effective_exposures(infos, paths)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty file"), (b"hello, not a photo\n", "not a JPEG/PNG/TIFF/RAW image")],
)
def test_empty_or_text_frame_is_reported_as_such(tmp_path, frames, content, message):
    bad = tmp_path / "IMG_0.jpg"
    bad.write_bytes(content)
    good = exif_jpeg(tmp_path / "IMG_1.jpg", frames[1], (1, 100))
    line = _one_line(_merge(tmp_path, [bad, good]))
    assert f"IMG_0.jpg: {message}" in line and "exposure time" not in line


def test_check_image(tmp_path, frames):
    good = exif_jpeg(tmp_path / "good.jpg", frames[0])
    exif.check_image(good)
    exif.check_image(tmp_path / "missing.jpg")  # opening it is the reader's to report
    cases = {"empty.nef": b"", "text.cr2": b"not raw\n", "binary.png": b"\x01\x02\x03 no signature"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match="^" + re.escape(str(tmp_path / name)) + ": (empty file|not a JPEG/PNG/TIFF/RAW image)"):
            exif.check_image(tmp_path / name)
    (tmp_path / "tiff.nef").write_bytes(b"II*\x00" + bytes(100))  # a TIFF-based RAW header passes
    exif.check_image(tmp_path / "tiff.nef")
