"""This process's place in a `torchrun` job: rank, device, collectives and the DDP wrapper.

Without `torchrun` the process is rank 0 of 1 and every collective is a no-op, so the loop has one
code path. Under `torchrun` every rank takes its slice of each global batch (gloo on CPU, NCCL on
GPUs); gradients are averaged by DDP and only rank 0 writes the run folder's files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from smarthdr_cli.errors import InputError
from smarthdr_cli.train.config import TrainConfig


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

    @classmethod
    def start(cls, config: TrainConfig) -> "Distributed":
        """Join the job (if any) on the configured device, with the configured CPU threads."""
        dist = cls.from_env()
        device = dist.device = _device(config, dist)
        if dist.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if dist.world > 1 and config.batch % dist.world:
            raise InputError(f"--batch {config.batch} must be divisible by the {dist.world} processes")
        if config.threads:
            torch.set_num_threads(config.threads)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return dist

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def wrap(self, model: nn.Module, *, find_unused_parameters: bool) -> nn.Module:
        """`model` under DDP in a job (gradients averaged over ranks), `model` itself alone.

        The judge's parameters get no gradient without the uncertainty loss: DDP must be told."""
        if self.world == 1:
            return model
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None, find_unused_parameters=find_unused_parameters
        )

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


def _device(config: TrainConfig, dist: Distributed) -> torch.device:
    """The configured device; `auto` is this rank's GPU when torch sees one, else the CPU."""
    if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError(f"--device {config.device}: torch sees no GPU")
    return torch.device(config.device if ":" in config.device else f"cuda:{dist.local_rank}")
