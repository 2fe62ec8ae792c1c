"""Weights are untrusted files (issue 14): a config that asks for more than the file holds, NaN
values or a malformed config are bad input (exit 2, one line naming the file), never a memory
blow-up or an internal error."""
from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import REPO
from smarthdr_cli.app import app
from smarthdr_cli.errors import InputError
from smarthdr_cli.model import GFHDR, GFHDRConfig
from smarthdr_cli.model.config import PRESETS
from smarthdr_cli.model.weights import CONFIG_KEY, load_weights, save_weights

EXAMPLE = REPO / "examples" / "bracket"
MEMORY_LIMIT = 3 << 30  # a merge with tiny weights peaks under 0.4 GB resident


def _tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {name: tensor.contiguous() for name, tensor in GFHDR(PRESETS["tiny"]).state_dict().items()}


def _write(path: Path, state: dict[str, torch.Tensor], config: object) -> Path:
    """A safetensors file with `state` and, as its smarthdr_config, `config` (no model card)."""
    save_file(state, str(path), metadata={CONFIG_KEY: json.dumps(config)})
    return path


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    "config",
    [
        PRESETS["full"], PRESETS["small"], PRESETS["tiny"],
        GFHDRConfig(in_channels=4, embed_dim=12, depths=(0, 3, 1, 2), num_heads=(3, 4, 2, 6), window_size=5, mlp_ratio=1.5, reduction=5, judge_channels=7),
    ],
    ids=["full", "small", "tiny", "odd"],
)
def test_shapes_a_config_implies_are_the_networks(config: GFHDRConfig) -> None:
    """The header check is only as good as this: tensor_shapes must follow gfhdr.py exactly."""
    state = GFHDR(config).state_dict()
    assert config.tensor_shapes() == {name: tuple(tensor.shape) for name, tensor in state.items()}
    assert config.parameter_count() == sum(tensor.numel() for tensor in state.values())


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (  # the file: 155 GB of network asked for by 60 kB of tensors
            {**PRESETS["tiny"].to_dict(), "embed_dim": 4096, "depths": [64, 64, 64], "num_heads": [8, 8, 8]},
            "model config: embed_dim 4096 is outside 1..2048; the file is damaged or not smarthdr weights",
        ),
        (  # within the bounds, 3.3 GB: only the file's own tensor shapes refuse it
            {**PRESETS["full"].to_dict(), "embed_dim": 1024, "depths": [24, 24, 24], "num_heads": [8, 8, 8]},
            "weights do not fit a GFHDR network of the stored configuration",
        ),
    ],
    ids=["beyond-bounds", "within-bounds"],
)
def test_small_file_with_a_huge_config_is_refused_before_allocating(tmp_path: Path, config: dict, says: str) -> None:
    """Run under an address-space limit: building the network the file asks for cannot succeed
    (the old loader died of MemoryError under it, or took the machine down without it)."""
    evil = _write(tmp_path / "evil.safetensors", _tiny_state(), config)
    assert evil.stat().st_size < 1 << 20
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "smarthdr_cli", "merge", str(EXAMPLE), "-o", str(tmp_path / "out.exr"), "--backend", "cpu",
         "--weights", str(evil), "--threads", "1"],
        capture_output=True, text=True, timeout=240, preexec_fn=_limit_memory,
    )
    seconds = time.monotonic() - began
    errors = _error_lines(done.stderr)
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(errors) == 1 and f"{evil}: {says}" in errors[0] and "internal error" not in errors[0], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out.exr").exists()
    assert seconds < 120, seconds  # refused from the header: no network is built
    if "do not fit" in says:  # the sizes that tell a user what is wrong
        assert "833,201,638 values, the file holds 15,000" in errors[0], errors[0]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_weights_are_bad_input(tmp_path: Path, runner, value: float) -> None:
    torch.manual_seed(0)
    model = GFHDR(PRESETS["tiny"])
    with torch.no_grad():
        model.conv_last.weight[0, 0, 1, 1] = value
    path = tmp_path / "diverged.safetensors"
    save_weights(model, path)  # a consistent model card: only the values are wrong
    with pytest.raises(InputError, match="holds non-finite values"):
        load_weights(path)
    result = runner.invoke(app, ["merge", str(EXAMPLE), "-o", str(tmp_path / "out.exr"), "--backend", "cpu", "--weights", str(path), "--threads", "1"])
    errors = _error_lines(result.stderr)
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and str(path) in errors[0] and "holds non-finite values" in errors[0] and "conv_last.weight" in errors[0], result.output
    assert not (tmp_path / "out.exr").exists()


@pytest.mark.parametrize(
    "config",
    [
        {**PRESETS["tiny"].to_dict(), "embed_dim": "8"},
        {**PRESETS["tiny"].to_dict(), "num_heads": [0, 0]},
        {**PRESETS["tiny"].to_dict(), "depths": 3},
        {**PRESETS["tiny"].to_dict(), "mlp_ratio": 0.01},
        {**PRESETS["tiny"].to_dict(), "window_size": 8.5},
        [8, 2, 1],
    ],
    ids=["string-width", "zero-heads", "depths-not-a-list", "zero-mlp", "float-window", "not-an-object"],
)
def test_malformed_stored_config_is_bad_input_naming_the_file(tmp_path: Path, config: object) -> None:
    path = _write(tmp_path / "odd.safetensors", _tiny_state(), config)
    with pytest.raises(InputError) as raised:
        load_weights(path)
    assert str(raised.value).startswith(f"{path}: ") and "\n" not in str(raised.value)


def test_integer_tensors_are_refused_from_the_header(tmp_path: Path) -> None:
    state = _tiny_state()
    state["conv_last.bias"] = torch.zeros(3, dtype=torch.int64)
    path = _write(tmp_path / "ints.safetensors", state, PRESETS["tiny"].to_dict())
    with pytest.raises(InputError, match="conv_last.bias holds I64 values"):
        load_weights(path)
