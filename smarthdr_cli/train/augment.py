"""Weak and strong augmentation of training samples (the seed's "Data Augmentation" section).

* Weak (labeled data, as GFHDR trains): vertical flip and 90 degree clockwise rotation.
* Strong (pseudo-labeled data, FixMatch-style consistency): horizontal flip, 90 degree
  counter-clockwise rotation and a random shuffle of the RGB channels.

The seed names the operations but not how often they fire. Our reading: each geometric
operation is applied independently with probability 0.5 (so every sample can also be seen
unaltered, as in GFHDR's random flips), and the strong channel shuffle is a uniformly random
permutation of the three channels (the identity included, probability 1/6).

A sample is a dict of torch tensors with the spatial dimensions last:

* colour keys (`COLOUR_KEYS`): "frames" (3 frames, 3 colours, H, W), "gt", "pseudo" and
  "uncertainty" (3, H, W): moved and channel-permuted (colour is always dim -3);
* "exposures" and any other tensor with fewer than two dimensions: never changed;
* any other tensor ("pixel_mask" (1, H, W) or (H, W), ...): moved, never channel-permuted.

Every moved tensor must share the same (H, W), so that all of them move together; H != W is
fine (a quarter turn swaps them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

COLOUR_KEYS = ("frames", "gt", "pseudo", "uncertainty")
IDENTITY_PERMUTATION = (0, 1, 2)
PROBABILITY = 0.5  # of each geometric operation


@dataclass(frozen=True)
class Augmentation:
    """One drawn augmentation, applied in this order: vflip, hflip, rotation, channel permutation.

    Args:
        vflip: flip rows (upside down).
        hflip: flip columns (mirror).
        rotate: quarter turns as `torch.rot90(k=rotate, dims=(-2, -1))`: +1 is 90 degrees
            counter-clockwise, -1 clockwise.
        permutation: output colour channel c is input channel permutation[c].
    """

    vflip: bool = False
    hflip: bool = False
    rotate: int = 0
    permutation: tuple[int, int, int] = IDENTITY_PERMUTATION

    def __post_init__(self) -> None:
        object.__setattr__(self, "permutation", tuple(int(c) for c in self.permutation))
        if sorted(self.permutation) != [0, 1, 2]:
            raise ValueError(f"not a permutation of 3 channels: {self.permutation}")

    @property
    def is_identity(self) -> bool:
        """True when applying it changes nothing (both flips together are a half turn)."""
        turns = self.rotate + (2 if self.vflip else 0)
        return self.vflip == self.hflip and turns % 4 == 0 and self.permutation == IDENTITY_PERMUTATION

    def inverse(self) -> "Augmentation":
        """The augmentation that undoes this one: apply(apply(s, a), a.inverse()) == s.

        With one flip the geometric part is a reflection, its own inverse; with none or both
        flips (both = a half turn) it is a rotation, undone by turning back.
        """
        reflection = self.vflip != self.hflip
        rotate = self.rotate if reflection else -self.rotate
        inverse_permutation = tuple(int(c) for c in np.argsort(self.permutation))
        return Augmentation(self.vflip, self.hflip, rotate, inverse_permutation)  # type: ignore[arg-type]


IDENTITY = Augmentation()


def draw_weak(rng: np.random.Generator) -> Augmentation:
    """GFHDR's augmentation of labeled patches: vertical flip and clockwise quarter turn."""
    vflip, rotate = rng.random(2) < PROBABILITY
    return Augmentation(vflip=bool(vflip), rotate=-1 if rotate else 0)


def draw_strong(rng: np.random.Generator) -> Augmentation:
    """The seed's strong augmentation: horizontal flip, counter-clockwise quarter turn, RGB shuffle."""
    hflip, rotate = rng.random(2) < PROBABILITY
    permutation = tuple(int(c) for c in rng.permutation(3))
    return Augmentation(hflip=bool(hflip), rotate=1 if rotate else 0, permutation=permutation)  # type: ignore[arg-type]


def _move(tensor: torch.Tensor, aug: Augmentation) -> torch.Tensor:
    dims = [d for d, flag in ((-2, aug.vflip), (-1, aug.hflip)) if flag]
    if dims:
        tensor = torch.flip(tensor, dims)
    if aug.rotate % 4:
        tensor = torch.rot90(tensor, aug.rotate % 4, dims=(-2, -1))
    return tensor


def apply(sample: dict[str, torch.Tensor], aug: Augmentation) -> dict[str, torch.Tensor]:
    """A new sample with every spatial tensor moved alike and the colour tensors permuted.

    Works on batches too (colour is dim -3, space the last two). Tensors the augmentation leaves
    as they are may be shared with the input. Raises ValueError when a colour tensor has no
    3-channel dim -3 or the spatial sizes differ: tensors that could not move together would
    silently desynchronise labels from inputs.
    """
    sizes = {tuple(v.shape[-2:]) for k, v in sample.items() if _is_spatial(k, v)}
    if len(sizes) > 1:
        raise ValueError(f"spatial tensors of one sample differ in size: {sorted(sizes)}")
    out: dict[str, torch.Tensor] = {}
    for key, value in sample.items():
        if not _is_spatial(key, value):
            out[key] = value
            continue
        moved = _move(value, aug)
        if key in COLOUR_KEYS:
            if value.dim() < 3 or value.shape[-3] != 3:
                raise ValueError(f"{key}: colour channels must be dim -3 of size 3, got shape {tuple(value.shape)}")
            if aug.permutation != IDENTITY_PERMUTATION:
                moved = moved.index_select(-3, torch.tensor(aug.permutation, device=value.device))
        out[key] = moved.contiguous()
    return out


def _is_spatial(key: str, value: object) -> bool:
    return key != "exposures" and isinstance(value, torch.Tensor) and value.dim() >= 2
