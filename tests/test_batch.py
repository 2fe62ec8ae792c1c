"""Bracket discovery and `smarthdr batch` over synthetic camera folders."""
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from conftest import exif_jpeg
from smarthdr_cli.app import app
from smarthdr_cli.discover import Shot, group_by_count, group_by_time

START = datetime(2024, 5, 1, 12, 0, 0)


def _shot(name, seconds, exposure, camera="A", size=(4, 4), raw=False):
    return Shot(Path(name), Path("."), camera, size, START + timedelta(seconds=seconds), exposure, raw)


def _names(groups):
    return [[s.path.name for s in group] for group in groups]


def test_grouping_by_time_gap_and_exposures():
    shots = [
        _shot("a1", 0, 1 / 100), _shot("a2", 1, 1 / 25), _shot("a3", 1, 1 / 400),  # one bracket
        _shot("b1", 2, 1 / 100), _shot("b2", 2, 1 / 25), _shot("b3", 3, 1 / 400),  # back to back: repeated exposure splits
        _shot("c1", 60, 1 / 100),  # a minute later: single
        _shot("d1", 100, 1 / 8), _shot("d2", 100, 30.0), _shot("d3", 131, 1 / 2),  # 30 s exposure does not split
        _shot("e1", 200, 1 / 100, camera="B"), _shot("e2", 200, 1 / 25, camera="A"),  # different cameras
    ]
    assert _names(group_by_time(shots, gap=2.0)) == [
        ["a1", "a2", "a3"], ["b1", "b2", "b3"], ["c1"], ["d1", "d2", "d3"], ["e2"], ["e1"],
    ]


def test_raw_and_jpeg_twins_and_sizes_form_separate_streams():
    shots = []
    for i, t in enumerate((1 / 100, 1 / 25, 1 / 400)):
        shots += [_shot(f"IMG_{i}.CR2", i, t, raw=True), _shot(f"IMG_{i}.JPG", i, t)]
    shots.append(_shot("IMG_9.JPG", 2, 1 / 6, size=(8, 8)))
    groups = _names(group_by_time(shots, gap=2.0))
    assert ["IMG_0.CR2", "IMG_1.CR2", "IMG_2.CR2"] in groups and ["IMG_0.JPG", "IMG_1.JPG", "IMG_2.JPG"] in groups
    assert ["IMG_9.JPG"] in groups


def test_grouping_by_count():
    shots = [_shot(f"f{i}", i * 100, None) for i in range(7)]
    assert _names(group_by_count(shots, 3)) == [["f0", "f1", "f2"], ["f3", "f4", "f5"], ["f6"]]


def _library(root: Path, static_scene, brackets: int = 2, single: bool = True) -> list[list[Path]]:
    """Camera folders: `brackets` EV -2/0/+2 brackets a minute apart, and a single shot."""
    _, frames = static_scene
    made = []
    for b in range(brackets):
        when = (START + timedelta(minutes=b)).strftime("%Y:%m:%d %H:%M:%S")
        folder = root / f"day{b % 2}"
        made.append([
            exif_jpeg(folder / f"IMG_{10 * b + i}.jpg", frame, (1, t), when)
            for i, (frame, t) in enumerate(zip(frames, (400, 100, 25)))
        ])
    if single:
        exif_jpeg(root / "day0" / "IMG_999.jpg", frames[1], (1, 100), (START + timedelta(hours=1)).strftime("%Y:%m:%d %H:%M:%S"))
    return made


def _report(out: Path, name="smarthdr-batch-report.jsonl"):
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


def test_batch_merges_a_library_and_reports(runner, tmp_path, static_scene):
    library, out = tmp_path / "lib", tmp_path / "out"
    out.mkdir()
    _library(library, static_scene)
    (library / "day1" / "notes.txt").write_text("not an image")
    result = runner.invoke(app, ["batch", str(library), "-o", str(out), "--preview", "jpg", "-q"])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("IMG_*")) == [
        "day0/IMG_1.exr", "day0/IMG_1.jpg", "day1/IMG_11.exr", "day1/IMG_11.jpg",
    ]
    lines = _report(out)
    assert sorted(line["status"] for line in lines) == ["ok", "ok", "single"]
    assert next(line for line in lines if line["status"] == "single")["file"].endswith("IMG_999.jpg")


def test_failed_brackets_do_not_stop_the_run(runner, tmp_path, static_scene):
    library, out = tmp_path / "lib", tmp_path / "out"
    out.mkdir()
    made = _library(library, static_scene)
    data = made[0][0].read_bytes()
    made[0][0].write_bytes(data[: len(data) // 2])  # truncated JPEG: EXIF intact, half the pixels gone
    result = runner.invoke(app, ["batch", str(library), "-o", str(out), "-q"])
    assert result.exit_code == 3, result.output
    failed = [line for line in _report(out) if line["status"] == "failed"]
    assert len(failed) == 1 and "IMG_0.jpg" in failed[0]["reason"] and "\n" not in failed[0]["reason"]
    assert (out / "day1" / "IMG_11.exr").is_file() and not (out / "day0" / "IMG_1.exr").exists()
    assert not [p for p in out.rglob("*") if ".partial" in p.name]


def test_interrupted_run_then_skip_existing(runner, tmp_path, static_scene, monkeypatch):
    import smarthdr_cli.batch as batch

    library, out = tmp_path / "lib", tmp_path / "out"
    out.mkdir()
    _library(library, static_scene, brackets=3, single=False)
    real = batch.run_merge
    calls = []

    def power_cut(paths, settings, note=None, backend=None):
        calls.append(settings.output)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(paths, settings, backend=backend)

    monkeypatch.setattr(batch, "run_merge", power_cut)
    result = runner.invoke(app, ["batch", str(library), "-o", str(out), "-q"])
    assert result.exit_code == 130
    done = sorted(out.rglob("*.exr"))
    assert len(done) == 1
    stamp = done[0].stat().st_mtime_ns
    monkeypatch.setattr(batch, "run_merge", real)
    result = runner.invoke(app, ["batch", str(library), "-o", str(out), "-q", "--skip-existing"])
    assert result.exit_code == 0, result.output
    assert len(sorted(out.rglob("*.exr"))) == 3 and done[0].stat().st_mtime_ns == stamp
    # the rerun continues the interrupted run's report: its ok line, then the rerun's ok, ok, skipped
    assert sorted(line["status"] for line in _report(out)) == ["ok", "ok", "ok", "skipped"]
    result = runner.invoke(app, ["batch", str(library), "-o", str(out), "-q"])  # without: the report is not replaced
    assert result.exit_code == 2 and "--overwrite" in result.output
    fresh = ["--report", str(tmp_path / "again.jsonl")]
    result = runner.invoke(app, ["batch", str(library), "-o", str(out), "-q", *fresh])  # and existing outputs fail
    assert result.exit_code == 3 and all("--overwrite" in line["reason"] for line in _report(tmp_path, "again.jsonl"))


def test_shards_split_without_overlap(runner, tmp_path, static_scene):
    library = tmp_path / "lib"
    _library(library, static_scene, brackets=4, single=False)
    outputs = []
    for k in (1, 2):
        result = runner.invoke(app, ["batch", str(library), "-o", str(tmp_path), "--dry-run", "--json", "--shard", f"{k}/2"])
        assert result.exit_code == 0, result.output
        outputs.append({json.loads(line)["output"] for line in result.stdout.splitlines() if '"planned"' in line})
    everything = runner.invoke(app, ["batch", str(library), "-o", str(tmp_path), "--dry-run", "--json"])
    planned = {json.loads(line)["output"] for line in everything.stdout.splitlines()}
    assert not outputs[0] & outputs[1] and outputs[0] | outputs[1] == planned and len(planned) == 4


def test_dry_run_lists_the_grouping_and_writes_nothing(runner, tmp_path, static_scene):
    library, out = tmp_path / "lib", tmp_path / "out"
    out.mkdir()
    _library(library, static_scene)
    result = runner.invoke(app, ["batch", str(library), "-o", str(out), "--dry-run", "--json"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    planned = [line for line in lines if line["status"] == "planned"]
    assert len(planned) == 2 and planned[0]["exposures"] == pytest.approx([1 / 400, 1 / 100, 1 / 25])
    assert planned[0]["reference"].endswith("IMG_1.jpg") and not planned[0]["exists"]
    assert list(out.iterdir()) == []
    table = runner.invoke(app, ["batch", str(library), "-o", str(out), "--dry-run"])
    assert "IMG_1.jpg" in table.stdout and "single" in table.stdout


def test_parallel_jobs_match_serial(runner, tmp_path, static_scene):
    from smarthdr_cli.io.hdr import read_hdr

    library = tmp_path / "lib"
    _library(library, static_scene, brackets=2, single=False)
    results = {}
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        out.mkdir()
        result = runner.invoke(app, ["batch", str(library), "-o", str(out), "--jobs", str(jobs), "-q"])
        assert result.exit_code == 0, result.output
        results[jobs] = {p.relative_to(out): read_hdr(p) for p in out.rglob("*.exr")}
    assert results[1].keys() == results[2].keys() and len(results[1]) == 2
    for name in results[1]:
        serial, parallel = results[1][name], results[2][name]
        # Workers run the network with 1 thread instead of 2, which rounds some fp32 sums
        # differently; in the half-precision EXR that can flip one ulp (2^-10 relative at most).
        # Measured on this project's CPU: 0.05% of the values, 9.7e-4 relative at most.
        assert np.allclose(serial, parallel, rtol=2.0**-10, atol=1e-6)
        assert (serial != parallel).mean() < 0.01


def test_files_without_exif_times_need_bracket_size(runner, tmp_path, static_scene):
    from conftest import write_bracket

    _, frames = static_scene
    write_bracket(tmp_path / "lib", frames)  # PNGs: no EXIF at all
    out = tmp_path / "out"
    out.mkdir()
    result = runner.invoke(app, ["batch", str(tmp_path / "lib"), "-o", str(out), "-q"])
    assert result.exit_code == 0 and not list(out.rglob("*.exr"))
    assert all("--bracket-size" in line["reason"] for line in _report(out))
    result = runner.invoke(app, ["batch", str(tmp_path / "lib"), "-o", str(out), "--bracket-size", "3", "-q", "--overwrite"])
    assert result.exit_code == 3  # grouped now, but with no exposure times the merge says which flag it needs
    assert "--exposures" in _report(out)[0]["reason"]


def test_batch_usage_errors(runner, tmp_path):
    for args, message in [
        ([str(tmp_path / "nope"), "-o", str(tmp_path)], "no such folder"),
        ([str(tmp_path), "-o", str(tmp_path / "missing")], "does not exist"),
        ([str(tmp_path), "-o", str(tmp_path), "--shard", "3/2"], "--shard"),
        ([str(tmp_path), "-o", str(tmp_path), "--format", "png"], "--format"),
        ([str(tmp_path), "-o", str(tmp_path), "--preview", "gif"], "--preview"),
    ]:
        result = runner.invoke(app, ["batch", *args])
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0]


def test_batch_bad_input_matrix(runner, tmp_path, static_scene, shared_data, monkeypatch):
    """One library holding every kind of trouble: the run finishes, each case lands in the report."""
    import shutil

    _, frames = static_scene
    library, out = tmp_path / "lib", tmp_path / "out"
    out.mkdir()
    stamp = lambda minute: (START + timedelta(minutes=minute)).strftime("%Y:%m:%d %H:%M:%S")  # noqa: E731
    broken = library / "broken"
    broken.mkdir(parents=True)
    for source in sorted((shared_data / "malformed").iterdir()):
        shutil.copy(source, broken / source.name)
    (library / "notes.jpg").write_text("a text file with an image name")
    # two frames, nine frames: both merge
    for i, t in enumerate((400, 25)):
        exif_jpeg(library / "two" / f"IMG_2{i}.jpg", frames[2 * i], (1, t), stamp(1))
    nine = [frames[0], frames[0], frames[1], frames[1], frames[1], frames[1], frames[2], frames[2], frames[2]]
    for i, (frame, t) in enumerate(zip(nine, (1600, 800, 400, 200, 100, 50, 25, 12, 6))):
        exif_jpeg(library / "nine" / f"IMG_9{i}.jpg", frame, (1, t), stamp(2))
    # mismatched orientation within one bracket: grouped, then refused by the merge
    for i, (frame, t) in enumerate(zip(frames, (400, 100, 25))):
        exif_jpeg(library / "turned" / f"IMG_3{i}.jpg", frame, (1, t), stamp(3), orientation=6 if i == 2 else 1)
    # mismatched size: a different stream, so a single shot
    exif_jpeg(library / "sizes" / "IMG_40.jpg", frames[0], (1, 400), stamp(4))
    exif_jpeg(library / "sizes" / "IMG_41.jpg", frames[1][:64, :64], (1, 100), stamp(4))
    # equal exposures: a burst, not a bracket
    for i in range(3):
        exif_jpeg(library / "burst" / f"IMG_5{i}.jpg", frames[1], (1, 100), stamp(5))

    result = runner.invoke(app, ["batch", str(library), "-o", str(out), "-q"])
    assert result.exit_code == 3, result.output
    lines = _report(out)
    by_file = {}
    for line in lines:
        for name in line.get("bracket", [line.get("file")]):
            by_file[Path(name).name] = line
    assert by_file["IMG_20.jpg"]["status"] == "ok" and by_file["IMG_94.jpg"]["status"] == "ok"
    assert "different EXIF orientations" in by_file["IMG_30.jpg"]["reason"]
    assert by_file["IMG_40.jpg"]["status"] == by_file["IMG_41.jpg"]["status"] == "single"
    assert [by_file[f"IMG_5{i}.jpg"]["status"] for i in range(3)] == ["single"] * 3
    assert by_file["notes.jpg"]["status"] == "unreadable"
    for name in ("exifpy_sony_a7iii_stripped.ARW", "exiv2_canon_powershot_s40_truncated.crw", "memorial_CRLF_corrupted.hdr"):
        assert name not in by_file or by_file[name]["status"] in ("single", "unreadable", "failed")
    assert all("\n" not in line.get("reason", "") for line in lines)
    assert sorted(p.name for p in out.rglob("*.exr")) == ["IMG_20.exr", "IMG_94.exr"]  # two frames: the shorter is the reference
    assert not [p for p in out.rglob("*") if ".partial" in p.name]

    # a full disk fails every bracket cleanly and leaves nothing behind
    import smarthdr_cli.io.hdr as hdr

    def disk_full(temp, *args):
        temp.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hdr, "_write_exr", disk_full)
    full = tmp_path / "full"
    full.mkdir()
    result = runner.invoke(app, ["batch", str(library / "two"), "-o", str(full), "-q"])
    assert result.exit_code == 3
    assert "No space left on device" in _report(full)[0]["reason"]
    assert sorted(p.name for p in full.rglob("*") if p.is_file()) == ["smarthdr-batch-report.jsonl"]

    # a read-only output folder is refused before any work
    import os

    real_access = os.access
    denied = lambda p, mode: (Path(p) == full and mode & os.W_OK) or not real_access(p, mode)  # noqa: E731
    monkeypatch.setattr(os, "access", lambda p, mode: not denied(p, mode))
    result = runner.invoke(app, ["batch", str(library / "two"), "-o", str(full)])
    assert result.exit_code == 2 and "not writable" in result.stderr
