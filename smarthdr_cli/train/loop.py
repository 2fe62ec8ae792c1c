"""`smarthdr train`: the seed's two-stage teacher-student recipe, resumable and DDP-ready.

Stage 1 (warm-up): the student learns from labeled patches only (weak augmentation).
Stage 2 (semi-supervised): the teacher starts as a copy of the student and follows it by EMA after
every step (eq. 3). Before every epoch of this stage the teacher pseudo-labels all unlabeled scenes
and the bi-level masks (eqs. 11, 12) choose what the student may learn from; the student then
learns from labeled patches (weak augmentation) and kept pseudo-labeled patches (strong
augmentation) with eq. 9 (train/student.py).

Crash safety: a checkpoint (student, teacher, optimizer, scaler, RNG state, epoch) is written
atomically after every epoch; `--resume` continues from it, and because all sampling is a function
of (seed, epoch, position) a resumed run ends with the same weights as an uninterrupted one (on the
same device and CPU thread count: a resume elsewhere is allowed and warned about). A run killed before
its first checkpoint starts again from epoch 0 under `--resume`; the run folder's files are read as
untrusted (train/checkpoint.py).
Distributed: under `torchrun` every rank takes its slice of each global batch (train/distributed.py).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smarthdr_cli.data.layouts import ReadSettings, SceneSource, discover_scenes, discover_unlabeled, evenly_spread, read_ground_truth
from smarthdr_cli.data.patches import CachedScene, default_cache_dir, patch_index, prepare_scenes
from smarthdr_cli.errors import InputError
from smarthdr_cli.metrics import psnr_l, psnr_mu
from smarthdr_cli.model.config import PRESETS, GFHDRConfig
from smarthdr_cli.model.gfhdr import GFHDR
from smarthdr_cli.model.weights import load_weights
from smarthdr_cli.train.checkpoint import (
    check_run_dir,
    checkpoint_state,
    export_student,
    load_checkpoint,
    prepare_run_dir,
    read_history,
    restore,
    save_epoch,
    student_path,
)
from smarthdr_cli.train.config import TrainConfig
from smarthdr_cli.train.dataset import PatchSet
from smarthdr_cli.train.distributed import Distributed
from smarthdr_cli.train.ema import make_teacher
from smarthdr_cli.train.masking import MaskSettings
from smarthdr_cli.train.memory import available_bytes, describe_step_memory
from smarthdr_cli.train.plan import Pace, describe, make_plan, warnings
from smarthdr_cli.train.pseudo_folder import read_pseudo_folder
from smarthdr_cli.train.pseudo_label import PseudoLabeledScene, describe_levels, label_scenes, summary, teacher_predict
from smarthdr_cli.train.reporting import NullReporter, Reporter
from smarthdr_cli.train.student import Student, perceptual_loss


@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    final: Path | None
    best: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Scenes:
    """The decoded scenes of a run: the labeled ones as training patches."""

    labeled: PatchSet
    unlabeled: list[CachedScene]  # pseudo-labeled by the teacher before every semi-supervised epoch
    fixed_pseudo: list[PseudoLabeledScene] | None  # --pseudo: labels made once, offline (no teacher, no EMA)
    test: list[CachedScene]
    # A few unlabeled scenes whose folders hold a ground truth (position in `unlabeled`, its GT):
    # never trained on, only to score the teacher's pseudo labels against the student's predictions.
    held_back: list[tuple[int, np.ndarray]] = field(default_factory=list)


# At most this many unlabeled scenes with a GT are scored, teacher vs student, after each pseudo-label pass.
HELD_BACK_SCENES = 8
# The teacher counts as better than the student only by more than this (PSNR-mu, dB).
TEACHER_MARGIN_DB = 0.05
# The first semi epoch warns when validation PSNR-mu still rose by more than this per warm-up epoch
# (over the last CONVERGENCE_EPOCHS validations): an EMA teacher lags a student that still improves.
CONVERGENCE_DB_PER_EPOCH = 0.2
CONVERGENCE_EPOCHS = 3


@dataclass
class _Run:
    """One run: what stays fixed, and what its checkpoints carry from epoch to epoch."""

    config: TrainConfig
    run_dir: Path
    dist: Distributed
    reporter: Reporter
    scenes: _Scenes
    student: Student
    masks: MaskSettings
    teacher: nn.Module | None = None
    start: int = 0
    best: float = -math.inf
    elapsed: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_path: Path | None = None

    @property
    def total_epochs(self) -> int:
        return self.config.warmup_epochs + self.config.semi_epochs  # without a teacher: all supervised, same budget

    @property
    def ema_teacher(self) -> nn.Module | None:
        """The teacher that follows the student after every step (none with offline pseudo labels)."""
        return self.teacher if self.scenes.fixed_pseudo is None else None


def train(
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    reporter: Reporter | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or continue training) into `run_dir`; `stop_after` ends early after that many epochs (tests)."""
    run = _set_up(config, run_dir, resume, reporter)
    run.reporter = _announce_plan(run)  # the plan and its warnings now; an ETA after the first steps
    for epoch in range(run.start, run.total_epochs):
        began = time.perf_counter()
        record: dict[str, Any] = {"epoch": epoch + 1, "stage": _stage(config, epoch)}
        trusted: PatchSet | None = None  # warm-up (or supervised) stage: the student learns from labeled data only
        if record["stage"] == "semi":
            pseudo_labeled = _pseudo_labels(run, epoch)  # by the teacher: a copy of the student at first, then its EMA
            record["pseudo_seconds"] = round(time.perf_counter() - began, 2)
            if epoch == config.warmup_epochs:
                _check_convergence(run, record)  # is the student still improving? then the EMA teacher lags it
            _teacher_vs_student(run, pseudo_labeled, record)  # when some unlabeled scenes hold a GT (synthetic runs)
            trusted = _trusted_patches(run, pseudo_labeled, record)  # bi-level masks on the teacher's uncertainty
        # the student step (eq. 9) on labeled and trusted pseudo-labeled patches; the teacher follows by EMA
        record.update(run.student.learn_epoch(epoch, run.total_epochs, record["stage"], run.scenes.labeled, trusted, run.ema_teacher, run.reporter))
        _end_epoch(run, epoch, record, began)
        if stop_after is not None and epoch + 1 >= stop_after:
            return TrainResult(run_dir, epoch + 1, None, run.best_path, run.history)
    return _export_final(run)


def _set_up(config: TrainConfig, run_dir: Path, resume: bool, reporter: Reporter | None) -> _Run:
    """Every cheap check first (flags, run folder, scene layout, VGG weights), then the slow
    decoding, then the student; under `--resume`, the run's checkpoint loaded into it."""
    dist = Distributed.start(config)
    reporter = reporter if reporter is not None and dist.main else NullReporter()  # one voice: rank 0
    _check_inputs(config)
    if not resume:
        check_run_dir(run_dir)
    state = load_checkpoint(run_dir) if resume else None  # None on resume: stopped before its first checkpoint
    sources, unlabeled_gt = _discover(config, reporter)
    perceptual = perceptual_loss(config, dist.device)
    scenes = _decode(config, sources, dist, reporter)
    scenes.held_back = _held_back(scenes.unlabeled, unlabeled_gt, reporter) if dist.main else []
    network = _student_network(config, dist.device)
    if not resume and dist.main:
        prepare_run_dir(run_dir, config)  # only now: a run folder always holds a run that started
    dist.barrier()
    run = _Run(config, run_dir, dist, reporter, scenes, Student(network, config, dist, perceptual), _mask_settings(config))
    if resume:
        _resume(run, state)
    return run


def _announce_plan(run: _Run) -> Reporter:
    """Note the rest of the run's plan (epochs, steps, patches per step) and its warnings; the
    reporter returned adds an ETA after the first steps (train/plan.py)."""
    config, scenes = run.config, run.scenes
    if scenes.fixed_pseudo is not None:  # offline labels: their patch masks are known now
        pseudo = sum(int(s.mask.patch_keep.sum()) for s in scenes.fixed_pseudo)
        unlabeled = len(scenes.fixed_pseudo)
    else:
        pseudo = len(patch_index([s.shape for s in scenes.unlabeled], config.patch, config.stride))
        unlabeled = len(scenes.unlabeled)
    plan = make_plan(
        config, [_stage(config, e) for e in range(run.start, run.total_epochs)], labeled_patches=len(scenes.labeled),
        pseudo_patches=pseudo, unlabeled_scenes=unlabeled, live_teacher=scenes.fixed_pseudo is None, masked=config.patch_mask and scenes.fixed_pseudo is None,
    )
    lines = describe(plan) + warnings(plan)
    if plan.stages and run.dist.main:  # what one step keeps for its backward pass, per process
        patches = math.ceil(max(stage.patches for stage in plan.stages) / run.dist.world)
        checked = config.checkpoint_activations
        kept = run.student.saved_bytes_per_patch(checked)
        unchecked = run.student.saved_bytes_per_patch(False) if checked else None
        lines += describe_step_memory(kept, patches, config.patch, available_bytes(run.dist.device), unchecked)
    for line in lines:
        run.reporter.note(line)
    return Pace(run.reporter, plan)


def _check_inputs(config: TrainConfig) -> None:
    """What the stages need, checked before anything is read."""
    if config.labeled is None:
        raise InputError("--labeled DIR is required (scenes with ground truth)")
    if config.teacher != "none" and config.unlabeled is None and config.pseudo is None and config.semi_epochs > 0:
        raise InputError("the semi-supervised stage needs --unlabeled DIR (or --pseudo DIR, or --no-teacher)")


def _semi_live(config: TrainConfig) -> bool:
    """Whether a teacher pseudo-labels the unlabeled scenes during training (not offline, --pseudo)."""
    return config.pseudo is None and config.teacher != "none" and config.semi_epochs > 0


def _discover(config: TrainConfig, reporter: Reporter) -> tuple[dict[str, list[SceneSource]], dict[str, Path]]:
    """The scenes of each set, with their layout checked (ground truth required, or for the
    unlabeled set allowed but kept apart: its sources carry none, so training never sees it); the
    unlabeled set may also be a photo library, its brackets found as `smarthdr batch` finds them.
    Also the GT files of unlabeled scene folders that have one, for `_teacher_vs_student` only."""
    unlabeled: list[SceneSource] = []
    unlabeled_gt: dict[str, Path] = {}
    if _semi_live(config):
        found = discover_unlabeled(Path(config.unlabeled), config.unlabeled_limit, config.gap)  # type: ignore[arg-type]
        for line in found.notes:  # which form was recognised, how many found and used
            reporter.note(f"unlabeled set: {line}")
        unlabeled, unlabeled_gt = found.sources, found.ground_truth
    sources = {
        "labeled": discover_scenes(Path(config.labeled), "required"),  # type: ignore[arg-type]
        "unlabeled": unlabeled,
        "test": discover_scenes(Path(config.test), "required") if config.test else [],
    }
    return sources, unlabeled_gt


def _held_back(unlabeled: list[CachedScene], ground_truth: dict[str, Path], reporter: Reporter) -> list[tuple[int, np.ndarray]]:
    """At most HELD_BACK_SCENES unlabeled scenes with a GT, evenly spread (the same ones every
    run and every resume), with their GT read as `read_scene` would (scaled to the frames' units).
    A GT that cannot be read only costs the diagnostic, never the run."""
    candidates = [(number, scene) for number, scene in enumerate(unlabeled) if scene.name in ground_truth]
    held: list[tuple[int, np.ndarray]] = []
    for pick in evenly_spread(len(candidates), HELD_BACK_SCENES):
        number, scene = candidates[pick]
        try:
            held.append((number, read_ground_truth(ground_truth[scene.name], scene.frame(1), float(scene.exposures[1]))))
        except (InputError, OSError, ValueError) as exc:
            reporter.note(f"unlabeled scene {scene.name}: its ground truth is not used for teacher vs student ({exc})")
    if held:
        reporter.note(
            f"unlabeled set: {len(held)} scene(s) with a ground truth held back for scoring teacher vs student "
            "after each pseudo-label pass (their GT is never trained on)"
        )
    return held


def _decode(config: TrainConfig, sources: dict[str, list[SceneSource]], dist: Distributed, reporter: Reporter) -> _Scenes:
    """Every set decoded into the shared cache (the slow part), the labeled set cut into patches."""
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    labeled = _prepare(sources["labeled"], config, cache, dist, reporter, f"labeled {config.labeled}")
    fixed_pseudo = read_pseudo_folder(Path(config.pseudo), cache, config) if config.pseudo is not None else None
    unlabeled = _prepare(sources["unlabeled"], config, cache, dist, reporter, f"unlabeled {config.unlabeled}") if _semi_live(config) else []
    test = _prepare(sources["test"], config, cache, dist, reporter, f"test {config.test}", patches=False) if config.test else []
    return _Scenes(PatchSet(labeled, config.patch, config.stride), unlabeled, fixed_pseudo, test)


def _prepare(
    sources: list[SceneSource], config: TrainConfig, cache: Path, dist: Distributed, reporter: Reporter, what: str, patches: bool = True
) -> list[CachedScene]:
    """Decode (rank 0 first, into the shared cache) and open the scenes of one set."""
    settings = ReadSettings(response=config.response, align=config.align)
    if dist.main:
        reporter.note(f"{what}: {len(sources)} scenes")
        scenes = prepare_scenes(sources, cache, settings, note=reporter.note)  # library brackets that cannot be read: skipped
    dist.barrier()
    if not dist.main:  # the other ranks find every entry made (and every failure recorded)
        scenes = prepare_scenes(sources, cache, settings)
    optional = {s.name for s in sources if s.optional}
    too_small = {s.name for s in scenes if min(s.shape) < config.patch} if patches else set()
    tiny = sorted(too_small & optional)
    if tiny:  # a library's small pictures are not worth stopping for
        reporter.note(f"{what}: skipped {len(tiny)} bracket(s) smaller than the {config.patch} px training patch, e.g. {tiny[0]}")
        scenes = [s for s in scenes if s.name not in optional or s.name not in too_small]
    if len(scenes) < len(sources):
        if not scenes:
            raise InputError(f"{what}: none of its {len(sources)} brackets could be read")
        reporter.note(f"{what}: {len(scenes)} of {len(sources)} usable")
    small = [s.name for s in scenes if s.name in too_small]
    if small:
        raise InputError(f"{what}: scene(s) {', '.join(small[:5])} are smaller than the {config.patch} px training patch")
    return scenes


def model_config(config: TrainConfig) -> GFHDRConfig:
    """The network a run trains: a preset or an explicit configuration, with the judge's detach."""
    if config.model_config:
        chosen = GFHDRConfig.from_dict(dict(config.model_config))
    elif config.model in PRESETS:
        chosen = PRESETS[config.model]
    else:
        raise InputError(f"--model {config.model}: choose one of {', '.join(PRESETS)}")
    return replace(chosen, judge_detach=config.detach_judge)


def _student_network(config: TrainConfig, device: torch.device) -> GFHDR:
    """The student, initialised from the seed (or from --init-weights), in training mode."""
    torch.manual_seed(config.seed)
    student = GFHDR(model_config(config)).to(device)
    if config.init_weights:
        initial, _ = load_weights(Path(config.init_weights), device)
        if initial.config != student.config:
            raise InputError(f"{config.init_weights}: its network configuration differs from --model {config.model}")
        student.load_state_dict(initial.state_dict())
    student.train()
    student.set_checkpointing(config.checkpoint_activations)
    return student


def _mask_settings(config: TrainConfig) -> MaskSettings:
    """The bi-level masking of eqs. 11, 12: patches, then pixels, by the teacher's uncertainty."""
    return MaskSettings(
        patch=config.patch_mask, pixel=config.pixel_mask, tau_patch=config.tau_patch, tau_pixel=config.tau_pixel,
        size=config.patch, stride=config.stride, normalisation=config.normalisation,
    )


def _resume(run: _Run, state: dict[str, Any] | None) -> None:
    """Continue after the checkpoint's epoch, or from epoch 0 for a run stopped before its first."""
    note = run.reporter.note
    if state is None:
        run.history = read_history(run.run_dir, 0, note, write=run.dist.main)
        note(f"{run.run_dir}: the run stopped before its first checkpoint; starting it again from epoch 0 with its saved config")
        return
    student = run.student
    run.teacher, run.start, run.best, run.elapsed = restore(
        run.run_dir, state, student=student.network, optimizer=student.optimizer, scaler=student.scaler, device=run.dist.device,
        total_epochs=run.total_epochs, make_teacher=make_teacher, note=note,
    )
    run.history = read_history(run.run_dir, run.start, note, write=run.dist.main)
    note(f"resuming {run.run_dir} after epoch {run.start} of {run.total_epochs}")


def _stage(config: TrainConfig, epoch: int) -> str:
    """The stage of an epoch: warm-up, then semi-supervised ("supervised" for a run without a teacher)."""
    if epoch >= config.warmup_epochs and config.semi_supervised:
        return "semi"
    return "warmup" if epoch < config.warmup_epochs else "supervised"


def _pseudo_labels(run: _Run, epoch: int) -> list[PseudoLabeledScene]:
    """This epoch's pseudo labels: the teacher's on every unlabeled scene (the teacher starts as a
    copy of the student), or the offline ones of --pseudo."""
    if run.scenes.fixed_pseudo is not None:
        return run.scenes.fixed_pseudo
    if run.teacher is None:
        run.teacher = make_teacher(run.student.network)
    config, dist = run.config, run.dist
    return label_scenes(
        run.teacher, run.scenes.unlabeled, run.run_dir / "pseudo", run.masks, scorer=config.scorer, gamma=config.gamma,
        device=dist.device, seed=config.seed, epoch=epoch, rank=dist.rank, world=dist.world, barrier=dist.barrier,
    )


def _trusted_patches(run: _Run, pseudo_labeled: list[PseudoLabeledScene], record: dict[str, Any]) -> PatchSet | None:
    """The pseudo-labeled patches the masks keep (None when they keep none); their share goes in `record`."""
    info = summary(pseudo_labeled, run.masks)
    record["kept_fraction"] = info["kept_fraction"]
    record["patches_kept"] = info["patches_kept"]
    levels = {k: v for k, v in info.items() if k.startswith(("patch_", "pixel_"))}  # the keys of `level_diagnostics`
    record.update(levels)  # per level: kept fraction, normalised-score p50/p90/p99 (is tau inert?)
    run.reporter.note(
        f"epoch {record['epoch']}: masks{f' ({run.masks.normalisation})' if run.scenes.fixed_pseudo is None else ''} kept {100 * float(info['kept_fraction']):.1f}% of pseudo-labeled pixels; "
        + describe_levels(levels)
    )
    trusted = PatchSet(
        [s.scene for s in pseudo_labeled],
        run.config.patch, run.config.stride,
        pseudo=[s.labels for s in pseudo_labeled], keep=[s.mask.patch_keep for s in pseudo_labeled],
    )
    if len(trusted) == 0:
        run.reporter.note(f"epoch {record['epoch']}: every pseudo-labeled patch was masked out; this epoch learns from labeled data only")
        return None
    return trusted


def _teacher_vs_student(run: _Run, pseudo_labeled: list[PseudoLabeledScene], record: dict[str, Any]) -> None:
    """Score this pass's pseudo labels (the teacher's) and the student's own predictions against
    the GT of the held-back unlabeled scenes (PSNR-mu); when the teacher is no better than the
    student, learning from its labels cannot help (issue 15). Rank 0 only; draws no random numbers
    (the student is run in eval mode, unaugmented), so training and `--resume` are unchanged."""
    held = run.scenes.held_back
    if not held or not run.dist.main or run.scenes.fixed_pseudo is not None:
        return
    config, network = run.config, run.student.network
    was_training = network.training
    network.eval()
    teacher_scores, student_scores = [], []
    try:
        for number, gt in held:
            labeled = pseudo_labeled[number]
            teacher_scores.append(psnr_mu(np.asarray(labeled.labels.hdr, dtype=np.float32), gt, config.mu))
            hdr, _ = teacher_predict(network, labeled.scene, gamma=config.gamma, device=run.dist.device)
            student_scores.append(psnr_mu(hdr, gt, config.mu))
    finally:
        network.train(was_training)
    teacher, student = float(np.mean(teacher_scores)), float(np.mean(student_scores))
    record.update(
        teacher_psnr_mu=round(teacher, 4), student_psnr_mu=round(student, 4),
        teacher_minus_student_psnr_mu=round(teacher - student, 4), teacher_student_scenes=len(held),
    )
    if teacher - student > TEACHER_MARGIN_DB:
        verdict = f"the teacher is {teacher - student:.2f} dB better: its pseudo labels can teach the student"
    else:
        verdict = "the teacher is no better; the semi stage cannot help yet"
        if record["epoch"] == run.config.warmup_epochs + 1:
            verdict += " (the first pass: the teacher is still a copy of the student)"
    run.reporter.note(
        f"epoch {record['epoch']}: teacher {teacher:.1f} dB vs student {student:.1f} dB on {len(held)} unlabeled scene(s) with GT: {verdict}"
    )


def _check_convergence(run: _Run, record: dict[str, Any]) -> None:
    """At the first semi epoch: warn when validation PSNR-mu was still rising during the last
    warm-up epochs. The EMA teacher (alpha near 1) then lags a student that still improves, and
    its pseudo labels pull the student back (issue 15 measured teacher 23.99 vs student 24.18 dB,
    and a cosine of -0.99 between the pseudo-label and the true gradient with alpha 0.999)."""
    if run.scenes.fixed_pseudo is not None:
        return  # offline labels: no EMA teacher to lag
    note = run.reporter.note
    if not run.scenes.test:
        note("semi stage starts: without --test the warm-up's convergence cannot be checked; the EMA teacher only helps a converged student")
        return
    points = [(int(r["epoch"]), float(r["psnr_mu"])) for r in run.history if r.get("stage") == "warmup" and "psnr_mu" in r]
    points = points[-CONVERGENCE_EPOCHS:]
    if len(points) < 2:
        note(
            f"semi stage starts: {len(points)} warm-up validation(s), too few to check that the student converged "
            "(validate every warm-up epoch, or more --warmup-epochs)"
        )
        return
    slope = (points[-1][1] - points[0][1]) / max(points[-1][0] - points[0][0], 1)
    record["warmup_psnr_mu_slope"] = round(slope, 4)
    if slope > CONVERGENCE_DB_PER_EPOCH:
        note(
            f"warning: the semi stage starts while the student still improves (validation PSNR-mu rose {slope:.2f} dB per epoch "
            f"over warm-up epochs {points[0][0]}-{points[-1][0]}); the EMA teacher (alpha {run.config.ema_alpha}) will lag it and its "
            "pseudo labels can pull the student back; give more --warmup-epochs"
        )


def validate(model: nn.Module, scenes: list[CachedScene], config: TrainConfig, device: torch.device) -> dict[str, float]:
    """Mean PSNR-mu and PSNR-l of the student on the full test scenes."""
    was_training = model.training
    model.eval()
    mu_scores, l_scores = [], []
    for scene in scenes:
        hdr, _ = teacher_predict(model, scene, gamma=config.gamma, device=device)
        gt = np.asarray(scene.gt, dtype=np.float32)
        mu_scores.append(psnr_mu(hdr, gt, config.mu))
        l_scores.append(psnr_l(hdr, gt))
    model.train(was_training)
    return {"psnr_mu": float(np.mean(mu_scores)), "psnr_l": float(np.mean(l_scores))}


def _end_epoch(run: _Run, epoch: int, record: dict[str, Any], began: float) -> None:
    """Validation (when due), then on rank 0 the best student, metrics.jsonl and the checkpoint."""
    config, dist, student = run.config, run.dist, run.student
    if dist.main and run.scenes.test and ((epoch + 1) % max(config.validate_every, 1) == 0 or epoch + 1 == run.total_epochs):
        record.update(validate(student.network, run.scenes.test, config, dist.device))
    seconds = time.perf_counter() - began
    run.elapsed += seconds
    record["seconds"] = round(seconds, 2)
    score = record.get("psnr_mu", -record.get("s_r", math.inf))
    run.history.append(record)
    if dist.main:
        if score > run.best:
            run.best = score
            run.best_path = export_student(run.run_dir, "best", student.network, config, epoch + 1, run.elapsed, record)
        state = checkpoint_state(
            epoch=epoch + 1, stage=record["stage"], student=student.network, teacher=run.teacher, optimizer=student.optimizer,
            scaler=student.scaler, device=dist.device, best=run.best, elapsed=run.elapsed, config=config,
        )
        save_epoch(run.run_dir, record, state)
    else:
        run.best = max(run.best, score)
    run.reporter.epoch_end(record)
    dist.barrier()


def _export_final(run: _Run) -> TrainResult:
    """The last student (rank 0 writes it) and the run's result."""
    final = None
    best_path = run.best_path
    if run.dist.main:
        last = run.history[-1] if run.history else None
        final = export_student(run.run_dir, "final", run.student.network, run.config, run.total_epochs, run.elapsed, last)
        best_path = student_path(run.run_dir, "best")
    run.dist.barrier()
    return TrainResult(run.run_dir, run.total_epochs, final, best_path if best_path and best_path.exists() else None, run.history)
