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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from smarthdr_cli.bracket import Bracket
from smarthdr_cli.errors import BackendError, SmartHDRError

ENTRY_POINT_GROUP = "smarthdr.backends"
AUTO_ORDER = ("cuda", "cpu", "classic")


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


def _builtin() -> dict[str, BackendEntry]:
    """Backends shipped with smarthdr, also present when running from an uninstalled source tree."""

    def classic() -> type:
        from smarthdr_backends.classic import ClassicBackend

        return ClassicBackend

    def cpu() -> type:
        from smarthdr_backends.torch_gfhdr import CpuBackend

        return CpuBackend

    def cuda() -> type:
        from smarthdr_backends.torch_gfhdr import CudaBackend

        return CudaBackend

    return {name: BackendEntry(name, "smarthdr", load) for name, load in (("classic", classic), ("cpu", cpu), ("cuda", cuda))}


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


def create(name: str, options: BackendOptions) -> tuple[Backend, list[str]]:
    entry, passed = select(name, options)
    try:
        backend = entry.load()(options)
    except SmartHDRError:  # the user's to fix (bad weights file, ...): its own message says how
        raise
    except Exception as exc:
        raise BackendError(f"backend {entry.name!r} failed to start: {type(exc).__name__}: {exc}") from None
    return backend, passed
