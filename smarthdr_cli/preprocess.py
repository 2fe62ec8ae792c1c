"""Eq. (1) of the paper, the one place every learned backend and the training code take it from.

    x~_i = x_i ** gamma / t_i,  network input of frame i = concat(x_i, x~_i)  (6 channels)

The functions only use `**`, `/` and a concatenate, so they work on numpy arrays and torch
tensors alike (channels last for numpy HxWxC, channels first for torch NxCxHxW via `axis`).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from smarthdr_cli.bracket import GAMMA, Bracket


def gamma_correct(ldr: Any, exposure: Any, gamma: float = GAMMA) -> Any:
    """x ** gamma / t: the LDR frame mapped to (relative) linear radiance."""
    return ldr**gamma / exposure


def to_ldr(radiance: Any, exposure: Any, gamma: float = GAMMA) -> Any:
    """Inverse of `gamma_correct` without clipping: the LDR value radiance would give at exposure t."""
    return (radiance * exposure) ** (1.0 / gamma)


def network_input(ldr: Any, exposure: Any, gamma: float = GAMMA, axis: int = -1) -> Any:
    """concat(x, x~) along the channel axis (`axis=-1` for HxWx3 numpy, `axis=1` for NCHW torch)."""
    corrected = gamma_correct(ldr, exposure, gamma)
    if isinstance(ldr, np.ndarray):
        return np.concatenate([ldr, corrected.astype(ldr.dtype, copy=False)], axis=axis)
    import torch

    return torch.cat([ldr, corrected], dim=axis)


def bracket_inputs(bracket: Bracket) -> Sequence[np.ndarray]:
    """One HxWx6 float32 array per frame of the bracket, short -> long."""
    return [
        network_input(image.astype(np.float32, copy=False), np.float32(t), bracket.gamma)
        for image, t in zip(bracket.images, bracket.exposures)
    ]
