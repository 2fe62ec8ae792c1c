"""Real camera files from ../shared/data (skipped when the folder is absent)."""
import json
import shutil

import numpy as np
import pytest

from smarthdr_cli.app import app
from smarthdr_cli.io.hdr import read_hdr
from smarthdr_cli.io.ldr import read_ldr
from smarthdr_cli.io.raw import camera_white_balance, decode_raw


def test_frobisher_bracket_merges_with_its_exif_exposures(runner, shared_data, tmp_path):
    folder = shared_data / "brackets" / "frobisher"
    files = [folder / f"IMG_260{i}.jpg" for i in (2, 0, 1)]  # any order
    out = tmp_path / "frobisher.exr"
    result = runner.invoke(app, ["merge", *map(str, files), "-o", str(out), "--preview", str(tmp_path / "p.jpg"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["exposures"]["seconds"] == pytest.approx([0.125, 1.0, 8.0])
    assert report["exposures"]["normalised"] == pytest.approx([1.0, 8.0, 64.0])
    assert report["reference"] == "IMG_2601.jpg" and report["response"] == "calibrated"
    hdr = read_hdr(out)
    assert hdr.shape == (426, 640, 3) and np.isfinite(hdr).all()
    # The window, clipped in the reference, gets detail from the short frame: far more range.
    reference, _ = read_ldr(folder / "IMG_2601.jpg")
    clipped = reference.min(axis=2) > 0.99
    assert clipped.mean() > 0.05
    assert np.percentile(hdr[clipped].max(axis=1), 90) > 3.0 * (1.0 / 8.0)
    assert hdr[clipped].std() > 0.02  # clouds, not a flat white patch
    # No colour cast: where the reference is well exposed, the merge keeps its colour balance
    # (channel ratios of the calibrated, linearised reference within 10%).
    from smarthdr_cli.response import calibrate

    frames = [read_ldr(folder / f"IMG_260{i}.jpg")[0] for i in range(3)]
    linear_reference = calibrate(frames, [0.125, 1.0, 8.0]).linearise(frames[1])
    good = (reference.min(axis=2) > 0.1) & (reference.max(axis=2) < 0.9)
    merged, expected = hdr[good].mean(axis=0), linear_reference[good].mean(axis=0)
    assert merged / merged[1] == pytest.approx(expected / expected[1], rel=0.1)


@pytest.mark.parametrize("name, shape", [("RAW_KODAK_DC50.KDC", (512, 768, 3)), ("RAW_CANON_D30_SRGB.CRW", (1448, 2176, 3))])
def test_raw_files_decode(shared_data, name, shape):
    path = shared_data / "raw" / name
    image = decode_raw(path, camera_white_balance(path))
    assert image.shape == shape and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.mean() > 0.02


def test_raw_bracket_path_end_to_end(runner, shared_data, tmp_path):
    """No real RAW bracket is available: one RAW frame twice, with exposures given by flag."""
    for name in ("a.KDC", "b.KDC"):
        shutil.copy(shared_data / "raw" / "RAW_KODAK_DC50.KDC", tmp_path / name)
    out = tmp_path / "raw.exr"
    result = runner.invoke(app, ["merge", str(tmp_path / "a.KDC"), str(tmp_path / "b.KDC"), "-o", str(out), "--ev", "0,2", "--json", "--align", "none"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["response"] == "linear RAW"
    assert read_hdr(out).shape == (512, 768, 3)
    result = runner.invoke(app, ["merge", str(tmp_path / "a.KDC"), str(tmp_path / "b.KDC"), "-o", str(tmp_path / "x.exr"), "--ev", "0,2", "--response", "calibrate"])
    assert result.exit_code == 2 and "RAW" in result.stderr


def test_raw_without_exif_names_the_flags(runner, shared_data, tmp_path):
    """exifread cannot parse CRW, LibRaw can: the exposure time comes from LibRaw's metadata."""
    for name in ("a.CRW", "b.CRW"):
        shutil.copy(shared_data / "raw" / "RAW_CANON_D30_SRGB.CRW", tmp_path / name)
    result = runner.invoke(app, ["merge", str(tmp_path / "a.CRW"), str(tmp_path / "b.CRW"), "-o", str(tmp_path / "o.exr")])
    assert result.exit_code == 2 and "same exposure" in result.stderr  # both 1/203 s, read by LibRaw


@pytest.mark.parametrize(
    "name, message",
    [
        ("exifpy_sony_a7iii_stripped.ARW", "cannot"),
        ("exifpy_nikon_z9_htz_cropped.dng", "not a RAW format LibRaw can read"),
        ("exiv2_canon_powershot_s40_truncated.crw", "cannot read RAW"),
        ("exiv2_IMG_1361_pruned_iphone12pro.dng", "entirely black"),
        ("memorial_CRLF_corrupted.hdr", "already an HDR image"),
    ],
)
def test_malformed_files_give_one_line_and_exit_2(runner, shared_data, tmp_path, name, message):
    source = shared_data / "malformed" / name
    copies = [tmp_path / f"{stem}{source.suffix}" for stem in ("a", "b")]
    for copy in copies:
        shutil.copy(source, copy)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = runner.invoke(app, ["merge", *map(str, copies), "-o", str(out_dir / "o.exr"), "--exposures", "1/100,1/25", "-q"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert list(out_dir.iterdir()) == []


def test_real_jpegs_read_as_pillow_decodes_them(shared_data):
    """Every camera JPEG of ../shared/data: the reader's pixels (OpenCV's decoder for colour and
    grey JPEGs) are Pillow's, EXIF orientation left to the reader."""
    from PIL import Image

    paths = sorted(p for p in shared_data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    assert paths
    for path in paths:
        with Image.open(path) as image:
            expected = np.asarray(image.convert("RGB"))
        codes, bits = read_ldr(path, codes=True)
        assert bits == 8 and np.array_equal(codes, expected), path.name
