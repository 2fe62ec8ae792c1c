"""The student's side of the recipe: eq. 9 as an objective, one optimiser step and one epoch of steps.

The student learns from labeled patches (weak augmentation) and, in the semi-supervised stage, from
the kept pseudo-labeled patches (strong augmentation), both in one forward pass:
L = L_s^r + lambda_v L_s^v + w_k L_s^k + lambda_u (L_u^r + lambda_v L_u^v + w_k L_u^k), with
w_k = --k-weight (1 in the seed). After every step the teacher, when there is one, follows the
student by EMA (eq. 3).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smarthdr_cli.errors import InputError
from smarthdr_cli.preprocess import network_input
from smarthdr_cli.tonemap import mu_law
from smarthdr_cli.train import losses
from smarthdr_cli.train.config import TrainConfig
from smarthdr_cli.train.dataset import LABELED, UNLABELED, PatchSet, batches
from smarthdr_cli.train.distributed import Distributed
from smarthdr_cli.train.ema import ema_update
from smarthdr_cli.train.memory import saved_bytes_per_patch
from smarthdr_cli.train.plan import epoch_steps
from smarthdr_cli.train.reporting import Reporter


class Objective:
    """Eq. 9 on one branch: mu-law L1 + lambda_v perceptual + k_weight x uncertainty loss, masked
    where asked. L^k is still computed (and logged) at k_weight 0 but left out of the total, so
    a non-finite L^k cannot reach the step as 0 x inf."""

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
        total = parts["r"] + c.lambda_v * parts.get("v", 0.0)
        if "k" in parts and c.k_weight != 0:
            total = total + c.k_weight * parts["k"]
        parts["total"] = total
        return parts


def perceptual_loss(config: TrainConfig, device: torch.device) -> losses.PerceptualLoss | None:
    """The VGG term of eq. 9, or None when it is off; loaded before any decoding, as a cheap check."""
    if not config.perceptual or config.lambda_v == 0:
        return None
    vgg = losses.load_vgg16(Path(config.vgg_weights) if config.vgg_weights else None)
    return losses.PerceptualLoss(vgg).to(device)


def _batch_inputs(batch: dict[str, torch.Tensor], gamma: float, device: torch.device) -> list[torch.Tensor]:
    frames = batch["frames"].to(device, non_blocking=True)
    exposures = batch["exposures"].to(device)
    return [network_input(frames[:, i], exposures[:, i].view(-1, 1, 1, 1), gamma, axis=1) for i in range(3)]


def trunk_gradient_ratio(network: nn.Module, k_loss: torch.Tensor, r_loss: torch.Tensor) -> float | None:
    """|d L^k / d trunk| / |d L^r / d trunk|, the trunk being every parameter but the judge's:
    how much the uncertainty loss, through the judge's input F_att, steers the network that makes
    the HDR, against the reconstruction loss (issue 15 measured L^k dominating). Two extra
    backward passes, so the loop takes it once per epoch; None when L^r gives no gradient.
    In a torchrun job it is not measured (DDP's reducer expects one backward per step)."""
    if not isinstance(k_loss, torch.Tensor) or not k_loss.requires_grad:
        return 0.0
    trunk = [p for name, p in network.named_parameters() if p.requires_grad and not name.startswith("judge.")]

    def norm(loss: torch.Tensor) -> float:
        grads = torch.autograd.grad(loss, trunk, retain_graph=True, allow_unused=True)
        return math.sqrt(sum(float(g.detach().float().square().sum()) for g in grads if g is not None))

    r = norm(r_loss)
    return norm(k_loss) / r if r > 0 else None


class Student:
    """The student network and what updates it: Adam, the gradient scaler, mixed precision on GPUs
    (bf16 where supported), DDP in a job."""

    def __init__(self, network: nn.Module, config: TrainConfig, dist: Distributed, perceptual: losses.PerceptualLoss | None) -> None:
        self.network = network
        self.config = config
        self.dist = dist
        self.device = dist.device
        # without L^k in the loss the judge gets no gradient, which DDP must be told
        self.wrapped = dist.wrap(network, find_unused_parameters=not config.uncertainty_loss or config.k_weight == 0)
        self.optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, betas=config.betas, eps=config.adam_eps)
        self.amp_dtype: torch.dtype | None = None
        if self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.objective = Objective(config, perceptual)

    def saved_bytes_per_patch(self, checkpointing: bool) -> float:
        """What autograd keeps per training patch for the backward pass (`train/memory.py`), with
        or without activation checkpointing; the network's own setting is left as it was."""
        def loss(pred: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
            return self.objective(pred, sigma, torch.rand_like(pred), None)["total"]

        c = self.config
        self.network.set_checkpointing(checkpointing)
        try:
            return saved_bytes_per_patch(self.network, loss, c.patch, self.device, c.uncertainty_loss, self.amp_dtype)
        finally:
            self.network.set_checkpointing(c.checkpoint_activations)

    def learn_epoch(
        self, epoch: int, total_epochs: int, stage: str, labeled: PatchSet, pseudo: PatchSet | None,
        teacher: nn.Module | None, reporter: Reporter,
    ) -> dict[str, Any]:
        """One epoch of steps; its record: mean losses, steps, samples, throughput, last learning rate.

        The epoch is as long as the pseudo-labeled set when there is one (else the labeled set);
        batches are a function of (seed, epoch, position), so a resumed epoch repeats exactly."""
        c, dist = self.config, self.dist
        driver = pseudo if pseudo is not None else labeled
        steps = epoch_steps(c, len(driver))
        reporter.epoch_start(epoch + 1, total_epochs, stage, steps)
        sums: dict[str, float] = {}
        seen = 0
        began = time.perf_counter()
        labeled_iter = batches(labeled, seed=c.seed, epoch=epoch, branch=LABELED, batch=c.batch, steps=steps, strong=False, rank=dist.rank, world=dist.world)
        pseudo_iter = (
            batches(pseudo, seed=c.seed, epoch=epoch, branch=UNLABELED, batch=c.batch, steps=steps, strong=c.strong_aug, rank=dist.rank, world=dist.world)
            if pseudo is not None else None
        )
        for step in range(steps):
            step_began = time.perf_counter()
            for group in self.optimizer.param_groups:
                group["lr"] = c.lr_at((epoch + step / steps) / total_epochs)
            sup = next(labeled_iter)
            uns = next(pseudo_iter) if pseudo_iter is not None else None
            step_losses = self.step(sup, uns, f"epoch {epoch + 1} step {step + 1}", measure=step == 0)
            if teacher is not None:
                ema_update(teacher, self.network, c.ema_alpha)
            for key, value in step_losses.items():
                sums[key] = sums.get(key, 0.0) + value
            samples = sup["frames"].shape[0] * dist.world + (uns["frames"].shape[0] * dist.world if uns is not None else 0)
            seen += samples
            reporter.step(step + 1, step_losses, samples / max(time.perf_counter() - step_began, 1e-9))
        seconds = time.perf_counter() - began
        ratio = sums.pop("k_to_r_grad_ratio", None)  # measured on the first step only: not a mean
        record: dict[str, Any] = {k: v / steps for k, v in sums.items()}
        if ratio is not None:
            record["k_to_r_grad_ratio"] = ratio
        record.update({"steps": steps, "samples": seen, "samples_per_s": round(seen / seconds, 2), "lr": self.optimizer.param_groups[0]["lr"]})
        return record

    def step(self, sup: dict[str, torch.Tensor], uns: dict[str, torch.Tensor] | None, where: str, measure: bool = False) -> dict[str, float]:
        """One optimiser step on a labeled batch and, if given, a pseudo-labeled one (masked by its
        pixel mask); returns the step's losses as means over ranks. `measure`: also the ratio of
        the gradient norms L^k and L^r give the trunk (`trunk_gradient_ratio`)."""
        c, dist, device = self.config, self.dist, self.device
        inputs = _batch_inputs(sup, c.gamma, device)
        if uns is not None:
            inputs = [torch.cat(pair) for pair in zip(inputs, _batch_inputs(uns, c.gamma, device))]
        with torch.autocast(device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            pred, sigma = self.wrapped(*inputs, with_uncertainty=c.uncertainty_loss)
        pred = pred.float()
        sigma = sigma.float() if sigma is not None else None
        n = sup["frames"].shape[0]
        parts = self.objective(pred[:n], sigma[:n] if sigma is not None else None, sup["gt"].to(device), None)
        loss = parts["total"]
        step_losses = {f"s_{k}": float(v.detach()) for k, v in parts.items()}
        if uns is not None:
            mask = uns["pixel_mask"].to(device)
            u_parts = self.objective(pred[n:], sigma[n:] if sigma is not None else None, uns["pseudo"].to(device), mask)
            loss = loss + c.lambda_u * u_parts["total"] * dist.share_of_kept(mask)
            step_losses.update({f"u_{k}": float(v.detach()) for k, v in u_parts.items()})
        step_losses["loss"] = float(loss.detach())
        if measure and dist.world == 1:
            k_terms = [c.k_weight * parts["k"]] if "k" in parts else []
            r_terms = [parts["r"]]
            if uns is not None:
                weight = c.lambda_u * dist.share_of_kept(uns["pixel_mask"].to(device))
                r_terms.append(weight * u_parts["r"])
                k_terms += [weight * c.k_weight * u_parts["k"]] if "k" in u_parts else []
            ratio = trunk_gradient_ratio(self.network, sum(k_terms), sum(r_terms)) if k_terms else None
            if ratio is not None:
                step_losses["k_to_r_grad_ratio"] = ratio
        step_losses = dist.mean(step_losses)
        if not math.isfinite(step_losses["loss"]):
            raise InputError(f"{where}: the loss is not finite; lower --lr or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if c.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), c.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return step_losses
