"""`smarthdr merge` and `smarthdr backends` end to end, through Typer's CliRunner and a subprocess."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import OpenEXR
import pytest
import torch

from conftest import REPO, exif_jpeg, write_bracket
from smarthdr_cli.app import app
from smarthdr_cli.io.hdr import read_hdr
from smarthdr_cli.metrics import psnr_mu

EXAMPLE = REPO / "examples" / "bracket"


def _one_line_error(result, code=2):
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error")]
    # Status lines may precede it; the error itself is exactly one line, and the last.
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return errors[0]


def test_merges_the_bundled_example(runner, tmp_path):
    out = tmp_path / "example.exr"
    preview = tmp_path / "example.jpg"
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(out), "--preview", str(preview), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    backend = "cuda" if torch.cuda.is_available() else "cpu"  # auto: the shipped network
    assert report["backend"] == backend and report["weights"].startswith("gfhdr@")
    assert report["exposures"]["normalised"] == pytest.approx([1.0, 4.0, 16.0])
    assert report["reference"] == "2_medium.png" and report["response"] == "gamma 2.2"
    assert set(report["outputs"]) == {"hdr", "preview"} and report["seconds"] > 0
    header = OpenEXR.File(str(out)).header()
    assert header["smarthdr:backend"] == backend and header["smarthdr:weights"] == report["weights"]
    assert header["smarthdr:exposureTimes"] == pytest.approx([1.0, 4.0, 16.0])
    assert header["smarthdr:referencePosition"] == 2 and header["smarthdr:referenceFile"] == "2_medium.png"  # 1-based, as --reference
    assert "t_short = 1" in header["smarthdr:exposureNote"]
    assert iio.imread(preview).shape == (384, 576, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example.exr", "example.jpg"]


def test_recovers_a_synthetic_scene_from_files_in_any_order(runner, tmp_path, static_scene):
    radiance, frames = static_scene
    paths = write_bracket(tmp_path / "b", frames)
    shuffled = [paths[2], paths[0], paths[1]]
    out = tmp_path / "out.exr"
    result = runner.invoke(app, ["merge", *map(str, shuffled), "-o", str(out), "--ev", "4,0,2", "--response", "gamma", "--json", "--float32", "--backend", "classic"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [Path(p).name for p in report["used"]] == ["frame1.png", "frame2.png", "frame3.png"]
    assert report["reference"] == "frame2.png"
    assert psnr_mu(read_hdr(out), radiance) > 40.0


def test_calibrated_response_is_the_default_for_camera_files(runner, tmp_path, static_scene):
    _, frames = static_scene
    paths = write_bracket(tmp_path / "b", frames)
    result = runner.invoke(app, ["merge", *map(str, paths), "-o", str(tmp_path / "o.hdr"), "--exposures", "1/400,1/100,1/25", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["response"] == "calibrated"
    assert report["exposures"]["seconds"] == pytest.approx([0.0025, 0.01, 0.04])
    assert read_hdr(tmp_path / "o.hdr").shape == frames[0].shape


def test_reference_override_and_more_than_three_frames(runner, tmp_path):
    from smarthdr_cli.camera import render_bracket
    from smarthdr_cli.data.synth.fixed_scene import procedural_radiance

    radiance = procedural_radiance(96, 144, seed=1)
    frames = render_bracket(radiance, [1, 2, 4, 8, 16], noise=0.001)
    paths = write_bracket(tmp_path / "b", frames)
    base = ["merge", *map(str, paths), "--ev", "0,1,2,3,4", "--response", "gamma", "--json", "-q"]
    result = runner.invoke(app, base + ["-o", str(tmp_path / "a.exr")])
    report = json.loads(result.stdout)
    assert [Path(p).name for p in report["used"]] == ["frame1.png", "frame3.png", "frame5.png"]
    result = runner.invoke(app, base + ["-o", str(tmp_path / "b.exr"), "--reference", "frame4.png"])
    report = json.loads(result.stdout)
    assert [Path(p).name for p in report["used"]] == ["frame1.png", "frame4.png", "frame5.png"]
    assert report["reference"] == "frame4.png"
    result = runner.invoke(app, base + ["-o", str(tmp_path / "c.exr"), "--reference", "1"])
    assert json.loads(result.stdout)["reference"] == "frame1.png"


def test_existing_output_needs_overwrite(runner, tmp_path):
    out = tmp_path / "x.exr"
    out.write_bytes(b"precious")
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(out)])
    assert "--overwrite" in _one_line_error(result)
    assert out.read_bytes() == b"precious"
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(out), "--overwrite", "-q"])
    assert result.exit_code == 0 and result.stderr == ""
    assert read_hdr(out).shape == (384, 576, 3)


def _bad_inputs(tmp_path, frames):
    good = write_bracket(tmp_path / "good", frames)
    cases = {}
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    cases["corrupt"] = ([tmp_path / "garbage.jpg", good[1]], ["--ev", "0,2"], "garbage.jpg")
    (tmp_path / "notes.txt").write_text("hello")
    cases["unsupported"] = ([tmp_path / "notes.txt", good[1]], [], "unsupported file type")
    cases["missing"] = ([tmp_path / "nope.jpg", good[1]], [], "no such file")
    cases["one frame"] = ([good[1]], ["--ev", "0"], "at least 2 frames")
    small = tmp_path / "small.png"
    iio.imwrite(small, frames[0][:50, :50])
    cases["sizes"] = ([small, good[1]], ["--ev", "0,2"], "differ in size")
    cases["equal exposures"] = (good[:2], ["--ev", "1,1"], "same exposure")
    cases["no exif"] = (good, [], "--exposures")
    black = tmp_path / "black.png"
    iio.imwrite(black, np.zeros_like(frames[0]))
    cases["black"] = ([black, good[1]], ["--ev", "0,2"], "entirely black")
    white = tmp_path / "white.png"
    iio.imwrite(white, np.full_like(frames[0], 255))
    cases["white"] = ([good[1], white], ["--ev", "0,2"], "entirely saturated")
    cases["bad ev"] = (good, ["--ev", "0,x,2"], "--ev")
    cases["both flags"] = (good, ["--ev", "0,1,2", "--exposures", "1,2,4"], "not both")
    cases["hdr input"] = ([tmp_path / "x.hdr", good[1]], [], "already an HDR")
    (tmp_path / "x.hdr").write_bytes(b"#?RADIANCE\n")
    cases["bad reference"] = (good, ["--ev", "0,1,2", "--reference", "7"], "--reference")
    cases["bad align"] = (good, ["--ev", "0,1,2", "--align", "sideways"], "--align")
    cases["bad response"] = (good, ["--ev", "0,1,2", "--response", "magic"], "--response")
    cases["unknown backend"] = (good, ["--ev", "0,1,2", "--backend", "quantum"], "unknown backend")
    cases["uncertainty"] = (good, ["--ev", "0,1,2", "--backend", "classic", "--uncertainty", str(tmp_path / "u.exr")], "no uncertainty")
    return cases


def test_bad_input_matrix(runner, tmp_path, static_scene):
    _, frames = static_scene
    for name, (paths, flags, message) in _bad_inputs(tmp_path, frames).items():
        out = tmp_path / "out" / f"{name.replace(' ', '_')}.exr"
        out.parent.mkdir(exist_ok=True)
        result = runner.invoke(app, ["merge", *map(str, paths), "-o", str(out), *flags])
        line = _one_line_error(result)
        assert message in line, (name, line)
        assert list(out.parent.iterdir()) == [], name  # nothing written, not even a temp file


def test_bad_outputs(runner, tmp_path, monkeypatch):
    for target, message in [
        (tmp_path / "no" / "such" / "dir" / "o.exr", "does not exist"),
        (tmp_path / "o.png", "must end in .exr or .hdr"),
        (tmp_path / "d.exr", "is a folder"),
    ]:
        if target.name == "d.exr":
            target.mkdir()
        result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(target)])
        assert message in _one_line_error(result)
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(tmp_path / "a.exr"), "--preview", str(tmp_path / "a.exr")])
    assert "different files" in _one_line_error(result)
    readonly = tmp_path / "ro"
    readonly.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == readonly else real_access(p, mode))
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(readonly / "o.exr")])
    assert "not writable" in _one_line_error(result)


def test_crash_while_writing_leaves_no_output(runner, tmp_path, monkeypatch):
    import smarthdr_cli.io.hdr as hdr

    def disk_full(temp, *args):
        temp.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hdr, "_write_exr", disk_full)
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(tmp_path / "o.exr")])
    assert "No space left on device" in _one_line_error(result)
    assert list(tmp_path.iterdir()) == []


def test_internal_errors_exit_1_without_traceback(runner, tmp_path, monkeypatch):
    from smarthdr_backends.classic import ClassicBackend

    def broken(self, bracket):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(ClassicBackend, "merge", broken)
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(tmp_path / "o.exr"), "--backend", "classic"])
    assert "internal error" in _one_line_error(result, code=1)
    assert list(tmp_path.iterdir()) == []


def test_backends_lists_availability(runner):
    result = runner.invoke(app, ["backends", "--json"])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    classic = next(row for row in rows if row["name"] == "classic")
    assert classic["available"] is True and classic["origin"] == "smarthdr"
    table = runner.invoke(app, ["backends"])
    assert table.exit_code == 0 and "classic" in table.stdout


def test_console_script_usage_errors_are_one_line(tmp_path):
    exe = shutil.which("smarthdr")
    command = [exe] if exe else [sys.executable, "-m", "smarthdr_cli"]
    for args in (["merge"], ["merge", "a.jpg", "--bogus"], ["frobnicate"]):
        done = subprocess.run(command + args, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2, done
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    done = subprocess.run([sys.executable, "-m", "smarthdr_cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("smarthdr ")


def test_exif_exposure_and_orientation_end_to_end(runner, tmp_path, static_scene):
    """Camera JPEGs stored sideways (orientation 6): exposures from EXIF, output upright."""
    _, frames = static_scene
    stored = [np.ascontiguousarray(np.rot90(f, 1)) for f in frames]  # how a camera held upright stores them
    paths = [
        exif_jpeg(tmp_path / f"IMG_{i}.jpg", image, (1, t), orientation=6)
        for i, (image, t) in enumerate(zip(stored, (400, 100, 25)))
    ]
    out = tmp_path / "o.exr"
    result = runner.invoke(app, ["merge", *map(str, paths), "-o", str(out), "--json", "--align", "none"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["exposures"]["seconds"] == pytest.approx([1 / 400, 1 / 100, 1 / 25])
    hdr = read_hdr(out)
    assert hdr.shape == frames[0].shape  # upright again: 192 rows, 288 columns
    reference = frames[1].astype(np.float32) / 255
    well = (reference.max(axis=2) < 0.9) & (reference.min(axis=2) > 0.1)
    assert np.corrcoef(hdr[well][:, 1], reference[well][:, 1])[0, 1] > 0.9  # same geometry as the frame
    mixed = exif_jpeg(tmp_path / "IMG_9.jpg", stored[2], (1, 25), orientation=1)
    result = runner.invoke(app, ["merge", str(paths[0]), str(paths[1]), str(mixed), "-o", str(tmp_path / "m.exr")])
    assert "different EXIF orientations" in _one_line_error(result)
