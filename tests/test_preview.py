"""Previews: the default operator shows what the HDR holds, on any HDR; long merges show progress."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import torch
import typer.main
from rich.console import Console

import smarthdr_cli.app as app_module
from conftest import REPO, write_bracket
from smarthdr_cli import tonemap
from smarthdr_cli.app import app
from smarthdr_cli.io.hdr import read_hdr
from smarthdr_cli.merge import MergeSettings
from smarthdr_cli.model.tiling import tiled_forward, tiles

EXAMPLE = REPO / "examples" / "bracket"
FROBISHER = ("brackets", "frobisher")


def _window_scene() -> tuple[np.ndarray, tuple[slice, slice]]:
    """A dim textured room (0.01..0.03) with a window 2,000 times brighter holding +-60% texture."""
    height, width = 192, 256
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    room = 0.02 * (1.0 + 0.5 * np.sin(x / 7.0) * np.sin(y / 9.0))
    hdr = np.repeat(room[:, :, None], 3, axis=2)
    window = (slice(24, 96), slice(40, 140))
    clouds = 40.0 * (1.0 + 0.6 * np.sin(x[window] / 5.0 + y[window] / 11.0))
    hdr[window] = clouds[:, :, None] * np.array([0.9, 1.0, 1.1], dtype=np.float32)
    return hdr, window


def _grey(image: np.ndarray) -> np.ndarray:
    return tonemap.to_8bit(image).astype(np.float32).mean(axis=2)


def test_default_preview_keeps_the_texture_of_a_bright_window_that_global_reinhard_clips():
    hdr, window = _window_scene()
    fused, global_ = _grey(tonemap.OPERATORS[tonemap.DEFAULT_OPERATOR](hdr)), _grey(tonemap.reinhard(hdr))
    assert global_[window].std() < 2.0 and global_[window].mean() > 245  # burnt out: one flat white
    assert fused[window].std() > 15.0 and fused[window].mean() < 230  # the texture is there to see
    room = (slice(120, None), slice(None))
    assert fused[room].mean() > 40 and fused[room].std() > 5  # and the room is not sacrificed for it


def test_frobisher_preview_shows_the_clouds_the_old_default_burnt_out(runner, tmp_path, shared_data):
    folder = shared_data.joinpath(*FROBISHER)
    frames = [str(folder / f"IMG_{n}.jpg") for n in (2600, 2601, 2602)]
    out, preview = tmp_path / "f.exr", tmp_path / "f.png"
    result = runner.invoke(app, ["merge", *frames, "-o", str(out), "--backend", "classic", "--preview", str(preview), "-q"])
    assert result.exit_code == 0, result.output
    new = iio.imread(preview).astype(np.float32).mean(axis=2)
    old = _grey(tonemap.reinhard(read_hdr(out)))
    clouds, houses = (slice(40, 150), slice(35, 110)), (slice(165, 200), slice(40, 190))  # seen through the window
    # Measured: clouds std 3.9 -> 19.5 codes (mean 244 -> 201), houses and hills 17.5 -> 35.
    assert new[clouds].std() > 2.5 * old[clouds].std()
    assert new[clouds].mean() < old[clouds].mean() - 20
    assert new[houses].std() > 1.5 * old[houses].std()
    room = (slice(220, 420), slice(230, 630))
    assert new[room].mean() > 0.9 * old[room].mean()  # the room keeps its light


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 2, 3), (2, 1, 3), (3, 5, 3), (37, 91, 3)])
@pytest.mark.parametrize("scale", [0.0, 1e-12, 1e-3, 1.0, 1e4, 65504.0])
def test_fusion_takes_any_hdr_without_warnings(shape, scale):
    rng = np.random.default_rng(sum(shape))
    hdr = (rng.random(shape) ** 3 * scale).astype(np.float32)
    hdr.reshape(-1)[:: 3] = 0.0  # zeros among the values
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            image = tonemap.fusion(hdr)
    assert image.shape == shape and image.dtype == np.float32
    assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
    if scale == 0.0:
        assert image.max() == 0.0  # black stays black


def test_fusion_is_scale_invariant_and_deterministic():
    hdr, _ = _window_scene()
    image = tonemap.fusion(hdr)
    assert np.array_equal(image, tonemap.fusion(hdr.copy()))
    dim, bright = tonemap.fusion(hdr * 1e-6), tonemap.fusion(hdr * 1e3)  # a very dark and a very bright HDR
    assert np.abs(tonemap.to_8bit(dim).astype(int) - tonemap.to_8bit(image)).max() <= 1
    assert np.abs(tonemap.to_8bit(bright).astype(int) - tonemap.to_8bit(image)).max() <= 1


def test_exposure_fusion_is_opencvs_mertens_with_well_exposedness_weights():
    rng = np.random.default_rng(7)
    for shape in ((1, 1, 3), (6, 9, 3), (64, 48, 3), (97, 131, 3)):
        exposures = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(3)]
        expected = cv2.createMergeMertens(0.0, 0.0, 1.0).process(exposures)
        assert np.abs(tonemap.exposure_fusion(exposures) - expected).max() < 1e-5


def test_fusion_of_12_mp_stays_within_seconds():
    hdr = cv2.resize(_window_scene()[0], (4000, 3000), interpolation=cv2.INTER_NEAREST)
    import time

    started = time.perf_counter()
    tonemap.fusion(hdr)
    assert time.perf_counter() - started < 30.0  # about 3-5 s on 2 shared cores; generous for slow CI


def test_fusion_is_the_default_everywhere():
    assert tonemap.DEFAULT_OPERATOR == "fusion" and set(tonemap.OPERATORS) == {"fusion", "reinhard", "mu"}
    assert MergeSettings(output=Path("o.exr")).tonemap == tonemap.DEFAULT_OPERATOR
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name in ("merge", "batch"):
        (option,) = [p for p in commands[name].params if p.name == "tonemap"]
        assert option.default == tonemap.DEFAULT_OPERATOR, name


def test_each_operator_can_be_asked_for(runner, tmp_path):
    previews = {}
    for operator in tonemap.OPERATORS:
        preview = tmp_path / f"{operator}.png"
        result = runner.invoke(
            app, ["merge", str(EXAMPLE), "-o", str(tmp_path / f"{operator}.exr"), "--backend", "classic", "--preview", str(preview), "--tonemap", operator, "-q"]
        )
        assert result.exit_code == 0, result.output
        previews[operator] = iio.imread(preview)
    assert not np.array_equal(previews["fusion"], previews["reinhard"])
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(tmp_path / "x.exr"), "--backend", "classic", "--preview", str(tmp_path / "x.png"), "--tonemap", "drago"])
    assert result.exit_code == 2 and "fusion" in result.stderr


# --- progress of tiled (learned) merges ------------------------------------------------------------


def test_tiled_forward_reports_every_tile():
    frames = tuple(torch.rand(1, 6, 100, 150) for _ in range(3))
    calls: list[tuple[int, int]] = []

    def forward(a, b, c):
        return b[:, :3], None

    tiled_forward(forward, frames, tile=64, with_uncertainty=False, progress=lambda done, total: calls.append((done, total)))
    count = len(list(tiles(100, 150, 64, 32, 8)))
    assert count > 1 and calls == [(i, count) for i in range(1, count + 1)]
    calls.clear()
    tiled_forward(forward, frames, tile=256, with_uncertainty=False, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]  # one tile is still reported, so a bar can finish


@pytest.fixture
def small_bracket(tmp_path, static_scene) -> Path:
    """A 96x160 bracket folder: more than one of the smallest tiles."""
    write_bracket(tmp_path / "b", [frame[:96, :160] for frame in static_scene[1]], evs=[0, 2, 4])
    return tmp_path / "b"


def test_a_learned_merge_reports_every_tile_to_its_callback(tmp_path, tiny_weights, small_bracket):
    from smarthdr_cli.merge import run_merge

    calls: list[tuple[int, int]] = []
    settings = MergeSettings(output=tmp_path / "o.exr", backend="cpu", weights=tiny_weights, max_memory=1.0, threads=1)
    run_merge([small_bracket], settings, progress=lambda done, total: calls.append((done, total)))
    total = calls[-1][1]
    assert total > 1 and calls == [(i, total) for i in range(1, total + 1)]  # 1 byte: the smallest tiles


def _merge_on(console: Console, monkeypatch, runner, tmp_path, tiny_weights, bracket: Path, *extra: str):
    monkeypatch.setattr(app_module, "_stderr", lambda: console)
    args = ["merge", str(bracket), "-o", str(tmp_path / "o.exr"), "--backend", "cpu"]
    return runner.invoke(app, [*args, "--weights", str(tiny_weights), "--max-memory", "1", "--threads", "1", *extra])


BAR = "━"  # rich's bar character


def test_a_terminal_sees_a_tile_progress_bar(monkeypatch, runner, tmp_path, tiny_weights, small_bracket):
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, highlight=False)
    result = _merge_on(console, monkeypatch, runner, tmp_path, tiny_weights, small_bracket)
    assert result.exit_code == 0, result.output
    shown = screen.getvalue()
    assert BAR in shown and "tiles" in shown and "ETA" in shown
    assert "wrote" in shown


def test_quiet_or_not_a_terminal_shows_no_bar(monkeypatch, runner, tmp_path, tiny_weights, small_bracket):
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, highlight=False)
    result = _merge_on(console, monkeypatch, runner, tmp_path, tiny_weights, small_bracket, "-q")
    assert result.exit_code == 0, result.output
    assert screen.getvalue() == "" and result.output == ""
    monkeypatch.undo()
    result = runner.invoke(
        app, ["merge", str(small_bracket), "-o", str(tmp_path / "p.exr"), "--backend", "cpu", "--weights", str(tiny_weights), "--max-memory", "1", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr  # the status lines, and nothing else: CliRunner's stderr is no terminal
    assert BAR not in result.output and "tiles" not in result.output and "\x1b[" not in result.output
