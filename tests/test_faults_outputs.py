"""Nothing a user owns is lost: outputs never replace inputs, appear as a set or not at all,
survive a full disk, and a signal (Ctrl-C, SIGTERM, a killed batch) leaves no temporaries."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from conftest import exif_jpeg
from smarthdr_cli import tonemap
from smarthdr_cli.app import app, cli_errors
from smarthdr_cli.camera import render_bracket
from smarthdr_cli.data.synth.fixed_scene import procedural_radiance
from smarthdr_cli.errors import OutputError
from smarthdr_cli.io.output import atomic_output
from smarthdr_cli.io.provenance import write_preview

START = datetime(2024, 5, 1, 12, 0, 0)
CLI = [sys.executable, "-m", "smarthdr_cli"]


def _jpeg_bracket(folder: Path, frames: list[np.ndarray], minute: int = 0, first: int = 0) -> list[Path]:
    when = (START + timedelta(minutes=minute)).strftime("%Y:%m:%d %H:%M:%S")
    return [
        exif_jpeg(folder / f"IMG_{first + i}.jpg", frame, (1, t), when)
        for i, (frame, t) in enumerate(zip(frames, (400, 100, 25)))
    ]


def _library(root: Path, frames: list[np.ndarray], brackets: int = 2) -> list[list[Path]]:
    return [_jpeg_bracket(root / f"day{b}", frames, minute=b, first=10 * b) for b in range(brackets)]


def _bytes(paths: list[Path]) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial" in p.name]


# --- outputs never replace inputs --------------------------------------------------------------


def test_batch_report_never_replaces_a_photo(runner, tmp_path, static_scene):
    library, out = tmp_path / "lib", tmp_path / "out"
    out.mkdir()
    photos = [p for bracket in _library(library, static_scene[1]) for p in bracket]
    before = _bytes(photos)
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(app, ["batch", str(library), "-o", str(out), "--backend", "classic", "-q", "--report", str(photos[0]), *extra])
        assert result.exit_code == 2, result.output
        assert "one of the photos" in result.output
    assert _bytes(photos) == before
    assert not list(out.rglob("*.exr"))  # refused before any merge


def test_batch_report_follows_the_rules_of_every_output(runner, tmp_path, static_scene):
    library, out = tmp_path / "lib", tmp_path / "out"
    out.mkdir()
    _library(library, static_scene[1], brackets=1)
    args = ["batch", str(library), "-o", str(out), "--backend", "classic", "-q"]
    assert runner.invoke(app, args).exit_code == 0
    report = out / "smarthdr-batch-report.jsonl"
    first = report.read_text()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.output, again.output
    assert report.read_text() == first
    resumed = runner.invoke(app, [*args, "--skip-existing"])  # a rerun continues the run's report
    assert resumed.exit_code == 0, resumed.output
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert [line["status"] for line in lines] == ["ok", "skipped"]
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    refused = runner.invoke(app, [*args, "--overwrite", "--report", str(notes)])
    assert refused.exit_code == 2 and "not a batch report" in refused.output, refused.output
    assert notes.read_text() == "my notes\n"


def test_preview_never_replaces_an_input_frame(runner, tmp_path, static_scene):
    frames = _jpeg_bracket(tmp_path / "b", static_scene[1])
    before = _bytes(frames)
    link = tmp_path / "link.jpg"
    os.link(frames[1], link)  # another name of the same file
    for preview in (frames[1], link):
        result = runner.invoke(app, [
            "merge", *map(str, frames), "-o", str(tmp_path / "o.exr"), "--backend", "classic",
            "--preview", str(preview), "--overwrite", "-q",
        ])
        assert result.exit_code == 2, result.output
        assert "is one of the input files" in result.output
    assert _bytes(frames) == before
    assert not (tmp_path / "o.exr").exists()


def test_batch_into_the_library_never_replaces_camera_jpegs(runner, tmp_path, static_scene):
    library = tmp_path / "lib"
    photos = [p for bracket in _library(library, static_scene[1]) for p in bracket]
    before = _bytes(photos)
    result = runner.invoke(app, ["batch", str(library), "-o", str(library), "--backend", "classic", "--preview", "jpg", "--overwrite", "-q"])
    assert result.exit_code == 3, result.output  # each bracket fails, the run goes on
    assert _bytes(photos) == before
    lines = [json.loads(line) for line in (library / "smarthdr-batch-report.jsonl").read_text().splitlines()]
    failed = [line for line in lines if line["status"] == "failed"]
    assert len(failed) == 2 and all("one of the photos" in line["reason"] for line in failed)
    assert not list(library.rglob("*.exr"))


# --- outputs appear as a set ---------------------------------------------------------------------


def test_a_failing_preview_leaves_no_hdr(runner, tmp_path, static_scene, monkeypatch):
    def broken(_hdr):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(tonemap.OPERATORS, tonemap.DEFAULT_OPERATOR, broken)
    paths = [str(p) for p in _jpeg_bracket(tmp_path / "b", static_scene[1])]
    result = runner.invoke(app, ["merge", *paths, "-o", str(tmp_path / "o.exr"), "--backend", "classic", "--preview", str(tmp_path / "o.jpg"), "-q"])
    assert result.exit_code != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no HDR without its preview, no temporaries


def test_skip_existing_checks_the_whole_output_set(runner, tmp_path, static_scene):
    library, out = tmp_path / "lib", tmp_path / "out"
    out.mkdir()
    _library(library, static_scene[1])
    args = ["batch", str(library), "-o", str(out), "--backend", "classic", "--preview", "jpg", "-q"]
    assert runner.invoke(app, args).exit_code == 0
    lost = out / "day0" / "IMG_1.jpg"
    lost.unlink()  # an HDR without its preview (an older version, or a user's delete)
    report = ["--report", str(tmp_path / "r1.jsonl")]
    result = runner.invoke(app, [*args, "--skip-existing", *report])
    assert result.exit_code == 3, result.output
    lines = {Path(line["output"]).name: line for line in map(json.loads, (tmp_path / "r1.jsonl").read_text().splitlines())}
    assert lines["IMG_1.exr"]["status"] == "failed" and "IMG_1.jpg" in lines["IMG_1.exr"]["reason"]
    assert lines["IMG_11.exr"]["status"] == "skipped"
    redo = runner.invoke(app, [*args, "--skip-existing", "--overwrite", "--report", str(tmp_path / "r2.jsonl")])
    assert redo.exit_code == 0, redo.output
    assert lost.is_file()


# --- full disks and short writes ---------------------------------------------------------------


def test_a_short_write_is_an_error_not_a_truncated_file(tmp_path, monkeypatch):
    real_write = os.write
    calls = []

    def short_then_full(fd, data):  # what a nearly full disk does: a short count, then ENOSPC
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_full)
    target = tmp_path / "preview.jpg"
    hdr = np.random.default_rng(0).random((64, 96, 3)).astype(np.float32)
    with pytest.raises(OutputError, match="No space left"):
        write_preview(target, hdr, "reinhard", overwrite=False)
    assert calls, "the preview was not written through the checked writer"
    assert list(tmp_path.iterdir()) == []


def _mount_tmpfs(mount: Path, size: int) -> None:
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")


def test_a_full_disk_leaves_neither_hdr_nor_preview(tmp_path):
    radiance = procedural_radiance(384, 576, seed=1)
    frames = render_bracket(radiance, [1.0, 4.0, 16.0], noise=0.01, seed=1)
    names = []
    for index, frame in enumerate(frames):
        names.append(str(tmp_path / f"f{index}.png"))
        iio.imwrite(names[-1], frame)
    command = [*CLI, "merge", *names, "-o", "o.exr", "--preview", "o.jpg", "--exposures", "1,4,16", "--backend", "classic", "-q"]
    roomy = tmp_path / "roomy"
    roomy.mkdir()
    assert subprocess.run(command, capture_output=True, cwd=roomy).returncode == 0
    page = 4096
    pages = [-(-(roomy / name).stat().st_size // page) for name in ("o.exr", "o.jpg")]
    # Room for the whole HDR and half the preview: where the first version wrote a truncated JPEG
    # under its final name and exited 0.
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, (pages[0] + pages[1] // 2) * page)
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=disk)
        assert done.returncode == 2, done.stderr
        assert "No space left" in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# --- bad option values ---------------------------------------------------------------------------


def test_superscript_reference_is_bad_input(runner, tmp_path, static_scene):
    paths = [str(p) for p in _jpeg_bracket(tmp_path / "b", static_scene[1])]
    result = runner.invoke(app, ["merge", *paths, "-o", str(tmp_path / "o.exr"), "--backend", "classic", "--reference", "²", "-q"])
    assert result.exit_code == 2, result.output
    assert "--reference" in result.output


# --- signals and closed pipes --------------------------------------------------------------------


def test_stale_temporaries_of_dead_runs_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".o.exr.{dead.pid}-abcdefgh.partial.exr"
    live = tmp_path / f".o.exr.{os.getpid()}-abcdefgh.partial.exr"  # a merge still writing
    other = tmp_path / f".other.exr.{dead.pid}-abcdefgh.partial.exr"  # another target's: not ours to judge
    for path in (stale, live, other):
        path.write_bytes(b"half")
    with atomic_output(tmp_path / "o.exr", overwrite=False) as temp:
        temp.write_bytes(b"whole")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "o.exr").read_bytes() == b"whole"


def _big_bracket(folder: Path, height: int = 900, width: int = 1350) -> list[str]:
    radiance = procedural_radiance(height, width, seed=2)
    frames = render_bracket(radiance, [1.0, 4.0, 16.0], noise=0.01, seed=2)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index, frame in enumerate(frames):
        names.append(str(folder / f"f{index}.png"))
        iio.imwrite(names[-1], frame)
    return names


def test_sigterm_unwinds_a_merge_like_ctrl_c(tmp_path):
    names = _big_bracket(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen(
        [*CLI, "merge", *names, "-o", str(out / "o.exr"), "--preview", str(out / "o.jpg"), "--exposures", "1,4,16", "--backend", "classic"],
        stderr=subprocess.PIPE, text=True,
    )
    line = process.stderr.readline()
    while line and not line.startswith("merging"):
        line = process.stderr.readline()
    # Into the merge, well before it ends: after this line the 1.2 MP merge and its outputs
    # take ~0.4 s here (it took 0.5 s more before the merge got faster).
    time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait(30) == 143, rest
    assert "terminated" in rest and "Traceback" not in rest
    assert list(out.iterdir()) == []


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status.lower()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the worker processes")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_batch_workers_die_with_their_parent(tmp_path, stop):
    library, out = tmp_path / "lib", tmp_path / "out"
    out.mkdir()
    radiance = procedural_radiance(700, 1050, seed=4)
    frames = render_bracket(radiance, [1.0, 4.0, 16.0], noise=0.01, seed=4)
    _library(library, frames, brackets=4)
    process = subprocess.Popen(
        [*CLI, "batch", str(library), "-o", str(out), "--backend", "classic", "--jobs", "2", "-q"],
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = [c for c in _children(process.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
    assert len(workers) == 2, "the batch did not start its workers"
    time.sleep(3)  # both are merging now
    process.send_signal(stop)
    try:
        _, stderr = process.communicate(timeout=60)  # EOF only once every holder of the pipe is gone
    except subprocess.TimeoutExpired:
        for worker in workers:
            with contextlib.suppress(OSError):
                os.kill(worker, signal.SIGKILL)
        pytest.fail("the batch's workers kept running after it was stopped")
    code = process.returncode
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "worker processes outlived the batch"
    assert _partials(out) == []
    if stop == signal.SIGTERM:
        assert code == 143, stderr
        assert len(stderr.strip().splitlines()) == 1 and "terminated" in stderr, stderr
        reported = {line["output"] for line in map(json.loads, (out / "smarthdr-batch-report.jsonl").read_text().splitlines()) if line["status"] == "ok"}
        assert {str(p) for p in out.rglob("*.exr")} <= reported  # nothing on disk that the report does not list


def test_an_import_cut_short_by_ctrl_c_is_an_interruption():
    demo = typer.Typer()

    @demo.command()
    @cli_errors
    def load() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("initialization failed")  # noqa: B904 -- as CPython reports an interrupted module init: context, no cause

    result = CliRunner().invoke(demo, [])
    assert result.exit_code == 130, result.output
    assert "please report" not in result.output


def test_a_closed_stdout_is_a_quiet_exit(tmp_path, static_scene):
    paths = [str(p) for p in _jpeg_bracket(tmp_path / "b", static_scene[1])]
    for args in (["merge", *paths, "-o", str(tmp_path / "o.exr"), "--backend", "classic", "--json", "-q"], ["backends", "--json"]):
        read, write = os.pipe()
        os.close(read)  # the reader (`| head`) is gone before we print
        done = subprocess.run([*CLI, *args], stdout=write, stderr=subprocess.PIPE, text=True)
        os.close(write)
        assert done.returncode == 141, done.stderr
        assert done.stderr == ""
    shutil.rmtree(tmp_path / "b")


# --- the other commands that write -------------------------------------------------------------


def _labeled_scene(folder: Path, static_scene, gt_name: str) -> Path:
    from conftest import write_bracket
    from smarthdr_cli.io.hdr import write_hdr

    radiance, frames = static_scene
    write_bracket(folder, frames, evs=[0, 2, 4])
    write_hdr(folder / gt_name, radiance)
    return folder / gt_name


def test_evaluate_never_saves_over_a_ground_truth(runner, tmp_path, static_scene):
    gt = _labeled_scene(tmp_path / "test" / "s1", static_scene, "s1.exr")  # a GT named like the scene
    before = gt.read_bytes()
    result = runner.invoke(app, ["evaluate", str(tmp_path / "test"), "--backend", "classic", "--save-dir", str(gt.parent), "--overwrite", "--json"])
    assert result.exit_code == 2, result.output
    assert "is one of the input files" in result.output
    assert gt.read_bytes() == before


def test_evaluate_saves_prediction_and_preview_as_a_set(runner, tmp_path, static_scene, monkeypatch):
    _labeled_scene(tmp_path / "test" / "s1", static_scene, "HDRImg.hdr")
    saved = tmp_path / "saved"
    saved.mkdir()

    def broken(_hdr):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(tonemap.OPERATORS, "mu", broken)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "test"), "--backend", "classic", "--save-dir", str(saved)])
    assert result.exit_code != 0
    assert list(saved.iterdir()) == []  # no prediction without its preview


def test_pseudo_label_never_replaces_the_unlabeled_scenes(runner, tmp_path, static_scene, tiny_weights):
    weights = tiny_weights
    unlabeled = tmp_path / "unlabeled"
    gt = _labeled_scene(unlabeled / "s1", static_scene, "HDRImg.hdr")
    before = {p: p.read_bytes() for p in gt.parent.iterdir()}
    for out in (unlabeled, unlabeled / "s1", unlabeled / "s1" / "pseudo"):
        result = runner.invoke(app, ["pseudo-label", "--unlabeled", str(unlabeled), "--weights", str(weights), "-o", str(out), "--overwrite", "-q"])
        assert result.exit_code == 2, result.output
        assert "unlabeled scene" in result.output
    assert {p: p.read_bytes() for p in gt.parent.iterdir()} == before
