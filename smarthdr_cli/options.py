"""The options several `smarthdr` commands share, each declared once (pip's `cmdoptions` pattern).

An alias is a `typing.Annotated` type that carries the option's flag and its one help text; a
command states only its default: `backend: opts.Backend = "auto"`. The help texts name no
default that Typer shows itself (`[default: auto]`).

`train`'s flags are TrainConfig fields that default to None ("not given", so that the config
file and the ablation row apply); `setting` declares one of them and takes the default it names
in the help from TrainConfig, and `config_flags` turns the given flags into TrainConfig's fields
by name. `pseudo-label` takes its defaults from TrainConfig too, so that pseudo labels made with
defaults match a training run with defaults.

Imported by the CLI for every command (`--version` included): nothing heavy here, and
TrainConfig's module is plain Python.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.core

from smarthdr_cli.train.config import TrainConfig

# -- help without a value type for flags ------------------------------------------------------------


class _BareFlags:
    """Typer labels every option with its value type, flags too (`--version <bool>`); a flag
    takes no value, so its label is left empty (the built-in --help and completion flags too)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Group(_BareFlags, typer.core.TyperGroup):
    """The `smarthdr` command group."""


class Command(_BareFlags, typer.core.TyperCommand):
    """A `smarthdr` subcommand."""


# -- reading frames: merge, batch, evaluate, train, pseudo-label -----------------------------------

RESPONSE = (
    "Camera response of JPEG/PNG/TIFF frames: auto (calibrate, but gamma for TIFF/PNG frames in a folder with "
    "exposure.txt; RAW needs none), gamma, calibrate, or a curve FILE (256 lines). RAW frames accept only auto or gamma."
)
ALIGN = "Pre-align hand-held frames to the reference: none, translation or homography."

Response = Annotated[str, typer.Option("--response", help=RESPONSE)]
Align = Annotated[str, typer.Option("--align", help=ALIGN)]

# -- backends: merge, batch, evaluate -----------------------------------------------------------------

Backend = Annotated[str, typer.Option("--backend", help="Backend: auto (cuda, then cpu, then classic) or a name from `smarthdr backends`.")]
Weights = Annotated[Optional[Path], typer.Option("--weights", help="Weights (.safetensors) for a learned backend.")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads per merge, for backends that use them.")]
Precision = Annotated[
    str, typer.Option("--precision", help="Learned backends' arithmetic: auto (fp32 on CPU, bf16 or fp16 on GPU), fp32, bf16 or fp16.")
]
MaxMemory = Annotated[
    Optional[str],
    typer.Option(
        "--max-memory",
        help="Memory one learned inference may use, e.g. 2G or 512M; sets the tile size. Default: 2G on CPU, 70% of free GPU memory.",
    ),
]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the network (learned backends; slow first run).")]

# -- outputs: merge, batch ----------------------------------------------------------------------------

Float32 = Annotated[bool, typer.Option("--float32", help="Write 32-bit float EXR instead of half.")]
Tonemap = Annotated[
    str,
    typer.Option(
        "--tonemap",
        help="Preview operator: fusion (local: exposure fusion of synthetic exposures; keeps a bright window's view and the "
        "room's light), reinhard (global, white point at the 99.9th percentile) or mu (the log-like mu-law, mu=5000, "
        "used by the metrics).",
    ),
]

# -- every command --------------------------------------------------------------------------------------

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or status lines on stderr (errors still shown).")]

# -- the network on a torch device: train, pseudo-label -----------------------------------------------

DEVICE = "Torch device: auto, cpu, cuda or cuda:N."
CACHE_DIR = "Decoded-scene cache. Default: $SMARTHDR_CACHE or ~/.cache/smarthdr/scenes."
Device = Annotated[str, typer.Option("--device", help=DEVICE)]
CacheDir = Annotated[Optional[Path], typer.Option("--cache-dir", help=CACHE_DIR)]

# -- pseudo labels and bi-level masking (eqs. 11, 12): train, pseudo-label ----------------------------

TAU_PATCH = "Patch-level threshold tau_pa (eq. 11)."
TAU_PIXEL = "Pixel-level threshold tau_pi (eq. 12)."
PATCH_MASK = "Patch-level masking (eq. 11)."
PIXEL_MASK = "Pixel-level masking (eq. 12)."
NORMALISATION = (
    "Uncertainty normalisation: global (min-max over all pseudo labels of a pass; the seed), scene (each pseudo label by its "
    "own range) or rank (each score becomes its quantile among all scores of the pass, so tau is the share dropped: tau 0.4 "
    "drops the worst 40% of patches and of pixels)."
)
SCORER = "Pseudo-label scorer: judge (the network's uncertainty; the seed) or reference (SMAE-style similarity to the reference)."

TauPatch = Annotated[float, typer.Option("--tau-patch", help=TAU_PATCH)]
TauPixel = Annotated[float, typer.Option("--tau-pixel", help=TAU_PIXEL)]
PatchMask = Annotated[bool, typer.Option("--patch-mask/--no-patch-mask", help=PATCH_MASK)]
PixelMask = Annotated[bool, typer.Option("--pixel-mask/--no-pixel-mask", help=PIXEL_MASK)]
Normalisation = Annotated[str, typer.Option("--normalisation", help=NORMALISATION)]
Scorer = Annotated[str, typer.Option("--scorer", help=SCORER)]

# -- train: TrainConfig fields as flags -----------------------------------------------------------------

# `train --help` panels (its run flags stay in the default "Options" panel, with --help).
DATA = "Data"
MODEL = "Model"
SCHEDULE = "Schedule"
LOSSES = "Losses"
SEMI = "Semi-supervised stage and masking"
PERFORMANCE = "Performance"

_TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def shown(value: Any) -> str:
    """A default in the words of the help: on/off, 2e-4 as 0.0002, 1.0 as 1."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(?=\d)", lambda m: "e" + m[1].replace("+", ""), f"{value:g}")
    return str(value)


def setting(field: str, help: str, panel: str, *decls: str, unset: str | None = None, **kwargs: Any) -> Any:
    """The typer.Option of the `train` flag for TrainConfig.`field`: None when not given; the help
    ends with TrainConfig's default (`unset` says what a default of None means; without it such
    a default is not mentioned)."""
    default = _TRAIN_DEFAULTS[field]  # KeyError: not a TrainConfig field
    if default is not None:
        help = f"{help} Default: {shown(default)}."
    elif unset is not None:
        help = f"{help} Default: {unset}."
    return typer.Option(*decls, help=help, rich_help_panel=panel, **kwargs)


def config_flags(given: dict[str, Any]) -> dict[str, Any]:
    """The `train` flags named like TrainConfig fields, by field name, paths as text; None: not given."""
    return {name: str(value) if isinstance(value, Path) else value for name, value in given.items() if name in _TRAIN_DEFAULTS}
