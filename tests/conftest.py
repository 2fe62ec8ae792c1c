"""Shared fixtures: the real camera files in ../shared/data (skipped when absent) and synthetic brackets."""
from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from smarthdr_cli.camera import render_bracket
from smarthdr_cli.data.synth.fixed_scene import moving_object, procedural_radiance
from smarthdr_cli.train.reporting import NullReporter

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"



class NoteRecorder(NullReporter):
    """A training `Reporter` that keeps every note, as a library caller's would."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def text(self) -> str:
        return "\n".join(self.notes)

@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present beside the checkout")
    return SHARED_DATA


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write_bracket(folder: Path, frames: list[np.ndarray], evs: list[float] | None = None, suffix: str = ".png") -> list[Path]:
    """Frames as image files (names sort short -> long) and, when `evs` is given, exposure.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, frame in enumerate(frames, start=1):
        path = folder / f"frame{index}{suffix}"
        iio.imwrite(path, frame)
        paths.append(path)
    if evs is not None:
        (folder / "exposure.txt").write_text("".join(f"{ev}\n" for ev in evs))
    return paths


def exif_jpeg(
    path: Path,
    pixels: np.ndarray,
    exposure: tuple[int, int] | None = (1, 100),
    when: str | None = "2024:05:01 12:00:00",
    camera: tuple[str, str] = ("Testcam", "HDR-1"),
    orientation: int = 1,
) -> Path:
    """A camera-like JPEG: Make/Model, orientation, DateTimeOriginal and ExposureTime in EXIF."""
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = camera[0], camera[1], orientation
    details = exif.get_ifd(0x8769)
    if exposure is not None:
        details[0x829A] = IFDRational(*exposure)  # ExposureTime
    if when is not None:
        details[0x9003] = when  # DateTimeOriginal
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


@pytest.fixture(scope="session")
def static_scene() -> tuple[np.ndarray, list[np.ndarray]]:
    """A static HDR scene (GT radiance, max ~1) and its 8-bit EV -2/0/+2 bracket with mild noise."""
    radiance = procedural_radiance(192, 288, seed=3)
    return radiance, render_bracket(radiance, [1.0, 4.0, 16.0], noise=0.001, seed=3)


@pytest.fixture(scope="session")
def dynamic_scene() -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """GT (the reference frame's radiance), a bracket where an object moves, and the object's mask."""
    radiance = procedural_radiance(192, 288, seed=5)
    scenes, mask = moving_object(radiance, 3, reference=1, seed=5)
    return scenes[1], render_bracket(scenes, [1.0, 4.0, 16.0], noise=0.001, seed=5), mask


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Randomly initialised weights of the tiny network: learned-backend plumbing, not quality."""
    import torch

    from smarthdr_cli.model import GFHDR
    from smarthdr_cli.model.config import PRESETS
    from smarthdr_cli.model.weights import save_weights

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(GFHDR(PRESETS["tiny"]), path, {"training_data": "random initialisation (tests only)"})
    return path
