"""Patch datasets for the two branches of the recipe, deterministic from (seed, epoch, position).

Every random choice (the order of patches, each patch's augmentation) is a pure function of the
run's seed, the epoch and the position in the epoch. That makes a resumed run repeat exactly the
batches an uninterrupted run would have seen, and lets DDP ranks split one global batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from smarthdr_cli.data.patches import CachedScene, patch_index
from smarthdr_cli.train import augment

LABELED, UNLABELED = 0, 1


@dataclass
class PseudoLabels:
    """The teacher's output for one unlabeled scene, memory-mapped: pseudo HDR and pixel mask (eq. 12)."""

    hdr: np.ndarray  # (H, W, 3) float16
    pixel: np.ndarray  # (H, W) bool


def rng_for(seed: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, *parts])


def epoch_order(count: int, seed: int, epoch: int, branch: int, cycle: int = 0) -> np.ndarray:
    """A permutation of `count` patches for one pass; `cycle` numbers repeated passes in an epoch."""
    return rng_for(seed, epoch, branch, cycle).permutation(count)


class PatchSet:
    """Patches of a list of scenes on the training grid, optionally with pseudo labels."""

    def __init__(
        self,
        scenes: Sequence[CachedScene],
        size: int,
        stride: int,
        *,
        pseudo: Sequence[PseudoLabels] | None = None,
        keep: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.scenes = list(scenes)
        self.size = size
        self.pseudo = list(pseudo) if pseudo is not None else None
        self.index = patch_index([s.shape for s in self.scenes], size, stride, keep)

    def __len__(self) -> int:
        return len(self.index)

    def sample(self, position: int, aug: augment.Augmentation | None) -> dict[str, torch.Tensor]:
        number, top, left = (int(v) for v in self.index[position])
        sample = self.scenes[number].crop(top, left, self.size)
        if self.pseudo is not None:
            labels = self.pseudo[number]
            window = (slice(top, top + self.size), slice(left, left + self.size))
            sample["pseudo"] = torch.from_numpy(np.ascontiguousarray(labels.hdr[window].astype(np.float32).transpose(2, 0, 1)))
            sample["pixel_mask"] = torch.from_numpy(np.ascontiguousarray(labels.pixel[window]))[None].float()
        return augment.apply(sample, aug) if aug is not None else sample


def collate(samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def batches(
    patches: PatchSet,
    *,
    seed: int,
    epoch: int,
    branch: int,
    batch: int,
    steps: int,
    strong: bool,
    rank: int = 0,
    world: int = 1,
) -> Iterator[dict[str, torch.Tensor]]:
    """`steps` batches of `batch` patches (this rank's share of each), cycling through reshuffled passes.

    Augmentation: weak (vertical flip + 90 deg clockwise) for labeled data and for the unlabeled
    branch without strong augmentation; strong (horizontal flip + 90 deg counter-clockwise + RGB
    permutation) for the unlabeled branch. Each patch's draw depends only on its global position.
    """
    count = len(patches)
    share = batch // world
    cycle, order, used = 0, epoch_order(count, seed, epoch, branch, 0), 0
    for step in range(steps):
        chosen = []
        for slot in range(batch):
            if used == count:
                cycle, used = cycle + 1, 0
                order = epoch_order(count, seed, epoch, branch, cycle)
            chosen.append((step * batch + slot, int(order[used])))
            used += 1
        mine = chosen[rank * share : (rank + 1) * share]
        samples = []
        for position, patch in mine:
            rng = rng_for(seed, epoch, branch, position, 1)
            aug = augment.draw_strong(rng) if strong else augment.draw_weak(rng)
            samples.append(patches.sample(patch, aug))
        yield collate(samples)
