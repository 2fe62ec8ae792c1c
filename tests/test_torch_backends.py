"""The `cpu` and `cuda` backends end to end, with small weights the tests create."""
import json

import numpy as np
import OpenEXR
import pytest
import torch

from conftest import REPO
from smarthdr_backends.base import BackendOptions, registry
from smarthdr_backends.torch_gfhdr import CpuBackend
from smarthdr_cli.app import app
from smarthdr_cli.bracket import Bracket
from smarthdr_cli.io.hdr import read_hdr
from smarthdr_cli.metrics import psnr_mu
from smarthdr_cli.model.inference import BORDER
from smarthdr_cli.preprocess import network_input

EXAMPLE = REPO / "examples" / "bracket"


@pytest.fixture
def no_shipped_weights(monkeypatch):
    """A build without `weights/gfhdr.safetensors` (as a user who deleted it, or a plugin wheel)."""
    import smarthdr_cli.model.weights as weights_module

    monkeypatch.setattr(weights_module, "default_weights", lambda: None)


def test_without_weights_auto_falls_back_to_classic_and_says_why(runner, tmp_path, no_shipped_weights):
    state = registry()["cpu"].availability(BackendOptions())
    assert not state.available and "--weights" in state.reason
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(tmp_path / "o.exr"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["backend"] == "classic"
    assert "cpu: no trained weights installed" in result.stderr
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(tmp_path / "p.exr"), "--backend", "cpu"])
    assert result.exit_code == 2 and "--weights" in result.stderr


def test_cpu_backend_merges_with_uncertainty(runner, tmp_path, tiny_weights):
    out, sigma = tmp_path / "o.exr", tmp_path / "u.exr"
    result = runner.invoke(
        app, ["merge", str(EXAMPLE), "-o", str(out), "--weights", str(tiny_weights), "--uncertainty", str(sigma), "--json", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["backend"] == "cpu" and report["weights"].startswith("tiny@")
    assert set(report["outputs"]) == {"hdr", "uncertainty"}
    assert OpenEXR.File(str(out)).header()["smarthdr:weights"] == report["weights"]
    hdr, uncertainty = read_hdr(out), read_hdr(sigma)
    assert hdr.shape == uncertainty.shape == (384, 576, 3)
    assert 0 <= hdr.min() and hdr.max() <= 1 and 0 < uncertainty.min() and uncertainty.max() < 1


def test_backend_feeds_the_network_eq1_inputs(tiny_weights):
    backend = CpuBackend(BackendOptions(weights=tiny_weights, uncertainty=True))
    rng = np.random.default_rng(0)
    images = [rng.random((24, 40, 3)).astype(np.float32) for _ in range(3)]
    bracket = Bracket(images, np.array([1.0, 4.0, 16.0]), 1)
    result = backend.merge(bracket)
    mirrored = [np.pad(im, ((BORDER, BORDER), (BORDER, BORDER), (0, 0)), mode="reflect") for im in images]  # see inference.BORDER
    frames = [network_input(torch.from_numpy(im).permute(2, 0, 1)[None], t, 2.2, axis=1) for im, t in zip(mirrored, (1.0, 4.0, 16.0))]
    with torch.no_grad():
        expected, sigma = backend.model(*frames)
    inside = (0, slice(None), slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    assert np.allclose(result.hdr, expected[inside].permute(1, 2, 0).numpy(), atol=1e-6)
    assert np.allclose(result.uncertainty, sigma[inside].permute(1, 2, 0).numpy(), atol=1e-6)
    assert CpuBackend(BackendOptions(weights=tiny_weights)).merge(bracket).uncertainty is None  # judge skipped


def test_small_memory_budget_tiles_without_visible_change(tiny_weights):
    rng = np.random.default_rng(1)
    images = [np.clip(rng.random((1, 1, 3)) + rng.normal(0, 0.05, (160, 200, 3)), 0, 1).astype(np.float32) for _ in range(3)]
    bracket = Bracket(images, np.array([1.0, 4.0, 16.0]), 1)
    whole = CpuBackend(BackendOptions(weights=tiny_weights, max_memory=1e12)).merge(bracket).hdr
    tiled_backend = CpuBackend(BackendOptions(weights=tiny_weights, max_memory=1.0))
    assert tiled_backend.tile_size() == 64
    tiled = tiled_backend.merge(bracket).hdr
    assert psnr_mu(tiled[8:-8, 8:-8], whole[8:-8, 8:-8]) > 50.0


def test_learned_backend_refuses_what_it_cannot_merge(runner, tmp_path, tiny_weights, static_scene):
    from conftest import write_bracket

    _, frames = static_scene
    paths = write_bracket(tmp_path / "two", frames[:2])
    result = runner.invoke(app, ["merge", *map(str, paths), "-o", str(tmp_path / "o.exr"), "--ev", "0,2", "--weights", str(tiny_weights), "--backend", "cpu"])
    assert result.exit_code == 2 and "three frames" in result.stderr
    assert not (tmp_path / "o.exr").exists()
    # auto never fails on a bracket classic can merge: it says so and merges it with classic
    result = runner.invoke(app, ["merge", *map(str, paths), "-o", str(tmp_path / "o.exr"), "--ev", "0,2", "--weights", str(tiny_weights), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["backend"] == "classic"
    assert "auto merges this bracket with classic" in result.stderr
    result = runner.invoke(app, ["merge", *map(str, paths), "-o", str(tmp_path / "u.exr"), "--ev", "0,2", "--weights", str(tiny_weights), "--uncertainty", str(tmp_path / "s.exr")])
    assert result.exit_code == 2 and "drop --uncertainty" in result.stderr
    assert not (tmp_path / "u.exr").exists() and not (tmp_path / "s.exr").exists()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights")
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(tmp_path / "p.exr"), "--weights", str(bad), "--backend", "cpu"])
    assert result.exit_code == 2 and "bad.safetensors" in result.stderr
    assert not (tmp_path / "p.exr").exists()
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(tmp_path / "q.exr"), "--weights", str(tiny_weights), "--precision", "fp8"])
    assert result.exit_code == 2 and "--precision" in result.stderr


def test_bf16_precision_on_cpu_stays_close_to_fp32(tiny_weights):
    rng = np.random.default_rng(2)
    images = [rng.random((32, 48, 3)).astype(np.float32) for _ in range(3)]
    bracket = Bracket(images, np.array([1.0, 4.0, 16.0]), 1)
    fp32 = CpuBackend(BackendOptions(weights=tiny_weights)).merge(bracket).hdr
    bf16 = CpuBackend(BackendOptions(weights=tiny_weights, precision="bf16")).merge(bracket).hdr
    assert psnr_mu(bf16, fp32) > 40.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the cuda backend is available")
def test_cuda_backend_explains_why_it_is_unavailable(runner, tmp_path, tiny_weights):
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(tmp_path / "o.exr"), "--backend", "cuda", "--weights", str(tiny_weights)])
    assert result.exit_code == 2 and "torch sees no GPU" in result.stderr
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(tmp_path / "p.exr"), "--weights", str(tiny_weights), "--json", "-q"])
    assert json.loads(result.stdout)["backend"] == "cpu"  # auto: cuda unavailable, cpu has weights


def test_auto_fallback_keeps_the_thread_limit(runner, tmp_path, tiny_weights, static_scene, monkeypatch):
    """The backend auto falls back to is started with the user's options: --threads 1 holds for it."""
    from conftest import write_bracket
    from smarthdr_backends import classic

    started = []
    real = classic.ClassicBackend.__init__

    def recording(self, options=None):
        started.append(options)
        real(self, options)

    monkeypatch.setattr(classic.ClassicBackend, "__init__", recording)
    _, frames = static_scene
    paths = write_bracket(tmp_path / "two", frames[:2])
    result = runner.invoke(app, ["merge", *map(str, paths), "-o", str(tmp_path / "o.exr"), "--ev", "0,2", "--weights", str(tiny_weights), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "auto merges this bracket with classic" in result.stderr
    assert started and started[-1].threads == 1
