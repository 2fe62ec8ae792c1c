"""The `merge` pipeline: files -> validated, linearised, aligned Bracket -> backend -> files.

Library functions the CLI (and batch use) call; nothing here prints. Progress goes through the
`note` callback so the caller decides where status lines go.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from smarthdr_cli import __version__, align, exposure
from smarthdr_cli.bracket import GAMMA, Bracket, Frame, check_content, choose_three
from smarthdr_cli.errors import BackendError, BracketError, ExposureError, InputError, OutputError
from smarthdr_cli.io import raw as raw_io
from smarthdr_cli.io.exif import CaptureInfo, check_image, orientation_turns, read_exif
from smarthdr_cli.io.hdr import is_hdr, save_hdr
from smarthdr_cli.io.ldr import is_ldr, read_ldr
from smarthdr_cli.io.output import atomic_output, atomic_outputs, check_not_inputs, check_output_path, write_file
from smarthdr_cli.response import Response, calibrate, load_response
from smarthdr_cli.tonemap import DEFAULT_OPERATOR, OPERATORS, to_8bit

Note = Callable[[str], None]
EXPOSURE_FILE = "exposure.txt"
RESPONSE_CHOICES = ("auto", "gamma", "calibrate")


@dataclass
class MergeSettings:
    """Everything `smarthdr merge` can be told; defaults are the CLI's defaults."""

    output: Path
    reference: str | None = None
    exposures: str | None = None
    ev: str | None = None
    response: str = "auto"
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


def frame_files(folder: Path) -> list[Path]:
    """The frames of a bracket folder, sorted by name: the images and RAW files directly inside it."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and (is_ldr(p) or raw_io.is_raw(p)))


def resolve_inputs(paths: Sequence[Path]) -> tuple[list[Path], Path | None]:
    """The frame files to merge and the exposure file of a Kalantari-layout folder, if any."""
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        files = frame_files(folder)
        if not files:
            raise InputError(f"{folder}: no JPEG/PNG/TIFF/RAW frames in this folder")
        exposure_file = folder / EXPOSURE_FILE
        return files, exposure_file if exposure_file.is_file() else None
    for path in paths:
        if path.is_dir():
            raise InputError(f"{path}: is a folder; pass either one bracket folder or the frame files")
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if not path.is_file():
            raise InputError(f"{path}: not a regular file")
        if is_hdr(path):
            raise InputError(f"{path}: is already an HDR image; merge takes LDR or RAW frames")
        if not (is_ldr(path) or raw_io.is_raw(path)):
            raise InputError(f"{path}: unsupported file type {path.suffix or '(none)'} (JPEG, PNG, TIFF or RAW)")
    return list(paths), None


def capture_info(path: Path) -> CaptureInfo:
    """exifread first; LibRaw's metadata fills the gaps for RAW containers exifread cannot parse."""
    check_image(path)  # an empty or text file is that, not a photo without an exposure time
    try:
        info = read_exif(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw_io.is_raw(path) and info.exposure_time is None:
        info = info.merged(raw_io.raw_metadata(path))
    return info


def _exposure_times(
    files: Sequence[Path], infos: Sequence[CaptureInfo], settings: MergeSettings, exposure_file: Path | None, note: Note
) -> list[float]:
    if settings.exposures is not None and settings.ev is not None:
        raise ExposureError("pass either --exposures or --ev, not both")
    if settings.exposures is not None:
        return exposure.parse_exposures(settings.exposures, len(files))
    if settings.ev is not None:
        return exposure.parse_ev(settings.ev, len(files))
    if exposure_file is not None:
        note(f"exposures from {exposure_file}")
        return exposure.read_exposure_file(exposure_file, len(files))
    times, folded = exposure.effective_exposures(infos, files)
    if folded:
        note("ISO/aperture differ across the bracket: folded into effective exposure times")
    return times


def _reference_position(choice: str | None, ordered: Sequence[Path]) -> int | None:
    """--reference as a 1-based position in exposure order or as one of the input files."""
    if choice is None:
        return None
    text = choice.strip()
    if text.isascii() and text.isdigit():  # str.isdigit alone accepts superscripts such as "²"
        position = int(text)
        if not 1 <= position <= len(ordered):
            raise BracketError(f"--reference {position}: choose 1..{len(ordered)} (1 = shortest exposure)")
        return position - 1
    for index, path in enumerate(ordered):
        if text in (str(path), path.name) or Path(text).resolve() == path.resolve():
            return index
    raise BracketError(f"--reference {choice!r} is neither a position nor one of the input files")


def _orient(image: np.ndarray, orientation: int) -> np.ndarray:
    turns, mirror = orientation_turns(orientation)
    if mirror:
        image = image[:, ::-1]
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else np.ascontiguousarray(image)


def _decode(paths: Sequence[Path], infos: Sequence[CaptureInfo], times: Sequence[float], ref: int) -> list[Frame]:
    kinds = {raw_io.is_raw(p) for p in paths}
    if len(kinds) > 1:
        raise BracketError("a bracket must be all RAW or all JPEG/PNG/TIFF, not a mix")
    if kinds == {True}:
        balance = raw_io.camera_white_balance(paths[ref])  # one white balance for the whole bracket
        return [Frame(p, raw_io.decode_raw(p, balance), t, 16, True) for p, t in zip(paths, times)]
    orientations = {info.orientation for info in infos}
    if len(orientations) > 1:
        raise BracketError(
            "frames have different EXIF orientations: "
            + ", ".join(f"{p.name}={i.orientation}" for p, i in zip(paths, infos))
        )
    frames = []
    for path, info, t in zip(paths, infos, times):
        image, bits = read_ldr(path)
        frames.append(Frame(path, _orient(image, info.orientation), t, bits, False))
    return frames


def _response(setting: str, frames: Sequence[Frame], layout: bool, note: Note) -> Response | None:
    """The response that maps frames to the gamma-2.2 domain, or None when they are there already."""
    raw = frames[0].raw
    if setting == "auto":
        if raw:
            note("response: linear RAW development")
            return None
        # Kalantari folders hold gamma-2.2 TIFFs by convention; a JPEG is a camera's (or a
        # scanner's) output whatever folder it sits in, and its tone curve is unknown.
        jpeg = any(f.path.suffix.lower() in (".jpg", ".jpeg") for f in frames)
        if layout and not jpeg:
            note("response: gamma 2.2 (frames of a Kalantari folder)")
            return None
        setting = "calibrate"
    if setting == "gamma":
        note("response: linear RAW development" if raw else "response: gamma 2.2 (--response gamma)")
        return None
    if raw:
        raise BracketError(f"--response {setting} applies to JPEG/PNG/TIFF frames; RAW frames are developed linearly")
    if setting == "calibrate":
        found = calibrate([f.image for f in frames], [f.exposure for f in frames])
        if found is None:
            note("response: could not be estimated from this bracket; assuming gamma 2.2")
            return None
        # The black level is said in the line: a lifted black that went unnoticed leaves flat
        # dark regions, one that was found where there is none crushes the shadows.
        black = f"; black level {found.black}/255 subtracted" if found.black else "; no black offset"
        note(f"response: calibrated from the bracket{black}")
        return found
    found = load_response(Path(setting))
    note(f"response: from {Path(setting).name}")
    return found


def load_bracket(
    paths: Sequence[Path],
    settings: MergeSettings,
    report: MergeReport,
    note: Note = _silent,
    exposure_file: Path | None = None,
    backend=None,  # smarthdr_backends.base.Backend | None
) -> Bracket:
    """Read, validate, order, linearise and align the frames named by `paths`.

    `exposure_file`: a Kalantari `exposure.txt` for explicitly listed frames (dataset readers);
    a single folder argument finds its own. `backend`: the one that will merge the bracket, so
    only the frames it uses are read (see `_select_frames`); None takes the network's three.
    """
    files, found_file = resolve_inputs(paths)
    exposure_file = exposure_file or found_file
    if len(files) < 2:
        raise BracketError(f"a bracket needs at least 2 frames, got {len(files)}")
    infos = [capture_info(p) for p in files]
    times = _exposure_times(files, infos, settings, exposure_file, note)
    order = sorted(range(len(files)), key=lambda i: times[i])
    ordered = [files[i] for i in order]
    ordered_times = [times[i] for i in order]
    exposure.check_distinct(ordered_times, [p.name for p in ordered])
    chosen, ref, merger = _select_frames(backend, settings, len(files), _reference_position(settings.reference, ordered))
    if len(files) > 3:
        names = ", ".join(ordered[i].name for i in chosen)
        if len(chosen) == len(files):
            note(f"{len(files)} frames: {merger} merges all of them ({names})")
        else:
            note(f"{len(files)} frames: {merger} merges {names} (shortest, reference, longest)")
    paths_used = [ordered[i] for i in chosen]
    times_used = [ordered_times[i] for i in chosen]
    infos_used = [infos[order[i]] for i in chosen]

    frames = _decode(paths_used, infos_used, times_used, ref)
    shapes = {f.image.shape for f in frames}
    if len(shapes) > 1:
        raise BracketError("frames differ in size: " + ", ".join(f"{f.path.name} {f.image.shape[1]}x{f.image.shape[0]}" for f in frames))
    check_content([f.image for f in frames], [f.path.name for f in frames])

    response = _response(settings.response, frames, exposure_file is not None, note)
    images = [response.to_gamma_domain(f.image) if response else f.image for f in frames]
    report.response = "linear RAW" if frames[0].raw else (response.source if response else "gamma 2.2")
    report.black_level = response.black if response else 0

    normalised = exposure.normalise(times_used)
    alignment_notes = []
    for index in range(len(images)):
        if index == ref:
            continue
        fit = align.estimate(images[ref], normalised[ref], images[index], normalised[index], settings.align)
        images[index] = align.warp(images[index], fit)
        alignment_notes.append(f"{paths_used[index].name}: {fit.reason}")
        note(f"align {paths_used[index].name}: {fit.reason}")  # also when kept in place: say so

    report.used = [str(p) for p in paths_used]
    report.exposure_seconds = [float(t) for t in times_used]
    report.exposures = [float(t) for t in normalised]
    report.reference = paths_used[ref].name
    report.alignment = alignment_notes
    return Bracket(
        images=images,
        exposures=np.asarray(normalised),
        reference=ref,
        names=[p.name for p in paths_used],
        exposure_seconds=np.asarray(times_used),
        gamma=GAMMA,
        bits=max(f.bits for f in frames),
    )


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


def save_preview(temp: Path, hdr: np.ndarray, operator: str, kind: str, exif: bytes | None = None) -> None:
    """Tone-map `hdr` and write it as `kind` (.jpg or .png) into `temp`, encoded in memory first
    so that a short write on a full disk is an error (see io.output.write_file).

    `exif`: EXIF bytes for the file (`io.provenance.preview_exif`: the reference frame's camera,
    lens and capture time), so that photo managers file the preview with the shoot."""
    from smarthdr_cli.io.provenance import encode_preview

    write_file(temp, encode_preview(to_8bit(OPERATORS[operator](hdr)), kind, exif))


def write_preview(path: Path, hdr: np.ndarray, operator: str, overwrite: bool, exif: bytes | None = None) -> None:
    with atomic_output(path, overwrite) as temp:
        save_preview(temp, hdr, operator, path.suffix, exif)


def check_settings(settings: MergeSettings) -> None:
    """Refuse option values no bracket could use, before any file is read."""
    if settings.response not in RESPONSE_CHOICES and not Path(settings.response).is_file():
        raise InputError(f"--response {settings.response}: choose auto, gamma, calibrate or an existing curve file")
    if settings.align not in align.ALIGN_MODES:
        raise InputError(f"--align {settings.align}: choose {', '.join(align.ALIGN_MODES)}")


def create_backend(settings: MergeSettings, note: Note = _silent):  # -> smarthdr_backends.base.Backend
    """The backend `settings` ask for, started once (a batch reuses it for every bracket)."""
    from smarthdr_backends import base

    options = base.BackendOptions(
        weights=settings.weights,
        threads=settings.threads,
        max_memory=settings.max_memory,
        precision=settings.precision,
        compile=settings.compile,
        uncertainty=settings.uncertainty is not None,
    )
    backend, passed = base.create(settings.backend, options)
    for reason in passed:
        note(f"backend {reason}")
    if settings.uncertainty is not None and not backend.gives_uncertainty:
        raise BackendError(f"backend {backend.name!r} gives no uncertainty map; drop --uncertainty")
    return backend


def _select_frames(backend, settings: MergeSettings, count: int, reference: int | None) -> tuple[list[int], int, str]:
    """The frames (indices in exposure order) the merge will use, the reference's position among
    them and the name of the backend that will merge them.

    A backend says which frames it takes through `select_frames(count, reference)`: classic
    takes every frame (each one lowers the noise); the network, and backends without the method,
    the shortest, the reference and the longest. Under --backend auto a choice the backend
    refuses is merged by classic (`_auto_fallback`), which then gets every frame.
    """
    from smarthdr_backends.classic import ClassicBackend

    select = getattr(backend, "select_frames", None) or choose_three
    chosen, position = select(count, reference)
    refuses = getattr(backend, "refuses", None)
    if settings.backend == "auto" and refuses is not None:
        stand_in = Bracket([np.zeros((1, 1, 3), np.float32)] * len(chosen), np.arange(1.0, len(chosen) + 1.0), position)
        if refuses(stand_in):
            chosen, position = ClassicBackend.select_frames(count, reference)
            return chosen, position, ClassicBackend.name
    return chosen, position, getattr(backend, "name", "the network")


def _auto_fallback(backend, bracket: Bracket, settings: MergeSettings, note: Note):
    """With --backend auto, a bracket the network cannot take (2 frames, a reference other than
    the middle one) is merged by classic instead of failing; a backend named explicitly is never
    swapped. `_select_frames` already gave such a bracket every frame."""
    refuses = getattr(backend, "refuses", None)
    problem = refuses(bracket) if settings.backend == "auto" and refuses is not None else None
    if not problem:
        return backend
    if settings.uncertainty is not None:
        raise BackendError(f"{problem}: only {backend.name} gives an uncertainty map; drop --uncertainty")
    from smarthdr_backends.classic import ClassicBackend

    note(f"{backend.name}: {problem}; auto merges this bracket with classic")
    return ClassicBackend()


def run_merge(
    paths: Sequence[Path],
    settings: MergeSettings,
    note: Note = _silent,
    backend=None,
    progress: Callable[[int, int], None] | None = None,
) -> MergeReport:
    """The whole `smarthdr merge`: validate, merge with the chosen backend, write every output.

    `backend`: one already started by `create_backend`, so a batch loads a model only once.
    `progress(done, total)`: called as the backend gets on, by backends whose `merge` takes a
    `progress` argument (the learned ones, per tile); the caller decides what to show.
    """
    import inspect

    from smarthdr_cli.io import provenance

    started = time.perf_counter()
    report = MergeReport(inputs=[str(p) for p in paths])
    check_settings(settings)
    files, _ = resolve_inputs(paths)
    check_outputs(settings, files)
    if backend is None:
        backend = create_backend(settings, note)
    bracket = load_bracket(paths, settings, report, note, backend=backend)
    backend = _auto_fallback(backend, bracket, settings, note)
    note(f"merging {len(bracket)} frames with {backend.name} (reference {report.reference})")
    reports_progress = progress is not None and "progress" in inspect.signature(backend.merge).parameters
    result = backend.merge(bracket, progress=progress) if reports_progress else backend.merge(bracket)
    report.notes.extend(result.notes)
    report.backend = backend.name
    report.weights = result.weights_id
    hdr = result.hdr
    if hdr.shape != bracket.images[0].shape or not np.isfinite(hdr).all():
        raise RuntimeError(f"backend {backend.name} returned an invalid image {hdr.shape}")

    # The reference frame's capture metadata, for the standard EXR attributes and the preview's EXIF.
    reference_path = Path(report.used[bracket.reference]) if report.used else None
    reference_info = capture_info(reference_path) if reference_path is not None else CaptureInfo()
    reference_seconds = reference_info.exposure_time
    if reference_seconds is None and settings.exposures is not None:  # --exposures are seconds; --ev and exposure.txt are not
        reference_seconds = report.exposure_seconds[bracket.reference]
    attributes = {
        **provenance.exr_attributes(reference_info, reference_seconds),
        "smarthdr:version": __version__,
        "smarthdr:backend": backend.name,
        "smarthdr:weights": result.weights_id or "none",
        "smarthdr:inputs": ", ".join(bracket.names),
        "smarthdr:referencePosition": int(bracket.reference) + 1,  # 1 = the first of smarthdr:inputs, as --reference counts
        "smarthdr:referenceFile": bracket.names[bracket.reference],
        "smarthdr:exposureTimes": [float(t) for t in bracket.exposures],
        "smarthdr:exposureSeconds": [float(t) for t in report.exposure_seconds],
        "smarthdr:exposureNote": "exposure times normalised to the shortest frame (t_short = 1); "
        "radiance = x^2.2 / t in those units",
        "smarthdr:response": report.response,
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
            save_preview(files[settings.preview], hdr, settings.tonemap, settings.preview.suffix, exif)
        if settings.uncertainty is not None:
            if result.uncertainty is None:
                raise BackendError(f"backend {backend.name} returned no uncertainty map; drop --uncertainty")
            save_hdr(files[settings.uncertainty], result.uncertainty, kind=".exr", attributes=attributes, float32=True)
    report.outputs["hdr"] = str(settings.output)
    if settings.preview is not None:
        report.outputs["preview"] = str(settings.preview)
    if settings.uncertainty is not None:
        report.outputs["uncertainty"] = str(settings.uncertainty)
    report.seconds = time.perf_counter() - started
    return report
