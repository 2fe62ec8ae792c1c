"""The one type that crosses every boundary: a bracket of frames sorted by exposure.

Readers build it, backends consume it; neither knows about the other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from smarthdr_cli.errors import BracketError

GAMMA = 2.2  # the LDR domain every frame is brought into, eq. (1) of the paper
CODE_VALUES = np.arange(256, dtype=np.float32) / np.float32(255.0)  # an 8-bit code's value in [0, 1]


@dataclass
class Frame:
    """One exposure: float32 HxWx3 in [0, 1] in the gamma-2.2 LDR domain, and its exposure time.
    While a reader holds it before linearising, an 8-bit frame may be its codes (uint8): values
    `code / 255`, compared as those."""

    path: Path
    image: np.ndarray
    exposure: float  # seconds (effective: ISO and aperture folded in)
    bits: int = 8
    raw: bool = False


@dataclass
class Bracket:
    """Frames sorted short -> long with exposure times normalised so the shortest is 1."""

    images: list[np.ndarray]
    exposures: np.ndarray  # normalised, shortest = 1
    reference: int
    names: list[str] = field(default_factory=list)
    exposure_seconds: np.ndarray | None = None
    gamma: float = GAMMA
    bits: int = 8  # quantisation of the source frames: the noise floor of the ghost test
    # Per frame, whether alignment resampled it (empty: none was): a warped frame carries its
    # residual misregistration and resampling blur, which `classic` weighs at edges.
    warped: tuple[bool, ...] = ()
    # The caller has no further use for the frames' pixels: a merge may write its result into
    # one of them instead of a new image (at 12 MP that is 146 MB less at the moment memory peaks).
    disposable: bool = False

    def __post_init__(self) -> None:
        self.exposures = np.asarray(self.exposures, dtype=np.float64)
        if len(self.images) < 2:
            raise BracketError(f"a bracket needs at least 2 frames, got {len(self.images)}")
        if len(self.images) != len(self.exposures):
            raise BracketError("one exposure time per frame is needed")
        if not 0 <= self.reference < len(self.images):
            raise BracketError(f"reference index {self.reference} outside the bracket")
        shapes = {image.shape for image in self.images}
        if len(shapes) != 1:
            raise BracketError(f"frames differ in size: {sorted(shapes)}")
        if np.any(np.diff(self.exposures) <= 0):
            raise BracketError("frames must be sorted by strictly increasing exposure")
        if not self.names:
            self.names = [f"frame{i + 1}" for i in range(len(self.images))]

    @property
    def shape(self) -> tuple[int, int]:
        height, width = self.images[0].shape[:2]
        return height, width

    def __len__(self) -> int:
        return len(self.images)


def channel_max(image: np.ndarray) -> np.ndarray:
    """Per-pixel largest of the three channels (numpy's reductions over a length-3 axis are slow)."""
    return np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])


def channel_min(image: np.ndarray) -> np.ndarray:
    return np.minimum(np.minimum(image[..., 0], image[..., 1]), image[..., 2])


def default_reference(count: int, reference: int | None) -> int:
    """The reference's index in exposure order: the user's choice, else the middle frame (lower
    middle for an even count), else of two frames the shorter (it keeps the highlights)."""
    if count < 2:
        raise BracketError(f"a bracket needs at least 2 frames, got {count}")
    if reference is None:
        reference = 0 if count == 2 else (count - 1) // 2
    if not 0 <= reference < count:
        raise BracketError(f"--reference {reference + 1} is outside 1..{count}")
    return reference


def every_frame(count: int, reference: int | None) -> tuple[list[int], int]:
    """All frames, for merges that use every exposure (each one adds signal, so noise drops)."""
    reference = default_reference(count, reference)
    return list(range(count)), reference


def choose_three(count: int, reference: int | None) -> tuple[list[int], int]:
    """Indices (in exposure order) of the frames to merge and the reference's position among them.

    With more than three frames the rule is: the shortest, the longest, and the reference, which is
    the middle frame (lower middle for an even count) unless the user chose one. If the user's
    reference is the shortest or longest frame, its neighbour takes the free slot. (The network is
    trained on three frames; `every_frame` is the choice of merges that take any number.)
    """
    reference = default_reference(count, reference)
    if count <= 3:
        return list(range(count)), reference
    if reference == 0:
        chosen = [0, 1, count - 1]
    elif reference == count - 1:
        chosen = [0, count - 2, count - 1]
    else:
        chosen = [0, reference, count - 1]
    return chosen, chosen.index(reference)


def check_content(images: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """Refuse frames that carry no picture at all: entirely black or entirely clipped white."""
    for image, name in zip(images, names):
        # Two reductions instead of np.isfinite: no full-size temporary (at 12 MP a 36 MB array
        # of fresh pages, 0.09 s a frame); NaN propagates into the maximum, -inf into the minimum.
        if image.dtype != np.uint8 and not (np.isfinite(image.max()) and np.isfinite(image.min())):
            raise BracketError(f"{name}: frame contains invalid (non-finite) values")
        step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 2.0e6)))  # ~2 MP decide 99.9% as well as 12
        sample = image[::step, ::step]
        brightest, darkest = channel_max(sample), channel_min(sample)
        if image.dtype == np.uint8:  # codes: their float32 values, as the same frame read as floats gives
            brightest, darkest = CODE_VALUES[brightest], CODE_VALUES[darkest]
        if np.mean(brightest <= 2.0 / 255.0) >= 0.999:
            raise BracketError(f"{name}: frame is entirely black")
        if np.mean(darkest >= 0.98) >= 0.999:
            raise BracketError(f"{name}: frame is entirely saturated")
