"""`train --resume` on run folders that a kill, a full disk or a hand edit left damaged (issue 14):
each is recovered (a torn last metrics line, a run killed before its first checkpoint) or refused
with one exit-2 line that says the way out, never an internal error."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import tiny_config

from smarthdr_cli.app import app
from smarthdr_cli.data.synth import SynthSettings, generate
from smarthdr_cli.errors import OutputError
from smarthdr_cli.train.checkpoint import check_run_dir
from smarthdr_cli.train.loop import train

NEW_RUN = "start a new run with -o"


@pytest.fixture(autouse=True)
def keep_thread_count():
    """train() sets torch's thread count for the whole process: give the next test its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2-epoch supervised tiny run stopped after its first checkpoint, and the same run uninterrupted."""
    root = tmp_path_factory.mktemp("resume")
    generate(root / "data", SynthSettings(seed=1, height=64, width=96, split={"labeled": 2}))
    config = tiny_config(root / "data", root, teacher="none", warmup_epochs=2, semi_epochs=0, threads=1)
    threads = torch.get_num_threads()
    try:
        train(config, root / "stopped", stop_after=1)
        train(config, root / "whole")
    finally:
        torch.set_num_threads(threads)
    return {"stopped": root / "stopped", "whole": root / "whole"}


@pytest.fixture
def run(runs: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the stopped run (checkpoint after epoch 1 of 2) for one test to damage."""
    return Path(shutil.copytree(runs["stopped"], tmp_path / "run"))


def resume(runner, run: Path, *flags: str):
    return runner.invoke(app, ["train", "--resume", str(run), *flags])


def assert_one_line_error(result, *fragments: str) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and "internal error" not in errors[0] and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def epochs_of(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_killed_before_its_first_checkpoint_starts_again_with_resume(runner, runs, run: Path) -> None:
    """What a kill during the first checkpoint write leaves: config.json, the epoch's metrics line
    and best student, a stale temporary, no checkpoint.pt. --resume starts it again from epoch 0."""
    (run / "checkpoint.pt").unlink()
    (run / ".checkpoint.pt.999999-abcdefgh.partial.pt").write_bytes(b"PK\x03\x04 half a zip")
    again = runner.invoke(app, ["train", "-o", str(run), "--labeled", "x", "--no-teacher"])
    assert_one_line_error(again, f"--resume {run}", "stopped before its first checkpoint")
    result = resume(runner, run)
    assert result.exit_code == 0, result.output
    assert "stopped before its first checkpoint; starting it again from epoch 0" in result.stderr
    assert epochs_of(run) == [1, 2]
    a, b = load_file(str(runs["whole"] / "student-final.safetensors")), load_file(str(run / "student-final.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)  # as if never killed


def test_new_run_may_use_a_folder_holding_only_a_killed_writes_temporaries(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".config.json.999999-abcdefgh.partial.json").write_text('{"lr": ')
    check_run_dir(folder)  # a kill before config.json was in place: the folder holds no run
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="already holds files"):
        check_run_dir(folder)


def test_missing_checkpoint_after_finished_epochs_is_refused(runner, run: Path) -> None:
    (run / "checkpoint.pt").unlink()
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps({"epoch": 2, "stage": "warmup"}) + "\n")
    assert_one_line_error(resume(runner, run), "no checkpoint.pt, yet metrics.jsonl records 2 epochs", "put the run's checkpoint.pt back", NEW_RUN)


def test_empty_checkpoint_is_bad_input(runner, run: Path) -> None:
    (run / "checkpoint.pt").write_bytes(b"")
    assert_one_line_error(resume(runner, run), "checkpoint.pt: the checkpoint is empty", NEW_RUN)


def test_truncated_checkpoint_is_bad_input(runner, run: Path) -> None:
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    assert_one_line_error(resume(runner, run), "checkpoint.pt: unreadable checkpoint", NEW_RUN)


@pytest.mark.parametrize("part", ["student", "optimizer"])
def test_checkpoint_of_other_shapes_is_bad_input(runner, run: Path, part: str) -> None:
    path = run / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    if part == "student":
        state["student"]["conv_f1.weight"] = torch.zeros(4, 6, 3, 3)
    else:
        state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(5)
    torch.save(state, path)
    line = assert_one_line_error(resume(runner, run), "checkpoint.pt: does not fit the run's config.json", NEW_RUN)
    assert ("conv_f1.weight is 4x6x3x3 in the checkpoint, 8x6x3x3" in line) if part == "student" else ("exp_avg" in line)


@pytest.mark.parametrize(
    "damage",
    [
        lambda saved: '{"labeled": ',  # torn
        lambda saved: "[1, 2]",
        lambda saved: "5",
        lambda saved: json.dumps({**saved, "batch": "four"}),
        lambda saved: json.dumps({**saved, "patch": 32.5}),
        lambda saved: json.dumps({**saved, "threads": "2"}),
        lambda saved: json.dumps({**saved, "labeled": 5}),
        lambda saved: json.dumps({**saved, "threads": -1}),
    ],
    ids=["not-json", "list", "number", "batch-text", "patch-float", "threads-text", "labeled-number", "threads-negative"],
)
def test_damaged_config_json_is_bad_input(runner, run: Path, damage) -> None:
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(damage(saved))
    assert_one_line_error(resume(runner, run), f"{run / 'config.json'}: ", NEW_RUN)


def test_torn_last_metrics_line_is_dropped_and_the_run_continues(runner, runs, run: Path) -> None:
    """A kill while epoch 2's line was written (before its checkpoint): the line is dropped, epoch 2 rerun."""
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"epoch": 2, "stage": "warmup", "s_r": 0.1')
    result = resume(runner, run)
    assert result.exit_code == 0, result.output
    assert "metrics.jsonl: dropped its torn last line" in result.stderr
    assert epochs_of(run) == [1, 2]  # every line parses, each epoch once
    a, b = load_file(str(runs["whole"] / "student-final.safetensors")), load_file(str(run / "student-final.safetensors"))
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_torn_metrics_line_before_the_last_is_bad_input(runner, run: Path) -> None:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text('{"epoch": 1, "sta\n' + "\n".join(lines) + "\n")
    assert_one_line_error(resume(runner, run), "metrics.jsonl: line 1 is not an epoch's record", NEW_RUN)


def test_resume_with_another_thread_count_warns_that_it_is_not_bit_identical(runner, run: Path, tmp_path: Path) -> None:
    same = Path(shutil.copytree(run, tmp_path / "same"))
    assert torch.load(run / "checkpoint.pt", weights_only=True)["threads"] == 1  # what the run used, recorded
    other = resume(runner, run, "--threads", "2")
    assert other.exit_code == 0, other.output
    assert "trained with 1 CPU thread and resumes with 2" in other.stderr and "not be bit-identical" in other.stderr
    kept = resume(runner, same, "--threads", "1")
    assert kept.exit_code == 0, kept.output
    assert "bit-identical" not in kept.stderr
