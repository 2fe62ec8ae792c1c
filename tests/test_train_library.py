"""`train --unlabeled` on a photographer's library (brackets found as `smarthdr batch` finds them),
`--unlabeled-limit`, and the plan / ETA / one-step-epoch notes of a run."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from conftest import NoteRecorder, exif_jpeg
from smarthdr_cli.app import app
from smarthdr_cli.camera import render_bracket
from smarthdr_cli.data.layouts import discover_unlabeled, evenly_spread
from smarthdr_cli.data.synth import SynthSettings, generate
from smarthdr_cli.data.synth.fixed_scene import procedural_radiance
from smarthdr_cli.train.config import TrainConfig
from smarthdr_cli.train.loop import train
from smarthdr_cli.train.plan import Pace, describe, make_plan, warnings

START = datetime(2024, 5, 1, 12, 0, 0)
TIMES = (400, 100, 25, 6, 2)  # 1/400 s ... 1/2 s


def _stamp(minutes: int) -> str:
    return (START + timedelta(minutes=minutes)).strftime("%Y:%m:%d %H:%M:%S")


def _bracket(folder: Path, first: int, minutes: int, frames: list[np.ndarray], times=TIMES[:3]) -> list[Path]:
    return [exif_jpeg(folder / f"IMG_{first + i:04d}.jpg", frame, (1, t), _stamp(minutes)) for i, (frame, t) in enumerate(zip(frames, times))]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nested camera folders: four 3-frame brackets, a 5-frame one, a 2-frame one, a single shot, an
    empty (unreadable) file and a bracket whose short frame is all black (it fails to read)."""
    root = tmp_path_factory.mktemp("photos") / "Photos"
    radiance = procedural_radiance(64, 96, seed=7)
    three = render_bracket(radiance, [1.0, 4.0, 16.0], noise=0.002, seed=7)
    five = render_bracket(radiance, [1.0, 4.0, 16.0, 66.0, 200.0], noise=0.002, seed=8)
    _bracket(root / "2024" / "05-01", 10, 0, three)
    _bracket(root / "2024" / "05-01", 20, 1, [np.roll(f, 5, axis=1) for f in three])
    _bracket(root / "2024" / "05-02" / "trip", 30, 60, [np.roll(f, 9, axis=0) for f in three])
    _bracket(root / "2024" / "05-02" / "trip", 40, 61, [np.flip(f, axis=1).copy() for f in three])
    _bracket(root / "2024" / "05-03", 50, 120, five, TIMES)
    _bracket(root / "2024" / "05-03", 60, 125, three[:2])  # two frames: batch merges it, training cannot use it
    exif_jpeg(root / "2024" / "05-03" / "IMG_0070.jpg", three[1], (1, 100), _stamp(130))  # a single shot
    _bracket(root / "broken", 80, 200, [np.zeros_like(three[0]), three[1], three[2]])  # an all-black frame
    (root / "broken" / "IMG_0090.jpg").write_bytes(b"")  # an empty file
    return root


@pytest.fixture(scope="module")
def labeled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, SynthSettings(seed=1, height=64, width=96, split={"labeled": 2, "test": 1}))
    return root


def _dry_run_brackets(runner, library: Path, out: Path) -> set[frozenset[str]]:
    out.mkdir(exist_ok=True)
    result = runner.invoke(app, ["batch", str(library), "-o", str(out), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    planned = [json.loads(line) for line in result.stdout.splitlines()]
    return {frozenset(p["bracket"]) for p in planned if p["status"] == "planned"}


def test_library_form_finds_the_brackets_batch_dry_run_finds(runner, library: Path, tmp_path: Path) -> None:
    found = discover_unlabeled(library)
    assert found.form == "library" and "photo library" in found.notes[0]
    planned = _dry_run_brackets(runner, library, tmp_path / "out")
    assert len(planned) == 7  # the 2-frame bracket too: batch merges it
    usable = {b for b in planned if len(b) >= 3}
    assert {frozenset(str(p) for p in s.frames) for s in found.sources} == usable
    assert found.found == len(found.sources) == 6
    assert all(s.gt is None and s.optional for s in found.sources)
    assert [s.name for s in found.sources] == sorted(s.name for s in found.sources)
    assert "2024/05-03/IMG_0052" in {s.name for s in found.sources}  # the 5-frame bracket, named by its reference
    assert any("2 frames left out" in n for n in found.notes)


def test_scene_folders_and_flat_photo_folders_are_told_apart(library: Path, labeled: Path, tmp_path: Path) -> None:
    scenes = discover_unlabeled(labeled / "labeled")
    assert scenes.form == "scenes" and "scene folders (2 scenes)" in scenes.notes[0] and all(s.gt is None for s in scenes.sources)
    one = discover_unlabeled(labeled / "labeled", limit=1)
    assert [s.name for s in one.sources] == [scenes.sources[0].name] and "1 used: --unlabeled-limit 1" in one.notes[0]
    flat = tmp_path / "flat"  # one folder of photos: two brackets, not one scene of six frames
    flat.mkdir()
    for path in sorted((library / "2024" / "05-01").iterdir()):
        (flat / path.name).write_bytes(path.read_bytes())
    found = discover_unlabeled(flat)
    assert found.form == "library" and "several brackets" in found.notes[0] and len(found.sources) == 2


def test_unlabeled_limit_caps_deterministically(library: Path) -> None:
    every = [s.name for s in discover_unlabeled(library).sources]
    two = discover_unlabeled(library, limit=2)
    assert [s.name for s in two.sources] == [every[0], every[-1]] and two.found == 6
    assert any("2 used (--unlabeled-limit 2" in n for n in two.notes)
    assert [s.name for s in discover_unlabeled(library, limit=3).sources] == [s.name for s in discover_unlabeled(library, limit=3).sources]
    assert evenly_spread(10, 3) == [0, 4, 9] and evenly_spread(4, 9) == [0, 1, 2, 3] and evenly_spread(5, 1) == [0]
    for count in range(1, 12):
        for limit in range(1, 12):
            picked = evenly_spread(count, limit)
            assert len(picked) == min(count, limit) and picked == sorted(set(picked)) and picked[-1] <= count - 1


def test_training_on_a_photo_library_completes(library: Path, labeled: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        labeled=str(labeled / "labeled"), unlabeled=str(library), cache_dir=str(tmp_path / "cache"), model="tiny", perceptual=False,
        batch=4, patch=32, stride=32, steps_per_epoch=2, warmup_epochs=1, semi_epochs=1,
    )
    reporter = NoteRecorder()
    result = train(config, tmp_path / "run", reporter=reporter)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records] == ["warmup", "semi"] and result.final is not None
    text = reporter.text
    assert "read as a photo library" in text and "6 brackets of 3+ frames, all used" in text
    assert "skipped bracket broken/IMG_0081" in text and "5 of 6 usable" in text
    assert len(list((tmp_path / "run" / "pseudo").glob("*.hdr.npy"))) == 5  # the teacher labelled every readable bracket
    # the brackets went through the scene cache (five entries, one recorded failure), and a rerun decodes nothing
    cache = tmp_path / "cache"
    assert len([p for p in cache.iterdir() if (p / "meta.json").is_file()]) == 5 + 2 and len(list(cache.glob("*.failed"))) == 1
    again = NoteRecorder()  # a second run finds every bracket in the cache and the failure recorded: it decodes nothing
    train(config.updated(semi_epochs=1, warmup_epochs=0), tmp_path / "run2", reporter=again, stop_after=1)
    assert "skipped bracket broken/IMG_0081" in again.text and len(list(cache.iterdir())) == 5 + 2 + 1


def test_cli_library_run_prints_the_plan_and_eta(runner, library: Path, labeled: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, [
        "train", "--labeled", str(labeled / "labeled"), "--unlabeled", str(library), "--unlabeled-limit", "2", "--cache-dir", str(tmp_path / "cache"),
        "--model", "tiny", "--no-perceptual", "--batch", "64", "--patch", "32", "--stride", "32",
        "--warmup-epochs", "1", "--semi-epochs", "1", "-o", str(tmp_path / "run"),
    ])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "2 used (--unlabeled-limit 2" in out and "plan: 2 epoch(s)" in out
    assert "warning: every warm-up epoch is a single optimiser step" in out and "ETA" in out


def test_plan_counts_steps_and_patches() -> None:
    config = TrainConfig(labeled="x", unlabeled="y", batch=8)
    plan = make_plan(config, ["warmup"] * 3 + ["semi"] * 2, labeled_patches=20, pseudo_patches=50, unlabeled_scenes=4, live_teacher=True, masked=True)
    warm, semi = plan.stages
    assert (warm.epochs, warm.steps, warm.labeled, warm.pseudo) == (3, 3, 8, 0)
    assert (semi.epochs, semi.steps, semi.labeled, semi.pseudo, semi.bound) == (2, 7, 8, 8, True)
    assert plan.total_steps == 3 * 3 + 2 * 7 and plan.pseudo_passes == 2
    lines = describe(plan)
    assert lines[0] == "plan: 5 epoch(s), at most 23 optimiser steps"
    assert "3 epoch(s) x 3 step(s)" in lines[1] and "8 labeled patches per step" in lines[1]
    assert "up to 7 step(s)" in lines[2] and "8 labeled + 8 pseudo-labeled patches per step" in lines[2] and "4 unlabeled scene(s)" in lines[2]
    assert warnings(plan) == []
    tiny = make_plan(config.updated(batch=64), ["warmup", "semi"], labeled_patches=20, pseudo_patches=50, unlabeled_scenes=4, live_teacher=True, masked=True)
    found = warnings(tiny)
    assert len(found) == 2 and "single optimiser step (only 20 patches" in found[0] and "--steps-per-epoch" in found[0]
    fixed = make_plan(config.updated(batch=64, steps_per_epoch=1), ["warmup"], labeled_patches=20, pseudo_patches=0, unlabeled_scenes=0, live_teacher=False, masked=False)
    assert warnings(fixed) == [] and "--steps-per-epoch" in describe(fixed)[1]


def test_eta_is_steps_left_times_measured_seconds_and_counts_the_pseudo_pass() -> None:
    config = TrainConfig(labeled="x", unlabeled="y", batch=8)
    plan = make_plan(config, ["warmup"] * 2 + ["semi"] * 2, labeled_patches=80, pseudo_patches=80, unlabeled_scenes=3, live_teacher=True, masked=False)
    now = [0.0]
    recorder = NoteRecorder()
    pace = Pace(recorder, plan, clock=lambda: now[0])
    pace.epoch_start(1, 4, "warmup", 10)
    for step in range(1, 6):
        now[0] += 2.0  # 2 s per warm-up step of 8 patches
        pace.step(step, {"loss": 1.0}, 4.0)
    eta = [n for n in recorder.notes if n.startswith("ETA")]
    # 5 warm-up steps left in this epoch + 10 in the next at 2 s, 2 x 10 semi steps of 16 patches at 4 s
    assert len(eta) == 1 and eta[0].startswith("ETA 2 min") and "2.00 s per step over the first 5 step(s)" in eta[0] and "pseudo-labelling" in eta[0]
    for step in range(6, 11):
        pace.step(step, {"loss": 1.0}, 4.0)
    assert len([n for n in recorder.notes if n.startswith("ETA")]) == 1  # said once
    pace.epoch_end({"stage": "warmup", "steps": 10, "seconds": 20.0})
    pace.epoch_end({"stage": "warmup", "steps": 10, "seconds": 20.0})
    pace.epoch_end({"stage": "semi", "steps": 10, "seconds": 100.0, "pseudo_seconds": 60.0})
    refined = [n for n in recorder.notes if n.startswith("ETA")][-1]
    # one semi epoch left: 10 steps at 4 s + one 60 s pass
    assert refined.startswith("ETA 2 min"), refined
    assert "pseudo-labelling pass took 60.0 s (1 more to come)" in refined


def test_a_folder_with_neither_scenes_nor_brackets_is_one_error(tmp_path: Path) -> None:
    from smarthdr_cli.errors import InputError

    with pytest.raises(InputError, match="no such folder"):
        discover_unlabeled(tmp_path / "missing")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no photos here")
    with pytest.raises(InputError, match=r"not scene folders \(.*no scene folders.*\), and no brackets of 3\+ frames"):
        discover_unlabeled(tmp_path / "notes")


def test_gap_groups_the_library_as_batch_gap_does(runner, labeled: Path, tmp_path: Path) -> None:
    """`train --gap` reaches the library discovery: a bracket shot 5 s per frame (a slow
    hand-triggered one) is a bracket with --gap 10, three single shots at the default 2 s, and
    the grouping is `batch --dry-run --gap 10`'s."""
    root = tmp_path / "Photos"
    three = render_bracket(procedural_radiance(64, 96, seed=3), [1.0, 4.0, 16.0], noise=0.002, seed=3)
    _bracket(root / "2024" / "quick", 10, 0, three)
    for i, (frame, t) in enumerate(zip(three, TIMES[:3])):
        exif_jpeg(root / "2024" / "slow" / f"IMG_{20 + i:04d}.jpg", frame, (1, t), (START + timedelta(minutes=5, seconds=5 * i)).strftime("%Y:%m:%d %H:%M:%S"))
    out = tmp_path / "out"
    out.mkdir()
    planned = runner.invoke(app, ["batch", str(root), "-o", str(out), "--dry-run", "--json", "--gap", "10"])
    assert planned.exit_code == 0, planned.output
    wide = {frozenset(p["bracket"]) for p in map(json.loads, planned.stdout.splitlines()) if p["status"] == "planned"}
    found = discover_unlabeled(root, gap=10)
    assert {frozenset(str(p) for p in s.frames) for s in found.sources} == wide and len(wide) == 2
    assert [s.name for s in discover_unlabeled(root).sources] == ["2024/quick/IMG_0011"]  # 2 s: the slow frames are single shots
    result = runner.invoke(app, [
        "train", "--labeled", str(labeled / "labeled"), "--unlabeled", str(root), "--gap", "10", "--cache-dir", str(tmp_path / "cache"),
        "--model", "tiny", "--no-perceptual", "--batch", "64", "--patch", "32", "--stride", "32", "--warmup-epochs", "0", "--semi-epochs", "1",
        "-o", str(tmp_path / "run"),
    ])
    assert result.exit_code == 0, result.output
    assert "2 brackets of 3+ frames" in result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["gap"] == 10
    bad = runner.invoke(app, ["train", "--labeled", str(labeled / "labeled"), "--gap", "-1", "-o", str(tmp_path / "run2")])
    assert bad.exit_code == 2


def test_pseudo_label_reads_a_library_and_train_learns_from_it(runner, library: Path, labeled: Path, tiny_weights: Path, tmp_path: Path) -> None:
    """`pseudo-label --unlabeled ~/Photos`: the brackets `train --unlabeled` finds, each under its
    reference frame's path, the broken one skipped with a note; never written inside the library;
    `train --pseudo` reads the result back (a library bracket is a list of frames, not a folder)."""
    cache, out = tmp_path / "cache", tmp_path / "labels"
    common = ["--weights", str(tiny_weights), "--patch", "32", "--stride", "32", "--cache-dir", str(cache)]
    result = runner.invoke(app, ["pseudo-label", "--unlabeled", str(library), "-o", str(out), *common])
    assert result.exit_code == 0, result.output
    assert "read as a photo library" in result.output and "skipped bracket broken/IMG_0081" in result.output
    summary = json.loads((out / "summary.json").read_text())
    usable = [s.name for s in discover_unlabeled(library).sources if not s.name.startswith("broken/")]
    assert [s["name"] for s in summary["scenes"]] == usable and summary["form"] == "library"
    assert (out / "2024" / "05-03" / "IMG_0052" / "pseudo.exr").is_file()  # the 5-frame bracket, by its reference frame
    five = next(s for s in summary["scenes"] if s["name"] == "2024/05-03/IMG_0052")
    assert len(five["frames"]) == 5
    limited = runner.invoke(app, ["pseudo-label", "--unlabeled", str(library), "-o", str(tmp_path / "three"), "--unlabeled-limit", "3", "--json", "-q", *common])
    assert limited.exit_code == 0, limited.output
    chosen = [s.name for s in discover_unlabeled(library, limit=3).sources]
    assert [s["name"] for s in json.loads(limited.stdout)["scenes"]] == [n for n in chosen if not n.startswith("broken/")] and len(chosen) == 3
    before = sorted(p for p in library.rglob("*"))
    inside = runner.invoke(app, ["pseudo-label", "--unlabeled", str(library), "-o", str(library / "labels"), *common])
    assert inside.exit_code == 2 and "inside the photo library" in inside.output
    assert sorted(p for p in library.rglob("*")) == before
    config = TrainConfig(
        labeled=str(labeled / "labeled"), pseudo=str(out), cache_dir=str(cache), model="tiny", perceptual=False,
        batch=4, patch=32, stride=32, steps_per_epoch=2, warmup_epochs=0, semi_epochs=1,
    )
    trained = train(config, tmp_path / "run")
    assert trained.history[-1]["stage"] == "semi" and trained.history[-1]["kept_fraction"] == pytest.approx(summary["kept_fraction"])


def test_step_memory_is_measured_per_patch_and_leaves_the_random_streams_alone() -> None:
    import torch

    from smarthdr_cli.model.config import PRESETS
    from smarthdr_cli.model.gfhdr import GFHDR
    from smarthdr_cli.train.memory import saved_bytes_per_patch

    network = GFHDR(PRESETS["tiny"]).train()

    def loss(pred, sigma):
        return pred.abs().mean() + sigma.abs().mean()

    torch.manual_seed(3)
    small = saved_bytes_per_patch(network, loss, 32, torch.device("cpu"), True)
    after = torch.rand(4)
    torch.manual_seed(3)
    assert torch.equal(torch.rand(4), after)  # the probe did not move the training's random stream
    large = saved_bytes_per_patch(network, loss, 64, torch.device("cpu"), True)
    assert 3.5 < large / small < 4.5  # activations grow with the pixels
    assert 2 * 2**20 < small < 8 * 2**20  # tiny network, 32 px: about 2.9 kB per pixel -> 3 MiB
    network.set_checkpointing(True)
    assert saved_bytes_per_patch(network, loss, 64, torch.device("cpu"), True) < 0.7 * large


def test_train_says_what_a_step_needs_and_warns_when_it_does_not_fit(runner, labeled: Path, tmp_path: Path, monkeypatch) -> None:
    import smarthdr_cli.train.loop as loop

    args = ["train", "--labeled", str(labeled / "labeled"), "--cache-dir", str(tmp_path / "cache"), "--model", "tiny", "--no-perceptual",
            "--no-teacher", "--patch", "32", "--stride", "32", "--warmup-epochs", "1", "--semi-epochs", "0", "--steps-per-epoch", "1"]
    result = runner.invoke(app, [*args, "--batch", "4", "-o", str(tmp_path / "r4")])
    assert result.exit_code == 0, result.output
    line = next(text for text in result.output.splitlines() if text.startswith("memory:"))
    assert "a step of 4 patches of 32 px keeps about" in line and "available" in line and "warning: a step" not in result.output
    monkeypatch.setattr(loop, "available_bytes", lambda device: 20 * 2**20)  # a machine with 20 MiB free
    result = runner.invoke(app, [*args, "--batch", "16", "-o", str(tmp_path / "r16")])
    assert result.exit_code == 0, result.output
    assert "warning: a step needs at least" in result.output and "--checkpoint-activations" in result.output
    result = runner.invoke(app, [*args, "--batch", "16", "--checkpoint-activations", "-o", str(tmp_path / "r16c")])
    assert "needs more than the" in result.output and "kept between its recomputed layers" in result.output
