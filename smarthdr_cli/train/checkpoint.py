"""A training run folder on disk: config.json, checkpoint.pt, metrics.jsonl and the exported
students, written atomically and read as untrusted.

A run folder outlives the process that wrote it: a kill, a full disk or a hand edit can leave any
of its files empty, torn or changed. Every problem found here is an InputError or OutputError that
says what to do (restore the file, or start a new run with -o); what a kill leaves behind on its
own (a torn last line of metrics.jsonl, a run stopped before its first checkpoint) is recovered.
"""
from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smarthdr_cli import __version__
from smarthdr_cli.errors import InputError, OutputError
from smarthdr_cli.io.output import atomic_output
from smarthdr_cli.model.weights import save_weights
from smarthdr_cli.train.config import TrainConfig

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
CONFIG = "config.json"
METRICS = "metrics.jsonl"
NEW_RUN = "start a new run with -o"


def _first_line(exc: BaseException) -> str:
    """The gist of a library's error: its first sentence of its first line."""
    lines = str(exc).splitlines()
    return (lines[0].split(". ")[0] if lines else type(exc).__name__)[:160]


def is_temporary(path: Path) -> bool:
    """A temporary of `atomic_output` / `atomic_folder` (`.NAME.….partial…`): a killed write's
    leftover is no part of a run."""
    return path.name.startswith(".") and ".partial" in path.name


def never_checkpointed(run_dir: Path) -> bool:
    """A run folder of a run that stopped before its first checkpoint: `--resume` starts it again."""
    if not (run_dir / CONFIG).is_file() or (run_dir / CHECKPOINT).exists():
        return False
    try:
        return recorded_epochs(run_dir) <= 1
    except InputError:  # a damaged metrics.jsonl: not what a kill leaves
        return False


def check_run_dir(run_dir: Path) -> None:
    """Refuse to mix two runs in one folder (checked before any data is decoded)."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise OutputError(f"{run_dir}: is a file; choose another -o for the run folder")
    if not any(not is_temporary(entry) for entry in run_dir.iterdir()):
        return  # empty, or only what a write killed before the run's config.json was in place leaves
    if never_checkpointed(run_dir):
        raise OutputError(
            f"{run_dir}: holds a run that stopped before its first checkpoint; use --resume {run_dir} to start it again "
            "with its saved config, or another -o"
        )
    raise OutputError(f"{run_dir}: already holds files; use --resume {run_dir} to continue that run, or another -o")


def prepare_run_dir(run_dir: Path, config: TrainConfig) -> None:
    """A new run folder with the resolved config, made once every input has been checked."""
    check_run_dir(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{run_dir}: cannot create the run folder ({exc.strerror or exc})") from None
    with atomic_output(run_dir / CONFIG, overwrite=True) as temp:
        temp.write_text(json.dumps(config.to_dict(), indent=1) + "\n")


def resumed_config(run_dir: Path) -> TrainConfig:
    """The saved configuration of a run, checked like any settings file."""
    path = run_dir / CONFIG
    if not path.is_file():
        raise InputError(f"{run_dir}: not a training run folder (no {CONFIG}); {NEW_RUN}")
    way_out = f"restore the run's {CONFIG} as it was written, or {NEW_RUN}"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable ({_first_line(exc)}); {way_out}") from None
    if not isinstance(saved, dict):
        kind = {list: "list", str: "string", bool: "true/false", type(None): "null"}.get(type(saved), "number")
        raise InputError(f"{path}: holds a JSON {kind}, not the object of a run's settings; {way_out}")
    # runs started before the judge was detached trained with the gradient through: resume them so
    saved.setdefault("detach_judge", False)
    try:
        return TrainConfig.from_dict(saved, str(path))
    except InputError as exc:
        where = "" if str(exc).startswith(str(path)) else f"{path}: "  # TrainConfig's own checks do not name the file
        raise InputError(f"{where}{exc}; {way_out}") from None


def _record(line: str) -> dict[str, Any] | None:
    """One epoch's record of metrics.jsonl, or None for a line that is not one."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or type(record.get("epoch")) is not int or record["epoch"] < 1:
        return None
    return record


def parse_history(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The records of metrics.jsonl and whether its last line was torn (cut by a kill) and left out.

    The loop appends one line per epoch before that epoch's checkpoint, so a kill can cut only the
    last line, whose epoch is trained again; a bad line before it is damage that we do not guess
    around."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: unreadable ({exc.strerror or exc}); restore it, or {NEW_RUN}") from None
    lines = [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    records: list[dict[str, Any]] = []
    for index, (number, line) in enumerate(lines):
        record = _record(line)
        if record is None:
            if index == len(lines) - 1:
                return records, True
            raise InputError(f"{path}: line {number} is not an epoch's record (damaged); repair or delete that line, or {NEW_RUN}")
        records.append(record)
    return records, False


def recorded_epochs(run_dir: Path) -> int:
    """The last epoch metrics.jsonl records (0 without one)."""
    path = run_dir / METRICS
    if not path.is_file():
        return 0
    records, _ = parse_history(path)
    return max((r["epoch"] for r in records), default=0)


def read_history(run_dir: Path, epochs: int, note: Callable[[str], None], write: bool = True) -> list[dict[str, Any]]:
    """metrics.jsonl up to the checkpoint's epoch, rewritten without lines of a lost epoch (a torn
    last line included, so the next epoch's line starts on a line of its own)."""
    path = run_dir / METRICS
    if not path.is_file():
        return []
    records, torn = parse_history(path)
    if torn:
        note(f"{path}: dropped its torn last line (the run was stopped while writing it); that epoch is trained again")
    kept = [r for r in records if r["epoch"] <= epochs]
    ends_clean = path.read_bytes().endswith(b"\n") or path.stat().st_size == 0
    if write and (torn or len(kept) != len(records) or not ends_clean):
        with atomic_output(path, overwrite=True) as temp:
            temp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The last checkpoint of a run, loaded without unpickling code (weights_only), or None for a
    run that stopped before its first checkpoint (it starts again from epoch 0)."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        if not (run_dir / CONFIG).is_file():
            raise InputError(f"{run_dir}: not a training run folder (no {CONFIG}); {NEW_RUN}")
        recorded = recorded_epochs(run_dir)
        if recorded > 1:
            raise InputError(f"{run_dir}: no {CHECKPOINT}, yet {METRICS} records {recorded} epochs; put the run's {CHECKPOINT} back, or {NEW_RUN}")
        return None
    way_out = f"restore the run's {CHECKPOINT}, or {NEW_RUN}"
    try:
        empty = path.is_file() and path.stat().st_size == 0
        if empty:
            raise InputError(f"{path}: the checkpoint is empty (the disk filled up or the machine stopped while it was written); {way_out}")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is the user's file problem
        raise InputError(f"{path}: unreadable checkpoint ({_first_line(exc)}); {way_out}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a smarthdr training checkpoint; {way_out}")
    kinds: dict[str, tuple[type, ...]] = {
        "epoch": (int,), "best": (int, float), "elapsed": (int, float), "student": (dict,), "optimizer": (dict,),
        "scaler": (dict,), "torch_rng": (torch.Tensor,), "teacher": (dict, type(None)),
    }
    for key, kind in kinds.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise InputError(f"{path}: damaged checkpoint ({key!r} is missing or of the wrong kind); {way_out}")
    if state["epoch"] < 1 or math.isnan(state["best"]) or not math.isfinite(state["elapsed"]):
        raise InputError(f"{path}: damaged checkpoint (epoch {state['epoch']}, best {state['best']}, elapsed {state['elapsed']}); {way_out}")
    return state


def checkpoint_state(
    *, epoch: int, stage: str, student: nn.Module, teacher: nn.Module | None, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, device: torch.device, best: float, elapsed: float, config: TrainConfig,
) -> dict[str, Any]:
    """What `--resume` needs to continue bit-exactly, plus where it ran (threads, device): a resume
    elsewhere is allowed, and warned about."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": __version__,
        "epoch": epoch,
        "stage": stage,
        "student": student.state_dict(),
        "teacher": teacher.state_dict() if teacher is not None else None,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "best": best,
        "elapsed": elapsed,
        "config": config.to_dict(),
        "threads": torch.get_num_threads(),
        "device": device.type,
    }


def save_epoch(run_dir: Path, record: dict[str, Any], state: dict[str, Any]) -> None:
    """One epoch's line of metrics.jsonl, then its checkpoint (`checkpoint_state`), atomically.

    Metrics first: a crash between the two leaves a line that `--resume` drops and rewrites."""
    with (run_dir / METRICS).open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    with atomic_output(run_dir / CHECKPOINT, overwrite=True) as temp:
        torch.save(state, temp)


def student_path(run_dir: Path, which: str) -> Path:
    """Where a run exports its student: `which` is "best" (by validation) or "final"."""
    return run_dir / f"student-{which}.safetensors"


def export_student(
    run_dir: Path, which: str, student: nn.Module, config: TrainConfig, epochs: int, seconds: float, record: dict[str, Any] | None,
) -> Path:
    """The student as weights that `merge --weights` runs, with a card that says how it was trained."""
    path = student_path(run_dir, which)
    save_weights(student, path, _card(config, epochs, seconds, record, which), overwrite=True)
    return path


def _card(config: TrainConfig, epochs: int, seconds: float, record: dict[str, Any] | None, which: str) -> dict[str, Any]:
    return {
        "recipe": "semi-supervised GFHDR, bi-level uncertain area masking (AAAI 2026)" if config.semi_supervised else "supervised GFHDR",
        "which": which,
        "epochs": epochs,
        "training_seconds": round(seconds, 1),
        "commit": _git_commit(),
        "training": {k: v for k, v in config.to_dict().items() if k != "extra"},
        "last_epoch": record,
    }


def _git_commit() -> str | None:
    """The source's commit, for the card (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _shape_text(shape: torch.Size | tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "a scalar"


def _state_problem(what: str, saved: dict[str, Any], module: nn.Module) -> str | None:
    """The first way a saved state dict does not fit `module` (names, kinds, shapes)."""
    own = module.state_dict()
    for name, tensor in own.items():
        value = saved.get(name)
        if not isinstance(value, torch.Tensor):
            return f"{what} {name} is missing"
        if value.shape != tensor.shape:
            return f"{what} {name} is {_shape_text(value.shape)} in the checkpoint, {_shape_text(tensor.shape)} for the run's config"
        if not value.is_floating_point() and tensor.is_floating_point():
            return f"{what} {name} holds {value.dtype} values"
    extra = sorted(set(saved) - set(own))
    return f"{what} has {extra[0]}, which the run's network has not" if extra else None


def _optimizer_problem(saved: dict[str, Any], params: list[nn.Parameter]) -> str | None:
    groups, states = saved.get("param_groups"), saved.get("state")
    if not isinstance(groups, list) or len(groups) != 1 or not isinstance(groups[0], dict) or not isinstance(states, dict):
        return "the optimizer state is not Adam's over one group"
    if len(groups[0].get("params", ())) != len(params):
        return f"the optimizer state covers {len(groups[0].get('params', ()))} tensors, the network has {len(params)}"
    for index, entry in states.items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(entry, dict):
            return "the optimizer state is damaged"
        for key in ("exp_avg", "exp_avg_sq"):
            value = entry.get(key)
            if not isinstance(value, torch.Tensor) or value.shape != params[index].shape:
                return f"the optimizer's {key} of tensor {index} does not match its {_shape_text(params[index].shape)} shape"
    return None


def restore(
    run_dir: Path, state: dict[str, Any], *, student: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
    device: torch.device, total_epochs: int, make_teacher: Callable[[nn.Module], nn.Module], note: Callable[[str], None],
) -> tuple[nn.Module | None, int, float, float]:
    """Load a checkpoint into the run's objects; returns (teacher, epoch, best, elapsed).

    Everything is checked against the network the run's config builds before anything is loaded,
    so a checkpoint of another run or config is one clear error, not a failure inside torch."""
    path = run_dir / CHECKPOINT
    way_out = f"restore the run's {CONFIG} and {CHECKPOINT} as they were written, or {NEW_RUN}"
    problem = (
        _state_problem("student", state["student"], student)
        or (_state_problem("teacher", state["teacher"], student) if state["teacher"] is not None else None)
        or _optimizer_problem(state["optimizer"], list(student.parameters()))
        or (f"it is after epoch {state['epoch']} of a run of {total_epochs}" if state["epoch"] > total_epochs else None)
    )
    if problem:
        raise InputError(f"{path}: does not fit the run's {CONFIG} ({problem}); {way_out}")
    teacher = None
    try:
        student.load_state_dict(state["student"])
        if state["teacher"] is not None:
            teacher = make_teacher(student)
            teacher.load_state_dict(state["teacher"])
        optimizer.load_state_dict(state["optimizer"])
        if state["scaler"] or not scaler.is_enabled():  # a CPU run's scaler is off: resumed on a GPU, a fresh one
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and isinstance(state.get("cuda_rng"), torch.Tensor):
            torch.cuda.set_rng_state(state["cuda_rng"], device)
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise InputError(f"{path}: does not fit this run ({_first_line(exc)}); {way_out}") from None
    _warn_if_elsewhere(run_dir, state, device, note)
    return teacher, state["epoch"], float(state["best"]), float(state["elapsed"])


def _warn_if_elsewhere(run_dir: Path, state: dict[str, Any], device: torch.device, note: Callable[[str], None]) -> None:
    """A resume on another device or CPU thread count runs, but floating-point reductions split
    differently: the README's bit-identical resume no longer holds, and the user should know."""
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    saved_device = state.get("device")
    if isinstance(saved_device, str) and saved_device != device.type:
        note(f"warning: {run_dir} trained on {saved_device} and resumes on {device.type}; "
             "the result will not be bit-identical to an uninterrupted run")
        return
    saved = state.get("threads", config.get("threads"))  # checkpoints from before "threads": the configured count
    now = torch.get_num_threads()
    if device.type == "cpu" and type(saved) is int and saved != now:
        note(f"warning: {run_dir} trained with {saved} CPU thread{'s' * (saved != 1)} and resumes with {now}; the result will not be "
             f"bit-identical to an uninterrupted run (resume with --threads {saved} for that)")
