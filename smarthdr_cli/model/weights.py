"""Weights as safetensors plus a JSON model card; never a pickle.

`<name>.safetensors` holds the tensors and, in its metadata, the network configuration;
`<name>.json` beside it is the model card: configuration, training data, recipe, metrics and
the file's sha256, which is checked on load when the card is present.
"""
from __future__ import annotations

import hashlib
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from smarthdr_cli import __version__
from smarthdr_cli.errors import InputError
from smarthdr_cli.io.output import atomic_output
from smarthdr_cli.model.config import GFHDRConfig
from smarthdr_cli.model.gfhdr import GFHDR

CONFIG_KEY = "smarthdr_config"
DEFAULT_NAME = "gfhdr.safetensors"
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def default_weights() -> Path | None:
    """The trained weights shipped in the package (`weights/`), if this build has them."""
    try:
        candidate = resources.files("smarthdr_weights") / DEFAULT_NAME
    except ModuleNotFoundError:
        candidate = None
    if candidate is not None and candidate.is_file():
        return Path(str(candidate))
    local = Path(__file__).resolve().parents[2] / "weights" / DEFAULT_NAME  # a source checkout
    return local if local.is_file() else None


def save_weights(model: GFHDR, path: Path, card: dict[str, Any] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write `path` (.safetensors) and its model card atomically; returns the card."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    config = model.config.to_dict()
    with atomic_output(path, overwrite) as temp:
        save_file(state, str(temp), metadata={CONFIG_KEY: json.dumps(config)})
        digest = sha256(temp)
    full_card = {
        "name": path.stem,
        "smarthdr_version": __version__,
        "config": config,
        "parameters": sum(t.numel() for t in state.values()),
        **(card or {}),
        "sha256": digest,
    }
    with atomic_output(card_path(path), overwrite) as temp:
        temp.write_text(json.dumps(full_card, indent=2) + "\n")
    return full_card


def read_card(path: Path) -> dict[str, Any] | None:
    card = card_path(path)
    if not card.is_file():
        return None
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{card}: unreadable model card ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{card}: a model card is a JSON object")
    return data


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return (lines[0] if lines else type(exc).__name__)[:120]


def _stored_config(path: Path, metadata: dict[str, str], card: dict[str, Any] | None) -> GFHDRConfig:
    """The network configuration a weights file asks for, checked against the sane bounds."""
    raw_config = metadata.get(CONFIG_KEY) or json.dumps((card or {}).get("config", {}))
    try:
        data = json.loads(raw_config)
    except json.JSONDecodeError:
        raise InputError(f"{path}: the network configuration in the file is not valid JSON") from None
    try:
        return GFHDRConfig.from_dict(data)
    except InputError as exc:
        raise InputError(f"{path}: {exc}; the file is damaged or not smarthdr weights") from None


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "a scalar"


def _check_tensors(path: Path, config: GFHDRConfig, stored: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """Refuse, from the file's header alone, tensors that do not fit the network the config
    describes: a small file must not make us allocate a huge network (or any network)."""
    expected = config.tensor_shapes()
    problems = [f"{name} is missing" for name in expected if name not in stored]
    problems += [f"{name} is not part of the network" for name in stored if name not in expected]
    problems += [
        f"{name} is {_shape_text(stored[name][0])} in the file, {_shape_text(shape)} in the network"
        for name, shape in expected.items() if name in stored and stored[name][0] != shape
    ]
    problems += [f"{name} holds {dtype} values, not floating point" for name, (_, dtype) in stored.items() if dtype not in FLOAT_DTYPES]
    if problems:
        held = sum(math.prod(shape) for shape, _ in stored.values())
        raise InputError(
            f"{path}: weights do not fit a GFHDR network of the stored configuration ({problems[0]}"
            f"{f' and {len(problems) - 1} more problems' if len(problems) > 1 else ''}; the configuration needs "
            f"{config.parameter_count():,} values, the file holds {held:,}); the file is damaged or not smarthdr weights"
        )


def _check_finite(path: Path, state: dict[str, torch.Tensor]) -> None:
    """NaN or infinite weights give NaN images: refuse them as the bad input they are."""
    bad = [name for name, tensor in state.items() if not bool(torch.isfinite(tensor).all())]
    if bad:
        raise InputError(
            f"{path}: holds non-finite values (NaN or infinity) in {len(bad)} of its {len(state)} tensors, first {bad[0]}; "
            "the file is damaged or comes from a training run that diverged; use other weights"
        )


def load_weights(path: Path, device: str | torch.device = "cpu") -> tuple[GFHDR, dict[str, Any]]:
    """The network stored in `path`, in eval mode, and its model card (or a minimal one).

    The file is untrusted: its configuration is checked against sane bounds and against the
    tensors its header lists before anything is allocated, and its values must be finite."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    if path.suffix != ".safetensors":
        raise InputError(f"{path}: weights must be a .safetensors file (pickled checkpoints are never loaded)")
    card = read_card(path)
    if card is not None and card.get("sha256") and card["sha256"] != sha256(path):
        raise InputError(f"{path}: file does not match the sha256 in its model card {card_path(path).name}")
    try:
        with safe_open(str(path), framework="pt") as handle:  # reads the header only
            metadata = handle.metadata() or {}
            stored = {}
            for name in handle.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                tensor = handle.get_slice(name)
                stored[name] = (tuple(tensor.get_shape()), tensor.get_dtype())
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a valid safetensors file ({_first_line(exc)})") from None
    config = _stored_config(path, metadata, card)
    _check_tensors(path, config, stored)
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a valid safetensors file ({_first_line(exc)})") from None
    _check_finite(path, state)
    model = GFHDR(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # cannot happen after _check_tensors unless gfhdr.py and tensor_shapes drift apart
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise InputError(f"{path}: weights do not fit a GFHDR network of the stored configuration ({detail[:120]})") from None
    model.to(device).eval()
    return model, card or {"name": path.stem, "config": config.to_dict(), "sha256": sha256(path)}
