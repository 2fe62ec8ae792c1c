"""The backend plugin protocol and its registry.

A backend is a class registered under the entry-point group `smarthdr.backends`:

    [project.entry-points."smarthdr.backends"]
    mybackend = "my_package.module:MyBackend"

It must provide the attributes and methods of `Backend`. `availability()` is a classmethod that
must be cheap and must not raise (it is called by `smarthdr backends` for every backend); the
constructor may load weights. `merge` receives a `Bracket` (frames sorted short -> long,
exposures normalised to the shortest, gamma-2.2 LDR domain) and returns a `MergeResult` whose
HDR image is linear radiance aligned with the reference frame, in the units of eq. (1)
(`x ** 2.2 / t` with t_short = 1).

Optional hooks, which the core asks for instead of naming backends:
- `select_frames(count, reference) -> (indices, reference position)` (a staticmethod): which
  frames of a longer bracket the backend takes; without it, the shortest, reference and longest.
- `refuses(bracket) -> str | None` (a staticmethod): why the backend cannot merge a bracket;
  `--backend auto` then merges it with AUTO_FALLBACK instead.
- `merge(bracket, progress=...)`: a backend whose merge takes `progress(done, total)` reports
  how far it got (a tiled network on a CPU takes minutes).
- `parallel_safe` (below): whether `batch --jobs N` may run one instance per worker process.

This module is the plugin layer's base: it imports the core (`smarthdr_cli.bracket`,
`smarthdr_cli.errors`) and never the use cases (`smarthdr_cli.merge` and the like), which
import it.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from smarthdr_cli.bracket import Bracket
from smarthdr_cli.errors import BackendError, SmartHDRError

ENTRY_POINT_GROUP = "smarthdr.backends"
# The backends shipped with smarthdr, as "module:Class" like entry points (see pyproject.toml):
# this module names them without importing them, so that the plugins depend on it and not back.
BUILTIN = {
    "classic": "smarthdr_backends.classic:ClassicBackend",
    "cpu": "smarthdr_backends.torch_gfhdr:CpuBackend",
    "cuda": "smarthdr_backends.torch_gfhdr:CudaBackend",
}
AUTO_ORDER = ("cuda", "cpu", "classic")
# What `--backend auto` merges a bracket with when the backend it chose refuses it (`refuses`):
# one that takes any number of frames and any reference.
AUTO_FALLBACK = "classic"


class Availability(NamedTuple):
    available: bool
    reason: str


@dataclass
class BackendOptions:
    """Settings a user may pass to any backend; a backend ignores what it does not use."""

    weights: Path | None = None
    threads: int | None = None
    max_memory: float | None = None  # bytes one inference may use; None: the backend's default
    precision: str = "auto"  # auto, fp32, bf16 or fp16
    compile: bool = False  # torch.compile the network (learned backends)
    uncertainty: bool = False  # the caller wants the uncertainty map (backends may skip it otherwise)
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class MergeResult:
    """HDR radiance (float32 HxWx3, linear) and, where the backend has one, per-pixel uncertainty."""

    hdr: np.ndarray
    uncertainty: np.ndarray | None = None
    weights_id: str | None = None
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class Backend(Protocol):
    name: ClassVar[str]
    summary: ClassVar[str]
    learned: ClassVar[bool]
    gives_uncertainty: ClassVar[bool]
    # Whether `batch --jobs N` may run one instance per worker process (a GPU backend shares one
    # device and model, so it merges brackets one at a time). Plugins without it are taken as True.
    parallel_safe: ClassVar[bool]

    @classmethod
    def availability(cls, options: BackendOptions | None = None) -> Availability: ...

    def __init__(self, options: BackendOptions) -> None: ...

    def merge(self, bracket: Bracket) -> MergeResult: ...

    # Optional, not part of the protocol check: `prepare()` (no arguments) is called by
    # `run_merge` once the frames are decoded, while they are checked, calibrated and aligned,
    # for start-up work that can overlap that (`classic` loads its compiled kernels there).
    # `merge` must not rely on it.


@dataclass
class BackendEntry:
    """A registered backend, loaded lazily so a broken plugin cannot break the others."""

    name: str
    origin: str
    load: Callable[[], type]

    def availability(self, options: BackendOptions | None = None) -> Availability:
        try:
            cls = self.load()
            return cls.availability(options)
        except Exception as exc:  # a third-party plugin that fails to import or check
            return Availability(False, f"plugin failed to load: {type(exc).__name__}: {exc}")

    def summary(self) -> str:
        try:
            return str(getattr(self.load(), "summary", ""))
        except Exception:
            return ""


def load_class(target: str) -> type:
    """The class a "module:Class" string names, imported only now (a learned backend's module
    must not cost anything to a command that never uses it)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _builtin() -> dict[str, BackendEntry]:
    """Backends shipped with smarthdr, also present when running from an uninstalled source tree."""
    return {name: BackendEntry(name, "smarthdr", functools.partial(load_class, target)) for name, target in BUILTIN.items()}


def registry() -> dict[str, BackendEntry]:
    """Every backend: built-in ones and those other packages register under the entry-point group."""
    entries = _builtin()
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if point.name in entries:
            continue
        dist = getattr(point, "dist", None)
        origin = dist.metadata["Name"] if dist is not None else point.value
        entries[point.name] = BackendEntry(point.name, origin, point.load)
    return entries


def select(name: str, options: BackendOptions | None = None) -> tuple[BackendEntry, list[str]]:
    """The backend called `name` ("auto": cuda, then cpu, then classic) and why others were passed."""
    entries = registry()
    if name != "auto":
        if name not in entries:
            raise BackendError(f"unknown backend {name!r}; known: {', '.join(sorted(entries))}")
        state = entries[name].availability(options)
        if not state.available:
            raise BackendError(f"backend {name!r} is not available: {state.reason}")
        return entries[name], []
    passed = []
    for candidate in AUTO_ORDER:
        if candidate not in entries:
            continue
        state = entries[candidate].availability(options)
        if state.available:
            return entries[candidate], passed
        passed.append(f"{candidate}: {state.reason}")
    raise BackendError("no backend is available: " + "; ".join(passed))


def fallback() -> BackendEntry:
    """The backend `auto` hands the brackets its choice refuses (AUTO_FALLBACK)."""
    entries = registry()
    if AUTO_FALLBACK not in entries:  # pragma: no cover - a built-in
        raise BackendError(f"no fallback backend {AUTO_FALLBACK!r}")
    return entries[AUTO_FALLBACK]


def create(name: str, options: BackendOptions) -> tuple[Backend, list[str]]:
    """The backend called `name` (or auto's choice), started, and why auto passed over others."""
    entry, passed = select(name, options)
    try:
        backend = entry.load()(options)
    except SmartHDRError:  # the user's to fix (bad weights file, ...): its own message says how
        raise
    except Exception as exc:
        raise BackendError(f"backend {entry.name!r} failed to start: {type(exc).__name__}: {exc}") from None
    return backend, passed
