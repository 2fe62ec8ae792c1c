"""The `merge` use case: frames -> `reading.read_bracket` -> backend -> the HDR and its companions.

Library functions the CLI (and batch use) call; nothing here prints. Progress goes through the
`note` callback so the caller decides where status lines go. Reading the bracket is
`smarthdr_cli.reading`'s; this module chooses and starts the backend (through the registry in
`smarthdr_backends.base`, which names no backend here) and writes the outputs.
"""
from __future__ import annotations

import functools
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from smarthdr_backends import base
from smarthdr_backends.base import Backend
from smarthdr_cli import __version__, align
from smarthdr_cli.bracket import Bracket, choose_three
from smarthdr_cli.errors import BackendError, OutputError
from smarthdr_cli.exposure import GivenExposures
from smarthdr_cli.io import provenance
from smarthdr_cli.io.hdr import save_hdr
from smarthdr_cli.io.output import atomic_outputs, check_not_inputs, check_output_path
from smarthdr_cli.reading import (
    FrameSelector,
    Note,
    ReadOptions,
    ReadResult,
    ReferenceChoice,
    check_options,
    read_bracket,
    resolve_inputs,
)
from smarthdr_cli.response import ResponseChoice
from smarthdr_cli.tonemap import DEFAULT_OPERATOR, OPERATORS


@dataclass
class MergeSettings:
    """Everything `smarthdr merge` can be told; defaults are the CLI's defaults."""

    output: Path
    reference: ReferenceChoice | None = None
    exposures: GivenExposures | None = None  # --exposures or --ev
    response: ResponseChoice = ResponseChoice()
    align: align.AlignMode = "homography"
    backend: str = "auto"
    weights: Path | None = None
    threads: int | None = None
    max_memory: float | None = None
    precision: str = "auto"
    compile: bool = False
    float32: bool = False
    preview: Path | None = None
    tonemap: str = DEFAULT_OPERATOR
    uncertainty: Path | None = None
    overwrite: bool = False

    @property
    def read(self) -> ReadOptions:
        """The options the bracket is read with."""
        return ReadOptions(exposures=self.exposures, reference=self.reference, response=self.response, align=self.align)


@dataclass
class MergeReport:
    """What was done, for the user (--json) and for batch reports."""

    inputs: list[str]
    used: list[str] = field(default_factory=list)
    exposure_seconds: list[float] = field(default_factory=list)
    exposures: list[float] = field(default_factory=list)
    reference: str = ""
    response: str = ""
    black_level: int = 0  # 8-bit code the calibrated response maps to zero light (0: no offset)
    alignment: list[str] = field(default_factory=list)
    backend: str = ""
    weights: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "inputs": self.inputs,
            "used": self.used,
            "exposures": {"seconds": self.exposure_seconds, "normalised": self.exposures},
            "reference": self.reference,
            "response": self.response,
            "black_level": self.black_level,
            "alignment": self.alignment,
            "backend": self.backend,
            "weights": self.weights,
            "outputs": self.outputs,
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
        }


def _silent(_: str) -> None:
    return None


def output_paths(settings: MergeSettings) -> list[Path]:
    """The files one merge writes, as a set: the HDR, then the preview and uncertainty map if asked."""
    return [p for p in (settings.output, settings.preview, settings.uncertainty) if p is not None]


def check_outputs(settings: MergeSettings, inputs: Sequence[Path] = ()) -> None:
    """Refuse unwritable, clashing, existing or input-replacing outputs before any work is done."""
    outputs = output_paths(settings)
    resolved = [p.resolve() for p in outputs]
    if len(set(resolved)) != len(resolved):
        raise OutputError("output, preview and uncertainty files must be different files")
    if settings.output.suffix.lower() not in (".exr", ".hdr"):
        raise OutputError(f"{settings.output}: output must end in .exr or .hdr")
    if settings.preview is not None and settings.preview.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise OutputError(f"{settings.preview}: preview must end in .jpg or .png")
    if settings.uncertainty is not None and settings.uncertainty.suffix.lower() != ".exr":
        raise OutputError(f"{settings.uncertainty}: uncertainty map must end in .exr")
    if settings.tonemap not in OPERATORS:
        raise OutputError(f"--tonemap {settings.tonemap}: choose one of {', '.join(OPERATORS)}")
    check_not_inputs(outputs, inputs)
    for path in outputs:
        check_output_path(path, settings.overwrite)


def _backend_options(settings: MergeSettings) -> base.BackendOptions:
    return base.BackendOptions(
        weights=settings.weights,
        threads=settings.threads,
        max_memory=settings.max_memory,
        precision=settings.precision,
        compile=settings.compile,
        uncertainty=settings.uncertainty is not None,
    )


def create_backend(settings: MergeSettings, note: Note = _silent) -> Backend:
    """The backend `settings` ask for, started once (a batch reuses it for every bracket)."""
    backend, passed = base.create(settings.backend, _backend_options(settings))
    for reason in passed:
        note(f"backend {reason}")
    if settings.uncertainty is not None and not backend.gives_uncertainty:
        raise BackendError(f"backend {backend.name!r} gives no uncertainty map; drop --uncertainty")
    return backend


def _select_frames(backend: Backend, settings: MergeSettings, count: int, reference: int | None) -> tuple[list[int], int, str]:
    """The frames (indices in exposure order) the merge will use, the reference's position among
    them and the name of the backend that will merge them.

    A backend says which frames it takes through `select_frames(count, reference)`: classic
    takes every frame (each one lowers the noise); the network, and backends without the method,
    the shortest, the reference and the longest. Under --backend auto a choice the backend
    refuses is merged by the registry's fallback (`_auto_fallback`), which then chooses the frames.
    """
    select = getattr(backend, "select_frames", None) or choose_three
    chosen, position = select(count, reference)
    refuses = getattr(backend, "refuses", None)
    if settings.backend == "auto" and refuses is not None:
        stand_in = Bracket([np.zeros((1, 1, 3), np.float32)] * len(chosen), np.arange(1.0, len(chosen) + 1.0), position)
        if refuses(stand_in):
            stand_by = base.fallback().load()
            select = getattr(stand_by, "select_frames", None) or choose_three
            chosen, position = select(count, reference)
            return chosen, position, stand_by.name
    return chosen, position, getattr(backend, "name", "the network")


def frame_selector(backend: Backend, settings: MergeSettings) -> FrameSelector:
    """What `read_bracket` decodes of a bracket: the frames `backend` (or auto's fallback) merges."""
    return functools.partial(_select_frames, backend, settings)


def _auto_fallback(backend: Backend, bracket: Bracket, settings: MergeSettings, note: Note) -> Backend:
    """With --backend auto, a bracket the network cannot take (2 frames, a reference other than
    the middle one) is merged by the registry's fallback (classic) instead of failing; a backend
    named explicitly is never swapped. `_select_frames` already gave such a bracket its frames."""
    refuses = getattr(backend, "refuses", None)
    problem = refuses(bracket) if settings.backend == "auto" and refuses is not None else None
    if not problem:
        return backend
    if settings.uncertainty is not None:
        raise BackendError(f"{problem}: only {backend.name} gives an uncertainty map; drop --uncertainty")
    stand_by = base.fallback()
    note(f"{backend.name}: {problem}; auto merges this bracket with {stand_by.name}")
    return stand_by.load()(_backend_options(settings))  # --threads holds for it too


def run_merge(
    paths: Sequence[Path],
    settings: MergeSettings,
    note: Note = _silent,
    backend: Backend | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MergeReport:
    """The whole `smarthdr merge`: validate, merge with the chosen backend, write every output.

    `backend`: one already started by `create_backend`, so a batch loads a model only once.
    `progress(done, total)`: called as the backend gets on, by backends whose `merge` takes a
    `progress` argument (the learned ones, per tile); the caller decides what to show.
    """
    started = time.perf_counter()
    report = MergeReport(inputs=[str(p) for p in paths])
    check_options(settings.read)
    files, _ = resolve_inputs(paths)
    check_outputs(settings, files)
    if backend is None:
        backend = create_backend(settings, note)
    read = read_bracket(paths, settings.read, note, select=frame_selector(backend, settings), decoded=getattr(backend, "prepare", None))
    bracket = read.bracket
    report.used = [str(p) for p in read.used]
    report.exposure_seconds = read.exposure_seconds
    report.exposures = read.exposures
    report.reference = read.reference
    report.response = read.response
    report.black_level = read.black_level
    report.alignment = read.alignment
    backend = _auto_fallback(backend, bracket, settings, note)
    note(f"merging {len(bracket)} frames with {backend.name} (reference {report.reference})")
    bracket.disposable = True  # `bracket.images` are cleared below, whatever the backend did with them
    reports_progress = progress is not None and "progress" in inspect.signature(backend.merge).parameters
    result = backend.merge(bracket, progress=progress) if reports_progress else backend.merge(bracket)  # type: ignore[call-arg]
    report.notes.extend(result.notes)
    report.backend = backend.name
    report.weights = result.weights_id
    hdr, shape = result.hdr, bracket.images[0].shape
    bracket.images.clear()  # the frames are done with: checking and encoding the outputs is where memory would peak
    if hdr.shape != shape or not np.isfinite(hdr).all():
        raise RuntimeError(f"backend {backend.name} returned an invalid image {hdr.shape}")
    _write_outputs(settings, read, result, backend.name)
    report.outputs["hdr"] = str(settings.output)
    if settings.preview is not None:
        report.outputs["preview"] = str(settings.preview)
    if settings.uncertainty is not None:
        report.outputs["uncertainty"] = str(settings.uncertainty)
    report.seconds = time.perf_counter() - started
    return report


def _write_outputs(settings: MergeSettings, read: ReadResult, result: base.MergeResult, backend_name: str) -> None:
    """The HDR, and the preview and uncertainty map if asked, as one set (all or none appear),
    with the reference frame's capture metadata in the standard EXR attributes and the preview's EXIF."""
    bracket, hdr = read.bracket, result.hdr
    reference_path, reference_info = read.used[bracket.reference], read.reference_info
    attributes = {
        **provenance.exr_attributes(reference_info, read.reference_seconds),
        "smarthdr:version": __version__,
        "smarthdr:backend": backend_name,
        "smarthdr:weights": result.weights_id or "none",
        "smarthdr:inputs": ", ".join(bracket.names),
        "smarthdr:referencePosition": int(bracket.reference) + 1,  # 1 = the first of smarthdr:inputs, as --reference counts
        "smarthdr:referenceFile": bracket.names[bracket.reference],
        "smarthdr:exposureTimes": [float(t) for t in bracket.exposures],
        "smarthdr:exposureSeconds": [float(t) for t in read.exposure_seconds],
        "smarthdr:exposureNote": "exposure times normalised to the shortest frame (t_short = 1); "
        "radiance = x^2.2 / t in those units",
        "smarthdr:response": read.response,
        "smarthdr:align": settings.align,
    }
    if reference_info.camera:
        attributes["smarthdr:camera"] = reference_info.camera
    outputs = output_paths(settings)
    with atomic_outputs(outputs, settings.overwrite) as temps:
        files = dict(zip(outputs, temps))
        save_hdr(files[settings.output], hdr, kind=settings.output.suffix, attributes=attributes, float32=settings.float32)
        if settings.preview is not None:
            exif = provenance.preview_exif(reference_path, reference_info)
            provenance.save_preview(files[settings.preview], hdr, settings.tonemap, settings.preview.suffix, exif)
        if settings.uncertainty is not None:
            if result.uncertainty is None:
                raise BackendError(f"backend {backend_name} returned no uncertainty map; drop --uncertainty")
            save_hdr(files[settings.uncertainty], result.uncertainty, kind=".exr", attributes=attributes, float32=True)
