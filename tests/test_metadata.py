"""What the outputs say about the shot: standard EXR attributes, a 1-based reference, preview EXIF."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from conftest import exif_jpeg, write_bracket
from smarthdr_cli.app import app
from smarthdr_cli.io.exif import CaptureInfo
from smarthdr_cli.io.provenance import REC709_CHROMATICITIES, preview_exif

MAKE, MODEL, SOFTWARE, ORIENTATION, EXIF_IFD, DATE_TIME_ORIGINAL = 0x010F, 0x0110, 0x0131, 0x0112, 0x8769, 0x9003
TIMES = ((1, 400), (1, 100), (1, 25))
DATES = ("2024:05:01 12:00:00", "2024:05:01 12:00:01", "2024:05:01 12:00:02")


def _camera_bracket(folder: Path, frames: list[np.ndarray]) -> list[Path]:
    """Three camera JPEGs, each with its own exposure time and capture second (IMG_0 shortest)."""
    return [
        exif_jpeg(folder / f"IMG_{i}.jpg", frame, time, when, camera=("Testcam", "HDR-1"))
        for i, (frame, time, when) in enumerate(zip(frames, TIMES, DATES))
    ]


def _merge(runner, paths: list[Path], out: Path, *extra: str):
    result = runner.invoke(app, ["merge", *map(str, paths), "-o", str(out), "--backend", "classic", "-q", *extra])
    assert result.exit_code == 0, result.output
    return OpenEXR.File(str(out)).header()


def test_exr_carries_standard_attributes_of_the_reference_frame(runner, tmp_path, static_scene):
    header = _merge(runner, _camera_bracket(tmp_path / "b", static_scene[1]), tmp_path / "o.exr")
    chromaticities = header["chromaticities"]
    assert isinstance(chromaticities, tuple) and chromaticities == pytest.approx(REC709_CHROMATICITIES, abs=1e-6)
    assert chromaticities[6:] == pytest.approx((0.3127, 0.3290), abs=1e-6)  # D65
    assert header["expTime"] == pytest.approx(1 / 100)  # the reference's exposure, in seconds
    assert header["capDate"] == "2024:05:01 12:00:01"  # the reference's DateTimeOriginal
    assert header["smarthdr:camera"] == "Testcam HDR-1"


def test_stored_reference_counts_from_1_like_the_option(runner, tmp_path, static_scene):
    paths = _camera_bracket(tmp_path / "b", static_scene[1])
    header = _merge(runner, paths, tmp_path / "o.exr")
    assert header["smarthdr:referencePosition"] == 2 and header["smarthdr:referenceFile"] == "IMG_1.jpg"
    assert "smarthdr:reference" not in header  # the 0-based attribute of earlier versions is gone
    header = _merge(runner, paths, tmp_path / "p.exr", "--reference", "1")
    assert header["smarthdr:referencePosition"] == 1 and header["smarthdr:referenceFile"] == "IMG_0.jpg"
    assert header["expTime"] == pytest.approx(1 / 400) and header["capDate"] == "2024:05:01 12:00:00"


def test_without_exif_times_come_from_seconds_only(runner, tmp_path, static_scene):
    paths = write_bracket(tmp_path / "b", static_scene[1])  # PNGs: no EXIF at all
    header = _merge(runner, paths, tmp_path / "o.exr", "--exposures", "1/400,1/100,1/25")
    assert header["expTime"] == pytest.approx(1 / 100)
    assert "capDate" not in header and "smarthdr:camera" not in header
    assert header["chromaticities"] == pytest.approx(REC709_CHROMATICITIES, abs=1e-6)
    header = _merge(runner, paths, tmp_path / "p.exr", "--ev", "-2,0,2")
    assert "expTime" not in header  # EV steps are ratios, not seconds


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_preview_carries_the_reference_frames_exif(runner, tmp_path, static_scene, suffix):
    preview = tmp_path / f"o{suffix}"
    _merge(runner, _camera_bracket(tmp_path / "b", static_scene[1]), tmp_path / "o.exr", "--preview", str(preview))
    with Image.open(preview) as image:
        exif = image.getexif()
        details = exif.get_ifd(EXIF_IFD)
    assert exif[MAKE] == "Testcam" and exif[MODEL] == "HDR-1"
    assert details[DATE_TIME_ORIGINAL] == "2024:05:01 12:00:01"
    assert exif[SOFTWARE].startswith("smarthdr")
    assert ORIENTATION not in exif  # the pixels are upright already


def test_preview_exif_falls_back_to_the_capture_info(tmp_path):
    raw = tmp_path / "IMG_1.CR2"
    raw.write_bytes(b"II*\x00" + bytes(64))  # a container Pillow cannot open
    info = CaptureInfo(make="Canon", model="EOS 5D Mark II", capture_time=datetime(2015, 9, 19, 3, 39, 21))
    exif = Image.Exif()
    exif.load(preview_exif(raw, info))
    assert exif[MAKE] == "Canon" and exif[MODEL] == "EOS 5D Mark II"
    assert exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == "2015:09:19 03:39:21"
    empty = Image.Exif()
    empty.load(preview_exif(None, CaptureInfo()))
    assert MAKE not in empty and empty[SOFTWARE].startswith("smarthdr")


def test_frobisher_outputs_name_the_camera_and_time(runner, tmp_path, shared_data):
    folder = shared_data / "brackets" / "frobisher"
    frames = [folder / f"IMG_{n}.jpg" for n in (2600, 2601, 2602)]
    header = _merge(runner, frames, tmp_path / "f.exr", "--preview", str(tmp_path / "f.jpg"))
    assert header["capDate"] == "2015:09:19 03:39:21" and header["expTime"] == pytest.approx(1.0)
    assert header["smarthdr:referencePosition"] == 2 and header["smarthdr:referenceFile"] == "IMG_2601.jpg"
    with Image.open(tmp_path / "f.jpg") as image:
        exif = image.getexif()
        assert (exif[MAKE], exif[MODEL]) == ("Canon", "EOS 5D Mark II")
        assert exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == "2015:09:19 03:39:21"
