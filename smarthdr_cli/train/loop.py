"""`smarthdr train`: the seed's two-stage teacher-student recipe, resumable and DDP-ready.

Stage 1 (warm-up): the student learns from labeled patches only (weak augmentation).
Stage 2 (semi-supervised): the teacher starts as a copy of the student and follows it by EMA after
every step (eq. 3). Before every epoch of this stage the teacher pseudo-labels all unlabeled scenes
and the bi-level masks (eqs. 11, 12) choose what the student may learn from; the student then
learns from labeled patches (weak augmentation) and kept pseudo-labeled patches (strong
augmentation) with eq. 9: L = L_s^r + lambda_v L_s^v + L_s^k + lambda_u (L_u^r + lambda_v L_u^v + L_u^k).

Crash safety: a checkpoint (student, teacher, optimizer, scaler, RNG state, epoch) is written
atomically after every epoch; `--resume` continues from it, and because all sampling is a function
of (seed, epoch, position) a resumed run ends with the same weights as an uninterrupted one (on the
same device and CPU thread count: a resume elsewhere is allowed and warned about). A run killed before
its first checkpoint starts again from epoch 0 under `--resume`; the run folder's files are read as
untrusted (train/checkpoint.py).
Distributed: under `torchrun` every rank takes its slice of each global batch (gloo on CPU, NCCL
on GPUs); gradients are averaged by DDP and only rank 0 writes the run folder's files.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smarthdr_cli.data.layouts import ReadSettings, SceneSource, discover_scenes
from smarthdr_cli.data.patches import CachedScene, default_cache_dir, prepare_scenes
from smarthdr_cli.errors import InputError
from smarthdr_cli.io.output import atomic_output
from smarthdr_cli.metrics import psnr_l, psnr_mu
from smarthdr_cli.model.config import PRESETS, GFHDRConfig
from smarthdr_cli.model.gfhdr import GFHDR
from smarthdr_cli.model.weights import load_weights, save_weights
from smarthdr_cli.preprocess import network_input
from smarthdr_cli.tonemap import mu_law
from smarthdr_cli.train import losses
from smarthdr_cli.train.checkpoint import (  # noqa: F401 - CHECKPOINT, check_run_dir, resumed_config: the run folder's API, used from here
    CHECKPOINT, METRICS, check_run_dir, checkpoint_state, load_checkpoint, prepare_run_dir, read_history, restore, resumed_config,
)
from smarthdr_cli.train.config import TrainConfig
from smarthdr_cli.train.dataset import LABELED, UNLABELED, PatchSet, batches
from smarthdr_cli.train.ema import ema_update, make_teacher
from smarthdr_cli.train.masking import MaskSettings
from smarthdr_cli.train.pseudo_label import label_scenes, summary, teacher_predict
from smarthdr_cli.train.pseudo_folder import read_pseudo_folder


class Reporter:
    """What the loop tells the outside; the CLI draws it with rich, tests keep it silent."""

    def note(self, text: str) -> None: ...

    def epoch_start(self, epoch: int, total: int, stage: str, steps: int) -> None: ...

    def step(self, step: int, losses: dict[str, float], samples_per_s: float) -> None: ...

    def epoch_end(self, record: dict[str, Any]) -> None: ...


@dataclass
class Distributed:
    """This process's place in a `torchrun` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # where collectives run: NCCL reduces only CUDA tensors

    @classmethod
    def from_env(cls) -> "Distributed":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of each value (logged losses describe the global batch)."""
        if self.world == 1:
            return values
        stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(stacked)
        return dict(zip(values, (stacked / self.world).tolist()))

    def share_of_kept(self, mask: torch.Tensor) -> torch.Tensor | float:
        """Weight that turns this rank's masked mean into its part of the global masked mean.

        DDP averages gradients over ranks; ranks keep different numbers of pseudo-labeled pixels,
        so an unweighted average of per-rank means would not be the mean over the global batch.
        """
        if self.world == 1:
            return 1.0
        kept = mask.sum(dtype=torch.float64)
        total = kept.detach().clone()
        torch.distributed.all_reduce(total)
        return (kept * self.world / total.clamp_min(1e-12)).float()


@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    final: Path | None
    best: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)


def _device(config: TrainConfig, dist: Distributed) -> torch.device:
    if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError(f"--device {config.device}: torch sees no GPU")
    return torch.device(config.device if ":" in config.device else f"cuda:{dist.local_rank}")


def model_config(config: TrainConfig) -> GFHDRConfig:
    if config.model_config:
        chosen = GFHDRConfig.from_dict(dict(config.model_config))
    elif config.model in PRESETS:
        chosen = PRESETS[config.model]
    else:
        raise InputError(f"--model {config.model}: choose one of {', '.join(PRESETS)}")
    return replace(chosen, judge_detach=config.detach_judge)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _batch_inputs(batch: dict[str, torch.Tensor], gamma: float, device: torch.device) -> list[torch.Tensor]:
    frames = batch["frames"].to(device, non_blocking=True)
    exposures = batch["exposures"].to(device)
    return [network_input(frames[:, i], exposures[:, i].view(-1, 1, 1, 1), gamma, axis=1) for i in range(3)]


class Objective:
    """Eq. 9 on one branch: mu-law L1 + lambda_v perceptual + uncertainty loss, masked where asked."""

    def __init__(self, config: TrainConfig, perceptual: losses.PerceptualLoss | None) -> None:
        self.config = config
        self.perceptual = perceptual

    def __call__(self, pred: torch.Tensor, sigma: torch.Tensor | None, target: torch.Tensor, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        c = self.config
        parts = {"r": losses.mu_l1(pred, target, mask, c.mu)}
        if self.perceptual is not None:
            parts["v"] = self.perceptual(mu_law(pred, c.mu), mu_law(target, c.mu), mask)
        if sigma is not None:
            parts["k"] = losses.uncertainty_loss(pred, target, sigma, mask, c.k_eps, c.k_domain, c.mu)
        parts["total"] = parts["r"] + c.lambda_v * parts.get("v", 0.0) + parts.get("k", 0.0)
        return parts


def _perceptual(config: TrainConfig, device: torch.device) -> losses.PerceptualLoss | None:
    if not config.perceptual or config.lambda_v == 0:
        return None
    vgg = losses.load_vgg16(Path(config.vgg_weights) if config.vgg_weights else None)
    return losses.PerceptualLoss(vgg).to(device)


def _prepare(
    sources: list[SceneSource], config: TrainConfig, cache: Path, dist: Distributed, reporter: Reporter, what: str, patches: bool = True
) -> list[CachedScene]:
    """Decode (rank 0 first, into the shared cache) and open the scenes of one set."""
    settings = ReadSettings(response=config.response, align=config.align)
    if dist.main:
        reporter.note(f"{what}: {len(sources)} scenes")
        scenes = prepare_scenes(sources, cache, settings)
    dist.barrier()
    if not dist.main:  # the other ranks find every entry made
        scenes = prepare_scenes(sources, cache, settings)
    small = [s.name for s in scenes if min(s.shape) < config.patch] if patches else []
    if small:
        raise InputError(f"{what}: scene(s) {', '.join(small[:5])} are smaller than the {config.patch} px training patch")
    return scenes


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


def _card(config: TrainConfig, epoch: int, seconds: float, record: dict[str, Any] | None, which: str) -> dict[str, Any]:
    return {
        "recipe": "semi-supervised GFHDR, bi-level uncertain area masking (AAAI 2026)" if config.semi_supervised else "supervised GFHDR",
        "which": which,
        "epochs": epoch,
        "training_seconds": round(seconds, 1),
        "commit": _git_commit(),
        "training": {k: v for k, v in config.to_dict().items() if k != "extra"},
        "last_epoch": record,
    }


def train(
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    reporter: Reporter | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or continue training) into `run_dir`; `stop_after` ends early after that many epochs (tests)."""
    dist = Distributed.from_env()
    reporter = reporter if reporter is not None and dist.main else Reporter()  # one voice: rank 0
    device = dist.device = _device(config, dist)
    if dist.world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.world > 1 and config.batch % dist.world:
        raise InputError(f"--batch {config.batch} must be divisible by the {dist.world} processes")
    if config.threads:
        torch.set_num_threads(config.threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if config.labeled is None:
        raise InputError("--labeled DIR is required (scenes with ground truth)")
    if config.teacher != "none" and config.unlabeled is None and config.pseudo is None and config.semi_epochs > 0:
        raise InputError("the semi-supervised stage needs --unlabeled DIR (or --pseudo DIR, or --no-teacher)")
    # Every cheap check first (folders, scene layout, VGG weights), then the slow decoding.
    if not resume:
        check_run_dir(run_dir)
    state = load_checkpoint(run_dir) if resume else None  # None on resume: stopped before its first checkpoint
    labeled_sources = discover_scenes(Path(config.labeled), "required")
    semi_live = config.pseudo is None and config.teacher != "none" and config.semi_epochs > 0
    unlabeled_sources = discover_scenes(Path(config.unlabeled), "forbidden") if semi_live else []  # type: ignore[arg-type]
    test_sources = discover_scenes(Path(config.test), "required") if config.test else []
    perceptual = _perceptual(config, device)
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    labeled = _prepare(labeled_sources, config, cache, dist, reporter, f"labeled {config.labeled}")
    fixed_pseudo = read_pseudo_folder(Path(config.pseudo), cache, config) if config.pseudo is not None else None
    unlabeled_scenes = _prepare(unlabeled_sources, config, cache, dist, reporter, f"unlabeled {config.unlabeled}") if semi_live else []
    test_scenes = _prepare(test_sources, config, cache, dist, reporter, f"test {config.test}", patches=False) if config.test else []

    mask_settings = MaskSettings(
        patch=config.patch_mask, pixel=config.pixel_mask, tau_patch=config.tau_patch, tau_pixel=config.tau_pixel,
        size=config.patch, stride=config.stride, normalisation=config.normalisation,
    )
    torch.manual_seed(config.seed)
    student = GFHDR(model_config(config)).to(device)
    if config.init_weights:
        initial, _ = load_weights(Path(config.init_weights), device)
        if initial.config != student.config:
            raise InputError(f"{config.init_weights}: its network configuration differs from --model {config.model}")
        student.load_state_dict(initial.state_dict())
    student.train()
    student.set_checkpointing(config.checkpoint_activations)
    if not resume and dist.main:
        prepare_run_dir(run_dir, config)  # only now: a run folder always holds a run that started
    dist.barrier()
    use_k = config.uncertainty_loss
    wrapped: nn.Module = student
    if dist.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            student, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=not use_k
        )
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr, betas=config.betas, eps=config.adam_eps)
    amp_dtype = None
    if device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    objective = Objective(config, perceptual)
    total_epochs = config.warmup_epochs + config.semi_epochs  # without a teacher: all supervised, same budget

    teacher: nn.Module | None = None
    start, best, elapsed = 0, -math.inf, 0.0
    history: list[dict[str, Any]] = []
    if resume and state is None:
        history = read_history(run_dir, 0, reporter.note, write=dist.main)
        reporter.note(f"{run_dir}: the run stopped before its first checkpoint; starting it again from epoch 0 with its saved config")
    elif resume:
        teacher, start, best, elapsed = restore(
            run_dir, state, student=student, optimizer=optimizer, scaler=scaler, device=device, total_epochs=total_epochs,
            make_teacher=make_teacher, note=reporter.note,
        )
        history = read_history(run_dir, start, reporter.note, write=dist.main)
        reporter.note(f"resuming {run_dir} after epoch {start} of {total_epochs}")

    labeled_set = PatchSet(labeled, config.patch, config.stride)
    final = best_path = None
    for epoch in range(start, total_epochs):
        began = time.perf_counter()
        semi = epoch >= config.warmup_epochs and config.semi_supervised
        stage = "semi" if semi else ("warmup" if epoch < config.warmup_epochs else "supervised")
        record: dict[str, Any] = {"epoch": epoch + 1, "stage": stage}
        unlabeled_set = None
        if semi:
            if fixed_pseudo is not None:
                labelled = fixed_pseudo
            else:
                if teacher is None:
                    teacher = make_teacher(student)
                labelled = label_scenes(
                    teacher, unlabeled_scenes, run_dir / "pseudo", mask_settings, scorer=config.scorer, gamma=config.gamma,
                    device=device, seed=config.seed, epoch=epoch, rank=dist.rank, world=dist.world, barrier=dist.barrier,
                )
            record["pseudo_seconds"] = round(time.perf_counter() - began, 2)
            info = summary(labelled, mask_settings)
            record["kept_fraction"] = info["kept_fraction"]
            record["patches_kept"] = info["patches_kept"]
            unlabeled_set = PatchSet(
                [s.scene for s in labelled],
                config.patch, config.stride,
                pseudo=[s.labels for s in labelled], keep=[s.mask.patch_keep for s in labelled],
            )
            if len(unlabeled_set) == 0:
                reporter.note(f"epoch {epoch + 1}: every pseudo-labeled patch was masked out; this epoch learns from labeled data only")
                unlabeled_set = None
        driver = unlabeled_set if unlabeled_set is not None else labeled_set
        steps = config.steps_per_epoch or max(1, math.ceil(len(driver) / config.batch))
        reporter.epoch_start(epoch + 1, total_epochs, record["stage"], steps)
        sums: dict[str, float] = {}
        seen = 0
        steps_began = time.perf_counter()
        labeled_iter = batches(labeled_set, seed=config.seed, epoch=epoch, branch=LABELED, batch=config.batch, steps=steps, strong=False, rank=dist.rank, world=dist.world)
        unlabeled_iter = (
            batches(unlabeled_set, seed=config.seed, epoch=epoch, branch=UNLABELED, batch=config.batch, steps=steps, strong=config.strong_aug, rank=dist.rank, world=dist.world)
            if unlabeled_set is not None else None
        )
        for step in range(steps):
            step_began = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at((epoch + step / steps) / total_epochs)
            sup = next(labeled_iter)
            uns = next(unlabeled_iter) if unlabeled_iter is not None else None
            inputs = _batch_inputs(sup, config.gamma, device)
            if uns is not None:
                inputs = [torch.cat(pair) for pair in zip(inputs, _batch_inputs(uns, config.gamma, device))]
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                pred, sigma = wrapped(*inputs, with_uncertainty=use_k)
            pred = pred.float()
            sigma = sigma.float() if sigma is not None else None
            n = sup["frames"].shape[0]
            parts = objective(pred[:n], sigma[:n] if sigma is not None else None, sup["gt"].to(device), None)
            loss = parts["total"]
            step_losses = {f"s_{k}": float(v.detach()) for k, v in parts.items()}
            if uns is not None:
                mask = uns["pixel_mask"].to(device)
                u_parts = objective(pred[n:], sigma[n:] if sigma is not None else None, uns["pseudo"].to(device), mask)
                loss = loss + config.lambda_u * u_parts["total"] * dist.share_of_kept(mask)
                step_losses.update({f"u_{k}": float(v.detach()) for k, v in u_parts.items()})
            step_losses["loss"] = float(loss.detach())
            step_losses = dist.mean(step_losses)
            if not math.isfinite(step_losses["loss"]):
                raise InputError(f"epoch {epoch + 1} step {step + 1}: the loss is not finite; lower --lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.clip_grad is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(student.parameters(), config.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            if teacher is not None and fixed_pseudo is None:
                ema_update(teacher, student, config.ema_alpha)
            for key, value in step_losses.items():
                sums[key] = sums.get(key, 0.0) + value
            samples = n * dist.world + (uns["frames"].shape[0] * dist.world if uns is not None else 0)
            seen += samples
            reporter.step(step + 1, step_losses, samples / max(time.perf_counter() - step_began, 1e-9))
        step_seconds = time.perf_counter() - steps_began
        record.update({k: v / steps for k, v in sums.items()})
        record.update({"steps": steps, "samples": seen, "samples_per_s": round(seen / step_seconds, 2), "lr": optimizer.param_groups[0]["lr"]})
        if dist.main and test_scenes and ((epoch + 1) % max(config.validate_every, 1) == 0 or epoch + 1 == total_epochs):
            record.update(validate(student, test_scenes, config, device))
        seconds = time.perf_counter() - began
        elapsed += seconds
        record["seconds"] = round(seconds, 2)
        score = record.get("psnr_mu", -record.get("s_r", math.inf))
        history.append(record)
        if dist.main:
            if score > best:
                best = score
                best_path = run_dir / "student-best.safetensors"
                save_weights(student, best_path, _card(config, epoch + 1, elapsed, record, "best"), overwrite=True)
            state = checkpoint_state(
                epoch=epoch + 1, stage=record["stage"], student=student, teacher=teacher, optimizer=optimizer, scaler=scaler,
                device=device, best=best, elapsed=elapsed, config=config,
            )
            # metrics first: a crash between the two leaves a line that --resume drops and rewrites
            with (run_dir / METRICS).open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            with atomic_output(run_dir / CHECKPOINT, overwrite=True) as temp:
                torch.save(state, temp)
        else:
            best = max(best, score)
        reporter.epoch_end(record)
        dist.barrier()
        if stop_after is not None and epoch + 1 >= stop_after:
            return TrainResult(run_dir, epoch + 1, None, best_path, history)
    if dist.main:
        final = run_dir / "student-final.safetensors"
        save_weights(student, final, _card(config, total_epochs, elapsed, history[-1] if history else None, "final"), overwrite=True)
        best_path = run_dir / "student-best.safetensors"
    dist.barrier()
    return TrainResult(run_dir, total_epochs, final, best_path if best_path and best_path.exists() else None, history)
