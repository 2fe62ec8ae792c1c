"""Whole-image GFHDR inference on numpy frames: the one path for backends, teacher and validation."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from smarthdr_cli.model.tiling import Progress, tiled_forward
from smarthdr_cli.preprocess import network_input

# Reflected context around the image, cropped off the output. GFHDR's zero-padded convolutions
# make a network's outermost pixel row and column its worst: on training patches their mu-law
# error is 4-8x the interior's, and on whole images those two rows and columns cost PSNR-mu
# dB (bench/README.md). With this margin the network's own border falls outside the image.
BORDER = 8


def infer_frames(
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor | None]],
    frames: Sequence[np.ndarray],
    exposures: Sequence[float],
    gamma: float,
    *,
    tile: int,
    window: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    with_uncertainty: bool = True,
    channels_last: bool = False,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """HDR (and uncertainty) as HxWx3 float32 arrays for three HxWx3 frames, reference in the middle.

    `forward` is the network (or its compiled form) called as forward(x1, x2, x3, with_uncertainty=...).
    `progress(done, total)` is called after every tile (see `tiling.tiled_forward`).
    """

    def tensor(image: np.ndarray, exposure: float) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
        x = network_input(x, float(exposure), gamma, axis=1)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    height, width = frames[1].shape[:2]
    border = BORDER if min(height, width) > BORDER else 0
    inputs = tuple(tensor(image, t) for image, t in zip(frames, exposures))
    if border:
        inputs = tuple(torch.nn.functional.pad(x, (border,) * 4, mode="reflect") for x in inputs)

    def run(x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            return forward(x1, x2, x3, with_uncertainty=with_uncertainty)

    with torch.inference_mode():
        hdr, sigma = tiled_forward(run, inputs, tile, with_uncertainty=with_uncertainty, multiple=window, progress=progress)

    def to_numpy(t: torch.Tensor) -> np.ndarray:
        return t[0, :, border : border + height, border : border + width].permute(1, 2, 0).float().cpu().numpy()

    return to_numpy(hdr), (to_numpy(sigma) if sigma is not None else None)
