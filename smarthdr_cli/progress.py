"""Training progress on the terminal with rich: epoch, step, losses, kept fraction, throughput, ETA.

It lives with the CLI, not in the training library: the loop speaks to any `train.reporting.Reporter`."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RichReporter:
    """A `Reporter`: one bar per epoch and a summary line when it ends; silent with `quiet`."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task: Any = None

    def note(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, soft_wrap=True)

    def epoch_start(self, epoch: int, total: int, stage: str, steps: int) -> None:
        if self.quiet:
            return
        self.progress = Progress(
            TextColumn(f"epoch {epoch}/{total} {stage}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  {task.fields[rate]} samples/s"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=steps, loss="-", rate="-")

    def step(self, step: int, losses: dict[str, float], samples_per_s: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=f"{losses['loss']:.4f}", rate=f"{samples_per_s:.1f}")

    def epoch_end(self, record: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.quiet:
            return
        parts = [f"epoch {record['epoch']} {record['stage']}", f"loss {record['loss']:.4f}", f"L_s^r {record['s_r']:.4f}"]
        if "u_r" in record:
            parts.append(f"L_u^r {record['u_r']:.4f}")
        if "kept_fraction" in record:
            parts.append(f"kept {100 * record['kept_fraction']:.1f}%")
        if "teacher_psnr_mu" in record:  # unlabeled scenes with a GT (train/loop.py _teacher_vs_student)
            parts.append(f"teacher {record['teacher_psnr_mu']:.2f} vs student {record['student_psnr_mu']:.2f} dB")
        if "k_to_r_grad_ratio" in record:  # train/student.py trunk_gradient_ratio, first step of the epoch
            parts.append(f"|dL^k|/|dL^r| {record['k_to_r_grad_ratio']:.2f}")
        if "psnr_mu" in record:
            parts.append(f"PSNR-mu {record['psnr_mu']:.2f} dB, PSNR-l {record['psnr_l']:.2f} dB")
        parts.append(f"{record['samples_per_s']:.1f} samples/s, {record['seconds']:.0f} s")
        self.console.print(", ".join(parts), markup=False, soft_wrap=True)
