"""Tiled inference: overlapping tiles with feathered blending, sized from a memory budget.

A 24 MP bracket through the full network needs tens of GB at once; in tiles it needs what one
tile needs. Neighbouring tiles overlap, and in the overlap each tile's weight ramps linearly
from 0 at its edge, so seams do not show. Tiles are multiples of the attention window, so the
network pads nothing inside the image.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import torch

from smarthdr_cli.model.config import GFHDRConfig

# Peak memory of one forward pass per pixel of the full network (embed_dim 60), measured on CPU
# with PyTorch 2.13 (bench/gfhdr_forward.py): ~6 kB in fp32 and ~4.5 kB in bf16 at 256-384 px
# tiles, more for small tiles. Scaled by width for other configurations, with a margin.
_BYTES_PER_PIXEL_AT_60 = {torch.float32: 7500.0, torch.bfloat16: 5000.0, torch.float16: 5000.0}
MIN_TILE, MAX_TILE = 64, 1024
# On a CPU, time per pixel grows with the tile once a tile's activations leave the caches:
# 17 us/px in bf16 up to 256 px tiles, 49 us/px at 360x400 (bench/gfhdr_forward.py). With the
# 32 px overlap, 256 px tiles cost the least per output pixel.
CPU_TILE = 256
DEFAULT_OVERLAP = 32

Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]
Progress = Callable[[int, int], None]  # (tiles done, tiles in all), after every tile


def tile_size_for(budget_bytes: float, config: GFHDRConfig, dtype: torch.dtype, largest: int = MAX_TILE) -> int:
    """Largest tile side (a multiple of the window, at most `largest`) whose forward pass fits."""
    per_pixel = _BYTES_PER_PIXEL_AT_60.get(dtype, 7500.0) * config.embed_dim / 60.0
    side = int(math.sqrt(max(budget_bytes, 0.0) / per_pixel))
    window = config.window_size
    side = max(MIN_TILE, min(largest, MAX_TILE, side)) // window * window
    return max(side, window)


def _spans(length: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int]]:
    """(start, size) of evenly spread tiles no larger than `tile` that overlap by >= `overlap`.

    The fewest tiles that cover the length, all of one size (rounded up to `multiple`), spread
    so the overlaps are equal: no thin last tile that is mostly overlap.
    """
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, -(-math.ceil((length + (count - 1) * overlap) / count) // multiple) * multiple)
    return [(round(i * (length - size) / (count - 1)), size) for i in range(count)]


def tiles(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> Iterator[tuple[int, int, int, int]]:
    """(top, left, tile height, tile width) covering the image, neighbours overlapping."""
    for top, tile_h in _spans(height, tile, overlap, multiple):
        for left, tile_w in _spans(width, tile, overlap, multiple):
            yield top, left, tile_h, tile_w


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool, device: torch.device) -> torch.Tensor:
    """1-D blending weight: rises over `overlap` pixels at an inner edge, flat at image borders."""
    weight = torch.ones(length, device=device)
    if overlap <= 0:
        return weight
    ramp = (torch.arange(overlap, device=device, dtype=torch.float32) + 1.0) / (overlap + 1.0)
    span = min(overlap, length)
    if not at_start:
        weight[:span] = torch.minimum(weight[:span], ramp[:span])
    if not at_end:
        weight[-span:] = torch.minimum(weight[-span:], ramp[:span].flip(0))
    return weight


def tiled_forward(
    forward: Forward,
    frames: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    tile: int,
    overlap: int = DEFAULT_OVERLAP,
    with_uncertainty: bool = True,
    multiple: int = 8,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run `forward` tile by tile and blend; one tile when the image fits in one.

    Tiles are at most `tile` pixels on a side and a multiple of `multiple` (the window), so the
    network pads nothing inside the image. `progress(done, total)` follows every tile: a large
    merge on a CPU takes minutes, and the caller decides how to show that (nothing is printed here).
    """
    height, width = frames[1].shape[2:]
    if height <= tile and width <= tile:
        out = forward(*frames)
        if progress is not None:
            progress(1, 1)
        return out
    overlap = min(overlap, tile // 2)
    device = frames[1].device
    hdr = torch.zeros((frames[1].shape[0], 3, height, width), device=device)
    sigma = torch.zeros_like(hdr) if with_uncertainty else None
    total = torch.zeros((height, width), device=device)
    layout = list(tiles(height, width, tile, overlap, multiple))
    for done, (top, left, tile_h, tile_w) in enumerate(layout, start=1):
        crop = tuple(f[:, :, top : top + tile_h, left : left + tile_w] for f in frames)
        out, unc = forward(*crop)
        weight = (
            _ramp(tile_h, overlap, top == 0, top + tile_h == height, device)[:, None]
            * _ramp(tile_w, overlap, left == 0, left + tile_w == width, device)[None, :]
        )
        hdr[:, :, top : top + tile_h, left : left + tile_w] += out.float() * weight
        if sigma is not None and unc is not None:
            sigma[:, :, top : top + tile_h, left : left + tile_w] += unc.float() * weight
        total[top : top + tile_h, left : left + tile_w] += weight
        if progress is not None:
            progress(done, len(layout))
    hdr /= total
    if sigma is not None:
        sigma /= total
    return hdr, sigma
