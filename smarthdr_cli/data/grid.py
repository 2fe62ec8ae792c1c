"""The patch grid shared by the sampler and the patch-level mask: one definition of "a patch"."""
from __future__ import annotations

import numpy as np

from smarthdr_cli.errors import InputError


def _starts(length: int, size: int, stride: int) -> list[int]:
    starts = list(range(0, length - size + 1, stride))
    if starts and starts[-1] != length - size:
        starts.append(length - size)  # the last patch ends at the border, so no edge is never seen
    return starts


def grid_origins(height: int, width: int, size: int, stride: int) -> np.ndarray:
    """(N, 2) int array of (top, left) corners of size x size patches on a stride grid.

    The seed crops 64 px patches with stride 32 (GFHDR: 128 with stride 64); a final row and column
    of patches is aligned with the image border so that every pixel lies in some patch.
    """
    if size < 1 or stride < 1:
        raise InputError(f"patch size and stride must be positive, got {size} and {stride}")
    if height < size or width < size:
        raise InputError(f"image {width}x{height} is smaller than the {size} px training patch")
    rows, cols = _starts(height, size, stride), _starts(width, size, stride)
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
    return grid.astype(np.int64)
