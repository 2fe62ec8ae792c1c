"""Diagnostics that say whether the semi-supervised stage can help (issue 15, item 1): teacher vs
student PSNR-mu on unlabeled scenes that happen to hold a ground truth (which is never trained on),
and the warning when the semi stage starts before the student has converged."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from conftest import NoteRecorder
from smarthdr_cli.data.layouts import discover_unlabeled
from smarthdr_cli.data.synth import SynthSettings, generate
from smarthdr_cli.train import loop
from smarthdr_cli.train.config import TrainConfig
from smarthdr_cli.train.loop import train

TEACHER_KEYS = ("teacher_psnr_mu", "student_psnr_mu", "teacher_minus_student_psnr_mu", "teacher_student_scenes")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """labeled/, test/, unlabeled/ (no GT, as synth writes it), and the same three extra scenes
    twice: with_gt/ (HDRImg.hdr kept) and without_gt/ (removed)."""
    root = tmp_path_factory.mktemp("semi") / "data"
    generate(root, SynthSettings(seed=1, height=64, width=96, split={"labeled": 2, "unlabeled": 3, "test": 1}))
    extra = root.parent / "extra"
    generate(extra, SynthSettings(seed=2, height=64, width=96, split={"labeled": 3}))
    shutil.copytree(extra / "labeled", root / "with_gt")
    shutil.copytree(extra / "labeled", root / "without_gt")
    for gt in (root / "without_gt").glob("*/HDRImg.hdr"):
        gt.unlink()
    return root


def config(data: Path, tmp_path: Path, unlabeled: str, **changes: Any) -> TrainConfig:
    settings: dict[str, Any] = dict(
        labeled=str(data / "labeled"), unlabeled=str(data / unlabeled), cache_dir=str(tmp_path / "cache"),
        model="tiny", perceptual=False, batch=4, patch=32, stride=16, steps_per_epoch=2, warmup_epochs=1, semi_epochs=1,
    )
    settings.update(changes)
    return TrainConfig(**settings)


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_unlabeled_ground_truth_is_handed_back_apart(data: Path) -> None:
    found = discover_unlabeled(data / "with_gt")
    assert all(s.gt is None for s in found.sources)  # training can never read it
    assert sorted(found.ground_truth) == [s.name for s in found.sources]
    assert all(p.name == "HDRImg.hdr" for p in found.ground_truth.values())
    assert discover_unlabeled(data / "without_gt").ground_truth == {}
    assert discover_unlabeled(data / "with_gt", limit=1).ground_truth.keys() == {s.name for s in discover_unlabeled(data / "with_gt", limit=1).sources}


def test_teacher_and_student_are_scored_when_unlabeled_scenes_have_gt(data: Path, tmp_path: Path) -> None:
    notes = NoteRecorder()
    train(config(data, tmp_path, "with_gt"), tmp_path / "run", reporter=notes)
    warmup, semi = records(tmp_path / "run")
    assert all(key not in warmup for key in TEACHER_KEYS)
    for key in TEACHER_KEYS[:3]:
        assert isinstance(semi[key], float) and semi[key] == semi[key], key
    assert semi["teacher_student_scenes"] == 3
    assert abs(semi["teacher_minus_student_psnr_mu"] - (semi["teacher_psnr_mu"] - semi["student_psnr_mu"])) < 1e-3
    assert "on 3 unlabeled scene(s) with GT" in notes.text
    assert "never trained on" in notes.text


def test_no_teacher_keys_without_gt(data: Path, tmp_path: Path) -> None:
    notes = NoteRecorder()
    train(config(data, tmp_path, "unlabeled"), tmp_path / "run", reporter=notes)
    assert all(key not in record for record in records(tmp_path / "run") for key in TEACHER_KEYS)
    assert "unlabeled scene(s) with GT" not in notes.text


def test_unlabeled_ground_truth_does_not_change_training(data: Path, tmp_path: Path) -> None:
    with_gt = train(config(data, tmp_path, "with_gt"), tmp_path / "with")
    without = train(config(data, tmp_path, "without_gt"), tmp_path / "without")
    assert "teacher_psnr_mu" in records(tmp_path / "with")[-1] and "teacher_psnr_mu" not in records(tmp_path / "without")[-1]
    a, b = load_file(str(with_gt.final)), load_file(str(without.final))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key in ("s_r", "s_k", "u_r", "u_k", "kept_fraction"):
        assert records(tmp_path / "with")[-1][key] == records(tmp_path / "without")[-1][key], key


def _fake_validation(monkeypatch: pytest.MonkeyPatch, values: list[float]) -> None:
    scores = iter(values)
    monkeypatch.setattr(loop, "validate", lambda *args, **kwargs: {"psnr_mu": next(scores), "psnr_l": 30.0})


def test_warning_when_the_student_still_improves(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_validation(monkeypatch, [20.0, 21.0, 22.0, 22.5])
    notes = NoteRecorder()
    train(config(data, tmp_path, "unlabeled", test=str(data / "test"), warmup_epochs=3), tmp_path / "run", reporter=notes)
    assert "the semi stage starts while the student still improves" in notes.text
    assert "--warmup-epochs" in notes.text
    semi = records(tmp_path / "run")[3]
    assert semi["stage"] == "semi" and semi["warmup_psnr_mu_slope"] == pytest.approx(1.0)


def test_no_warning_when_validation_is_flat(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_validation(monkeypatch, [20.0, 20.1, 20.15, 20.2])
    notes = NoteRecorder()
    train(config(data, tmp_path, "unlabeled", test=str(data / "test"), warmup_epochs=3), tmp_path / "run", reporter=notes)
    assert "still improves" not in notes.text
    assert records(tmp_path / "run")[3]["warmup_psnr_mu_slope"] == pytest.approx(0.075)


def test_convergence_cannot_be_checked_without_test(data: Path, tmp_path: Path) -> None:
    notes = NoteRecorder()
    train(config(data, tmp_path, "unlabeled"), tmp_path / "run", reporter=notes)
    assert "without --test the warm-up's convergence cannot be checked" in notes.text
    assert all("warmup_psnr_mu_slope" not in r for r in records(tmp_path / "run"))


def test_resume_stays_exact_with_unlabeled_gt(data: Path, tmp_path: Path) -> None:
    settings = config(data, tmp_path, "with_gt", semi_epochs=2)
    whole = train(settings, tmp_path / "whole")
    train(settings, tmp_path / "part", stop_after=2)  # warm-up and the first semi epoch
    resumed = train(settings, tmp_path / "part", resume=True)
    a, b = load_file(str(whole.final)), load_file(str(resumed.final))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r.get("teacher_psnr_mu") for r in records(tmp_path / "whole")] == [r.get("teacher_psnr_mu") for r in records(tmp_path / "part")]


def test_the_gradient_ratio_is_recorded_and_changes_no_weight(data: Path, tmp_path: Path, monkeypatch) -> None:
    """|dL^k/d trunk| / |dL^r/d trunk| is measured on each epoch's first step (both stages), is
    0 with --k-weight 0, absent without L^k; measuring it leaves training bit-identical."""
    from smarthdr_cli.train import student

    train(config(data, tmp_path / "a", "unlabeled"), tmp_path / "a" / "run")
    measured = records(tmp_path / "a" / "run")
    assert all(r["k_to_r_grad_ratio"] > 0 for r in measured), measured
    train(config(data, tmp_path / "b", "unlabeled", k_weight=0.0), tmp_path / "b" / "run")
    assert all(r["k_to_r_grad_ratio"] == 0 for r in records(tmp_path / "b" / "run"))
    train(config(data, tmp_path / "c", "unlabeled", uncertainty_loss=False), tmp_path / "c" / "run")
    assert all("k_to_r_grad_ratio" not in r for r in records(tmp_path / "c" / "run"))

    monkeypatch.setattr(student, "trunk_gradient_ratio", lambda *args: None)
    train(config(data, tmp_path / "d", "unlabeled"), tmp_path / "d" / "run")
    plain = load_file(str(tmp_path / "d" / "run" / "student-final.safetensors"))
    with_ratio = load_file(str(tmp_path / "a" / "run" / "student-final.safetensors"))
    assert plain.keys() == with_ratio.keys()
    assert all(torch.equal(plain[k], with_ratio[k]) for k in plain)
