"""What a run will do, said before its first step, and how long it will take, said after its first steps.

A training run is hours of compute whose length follows from numbers a user rarely multiplies out
(scenes x patch grid / batch x epochs); a dataset of a few small scenes silently turns every epoch
into one optimiser step plus a checkpoint. So the loop announces the plan (epochs per stage, steps
per epoch, patches per step) and warns about one-step epochs, and `Pace`, a `Reporter` wrapper,
measures the first steps and notes an ETA: steps left x measured seconds per step, refined after
the first pseudo-labelling pass, whose time (a whole-image teacher pass over every unlabeled
scene before each semi-supervised epoch) the steps do not show.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from smarthdr_cli.train.config import TrainConfig
from smarthdr_cli.train.reporting import Reporter

ETA_STEPS = 5  # the first ETA comes after this many steps ...
ETA_SECONDS = 30.0  # ... or this many seconds of steps, or at the end of the first epoch, whichever is first
STAGE_NAMES = {"warmup": "warm-up", "semi": "semi-supervised", "supervised": "supervised"}


@dataclass(frozen=True)
class StagePlan:
    """The epochs of one stage still to run and what each of their steps carries."""

    stage: str  # "warmup", "semi" or "supervised" (loop._stage)
    epochs: int
    steps: int  # per epoch; with `bound`, the most (the patch mask decides)
    labeled: int  # patches per step, labeled branch (global over processes)
    pseudo: int  # patches per step, pseudo-labeled branch
    bound: bool = False
    fixed_steps: bool = False  # --steps-per-epoch set the steps

    @property
    def patches(self) -> int:
        return self.labeled + self.pseudo

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps


@dataclass(frozen=True)
class Plan:
    """The rest of a run: its stages in order, the data they draw on and the teacher passes ahead."""

    stages: tuple[StagePlan, ...]
    labeled_patches: int
    pseudo_patches: int  # on the unlabeled scenes' grid, before masking (offline labels: after)
    unlabeled_scenes: int
    pseudo_passes: int  # semi-supervised epochs with a live teacher: one pass over the unlabeled scenes each

    @property
    def total_steps(self) -> int:
        return sum(s.total_steps for s in self.stages)

    @property
    def bound(self) -> bool:
        return any(s.bound for s in self.stages)


def epoch_steps(config: TrainConfig, patches: int) -> int:
    """Optimiser steps in an epoch over `patches` driving patches: one pass in batches of
    `config.batch`, at least one, unless --steps-per-epoch fixes it (`Student.learn_epoch` runs this)."""
    return config.steps_per_epoch or max(1, math.ceil(patches / config.batch))


def make_plan(
    config: TrainConfig, stages: Sequence[str], *, labeled_patches: int, pseudo_patches: int, unlabeled_scenes: int,
    live_teacher: bool, masked: bool,
) -> Plan:
    """The plan of the epochs whose stages are `stages` (in order), as `Student.learn_epoch` will
    run them: an epoch is one pass over its driving set (the pseudo-labeled patches in the semi
    stage, else the labeled ones) in batches of `config.batch`, unless --steps-per-epoch fixes it.
    `masked`: the patch mask may drop pseudo-labeled patches, so semi epochs are at most that long."""
    grouped = [(stage, len(list(run))) for stage, run in itertools.groupby(stages)]
    planned = []
    for stage, epochs in grouped:
        semi = stage == "semi"
        driver = pseudo_patches if semi else labeled_patches
        steps = epoch_steps(config, driver)
        planned.append(StagePlan(
            stage, epochs, steps, config.batch, config.batch if semi else 0,
            bound=semi and masked and config.steps_per_epoch is None, fixed_steps=config.steps_per_epoch is not None,
        ))
    passes = sum(epochs for stage, epochs in grouped if stage == "semi") if live_teacher else 0
    return Plan(tuple(planned), labeled_patches, pseudo_patches, unlabeled_scenes, passes)


def describe(plan: Plan) -> list[str]:
    """The plan as notes: one line for the run, one per stage."""
    if not plan.stages:
        return ["plan: no epochs left to run"]
    epochs = sum(s.epochs for s in plan.stages)
    lines = [f"plan: {epochs} epoch(s), {'at most ' if plan.bound else ''}{plan.total_steps} optimiser steps"]
    for stage in plan.stages:
        carried = f"{stage.labeled} labeled" + (f" + {stage.pseudo} pseudo-labeled" if stage.pseudo else "") + " patches per step"
        if stage.fixed_steps:
            source = "--steps-per-epoch"
        elif stage.stage == "semi":
            source = f"one pass over {plan.pseudo_patches} pseudo-labeled patches" + (", fewer if the patch mask drops some" if stage.bound else "")
        else:
            source = f"one pass over {plan.labeled_patches} labeled patches"
        line = f"  {STAGE_NAMES.get(stage.stage, stage.stage)}: {stage.epochs} epoch(s) x {'up to ' if stage.bound else ''}{stage.steps} step(s) ({source}), {carried}"
        if stage.stage == "semi" and plan.pseudo_passes:
            line += f"; before each epoch the teacher pseudo-labels {plan.unlabeled_scenes} unlabeled scene(s)"
        lines.append(line)
    return lines


def warnings(plan: Plan) -> list[str]:
    """Warnings about a plan that wastes the run: epochs of a single step, batches that repeat patches."""
    found = []
    for stage in plan.stages:
        if stage.fixed_steps or stage.steps != 1 or stage.epochs == 0:
            continue
        driver = plan.pseudo_patches if stage.stage == "semi" else plan.labeled_patches
        repeat = f" (only {driver} patches: a batch of {stage.labeled} repeats them)" if driver < stage.labeled else ""
        found.append(
            f"warning: every {STAGE_NAMES.get(stage.stage, stage.stage)} epoch is a single optimiser step{repeat}: its "
            f"{stage.epochs} epoch(s) are {stage.epochs} step(s), each followed by a checkpoint"
            + (" and a pseudo-labelling pass" if stage.stage == "semi" and plan.pseudo_passes else "")
            + "; give more or larger scenes, a smaller --batch, or --steps-per-epoch N"
        )
    return found


def duration(seconds: float) -> str:
    """`seconds` the way a person reads a wait: 45 s, 12 min, 3 h 05 min."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(int(round(seconds / 60)), 60)
    return f"{hours} h {minutes:02d} min"


class Pace:
    """A `Reporter` that passes everything on and adds ETA notes: once after the first steps this
    process runs, and once after the first pseudo-labelling pass has been timed."""

    def __init__(self, inner: Reporter, plan: Plan, clock: Callable[[], float] = time.perf_counter) -> None:
        self.inner = inner
        self.plan = plan
        self.clock = clock
        self.epochs_left = {s.stage: 0 for s in plan.stages}
        for s in plan.stages:
            self.epochs_left[s.stage] += s.epochs
        self.steps_of = {s.stage: s.steps for s in plan.stages}
        self.patches_of = {s.stage: s.patches for s in plan.stages}
        self.stage = ""
        self.steps = 0
        self.began = 0.0
        self.seconds_per_patch: float | None = None  # measured on the first steps
        self.told_steps = False
        self.told_pass = False

    def note(self, text: str) -> None:
        self.inner.note(text)

    def epoch_start(self, epoch: int, total: int, stage: str, steps: int) -> None:
        self.stage, self.steps, self.began = stage, steps, self.clock()
        self.inner.epoch_start(epoch, total, stage, steps)

    def step(self, step: int, losses: dict[str, float], samples_per_s: float) -> None:
        self.inner.step(step, losses, samples_per_s)
        if self.told_steps:
            return
        elapsed = self.clock() - self.began
        if step >= min(ETA_STEPS, self.steps) or elapsed >= ETA_SECONDS:
            self.told_steps = True
            per_step = elapsed / step
            self.seconds_per_patch = per_step / max(self.patches_of.get(self.stage, 1), 1)
            left = self._steps_seconds(step)
            passes = self.plan.pseudo_passes - (1 if self.stage == "semi" else 0)  # this epoch's pass is behind it
            extra = (
                f"; add a pseudo-labelling pass over {self.plan.unlabeled_scenes} unlabeled scene(s) before each of the {passes} "
                "semi-supervised epoch(s) (timed after the first)" if passes else ""
            )
            self.inner.note(
                f"ETA {'at most ' if self.plan.bound else ''}{duration(left)} (around {_clock_time(left)}): "
                f"{per_step:.2f} s per step over the first {step} step(s), steps scaled by the patches they carry{extra}; "
                "checkpoints and validation add a little"
            )

    def epoch_end(self, record: dict[str, Any]) -> None:
        stage = record.get("stage", self.stage)
        if stage in self.epochs_left:
            self.epochs_left[stage] = max(self.epochs_left[stage] - 1, 0)
        self.inner.epoch_end(record)
        if self.told_pass or "pseudo_seconds" not in record or not self.plan.pseudo_passes:
            return
        self.told_pass = True
        steps = max(int(record.get("steps", 1)), 1)
        step_seconds = max(float(record.get("seconds", 0.0)) - float(record["pseudo_seconds"]), 0.0)
        if steps and step_seconds:
            self.seconds_per_patch = step_seconds / steps / max(self.patches_of.get(stage, 1), 1)
        passes_left = self.epochs_left.get("semi", 0)
        left = self._steps_seconds(0, current=False) + passes_left * float(record["pseudo_seconds"])
        self.inner.note(
            f"ETA {'at most ' if self.plan.bound else ''}{duration(left)} (around {_clock_time(left)}): a pseudo-labelling pass took "
            f"{float(record['pseudo_seconds']):.1f} s ({passes_left} more to come), the rest of the epoch (masks and {steps} step(s)) {step_seconds:.1f} s"
        )

    def _steps_seconds(self, done: int, current: bool = True) -> float:
        """Seconds for the steps still to run: the rest of the current epoch (when `current`) and of
        every epoch after it, each step costed by the patches it carries."""
        per_patch = self.seconds_per_patch or 0.0
        total = 0.0
        for stage, epochs in self.epochs_left.items():
            later = epochs - (1 if current and stage == self.stage else 0)
            total += max(later, 0) * self.steps_of[stage] * self.patches_of[stage] * per_patch
        if current:
            total += max(self.steps - done, 0) * self.patches_of.get(self.stage, 0) * per_patch
        return total


def _clock_time(seconds: float) -> str:
    """The local time `seconds` from now, as HH:MM (with the date when it is not today)."""
    now = time.time()
    then = time.localtime(now + seconds)
    return time.strftime("%H:%M" if time.localtime(now).tm_yday == then.tm_yday else "%a %H:%M", then)
