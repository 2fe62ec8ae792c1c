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
from smarthdr_cli.tonemap import OPERATORS, to_8bit

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
    tonemap: str = "reinhard"
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
            return None
        # Kalantari folders hold gamma-2.2 TIFFs by convention; a JPEG is a camera's (or a
        # scanner's) output whatever folder it sits in, and its tone curve is unknown.
        jpeg = any(f.path.suffix.lower() in (".jpg", ".jpeg") for f in frames)
        setting = "gamma" if layout and not jpeg else "calibrate"
    if setting == "gamma":
        return None
    if raw:
        raise BracketError(f"--response {setting} applies to JPEG/PNG/TIFF frames; RAW frames are developed linearly")
    if setting == "calibrate":
        found = calibrate([f.image for f in frames], [f.exposure for f in frames])
        if found is None:
            note("camera response could not be estimated from this bracket; assuming gamma 2.2")
            return None
        return found
    return load_response(Path(setting))


def load_bracket(
    paths: Sequence[Path],
    settings: MergeSettings,
    report: MergeReport,
    note: Note = _silent,
    exposure_file: Path | None = None,
) -> Bracket:
    """Read, validate, order, linearise and align the frames named by `paths`.

    `exposure_file`: a Kalantari `exposure.txt` for explicitly listed frames (dataset readers);
    a single folder argument finds its own.
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
    chosen, ref = choose_three(len(files), _reference_position(settings.reference, ordered))
    if len(files) > 3:
        note(f"{len(files)} frames: merging {', '.join(ordered[i].name for i in chosen)} (shortest, reference, longest)")
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

    normalised = exposure.normalise(times_used)
    alignment_notes = []
    for index in range(len(images)):
        if index == ref:
            continue
        fit = align.estimate(images[ref], normalised[ref], images[index], normalised[index], settings.align)
        images[index] = align.warp(images[index], fit)
        alignment_notes.append(f"{paths_used[index].name}: {fit.reason}")
        if settings.align != "none" and not fit.applied and fit.shift_px >= align.MIN_SHIFT_PX:
            note(f"alignment of {paths_used[index].name} discarded ({fit.reason}); left unaligned")

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


def save_preview(temp: Path, hdr: np.ndarray, operator: str, kind: str) -> None:
    """Tone-map `hdr` and write it as `kind` (.jpg or .png) into `temp`, encoded in memory first
    so that a short write on a full disk is an error (see io.output.write_file)."""
    import imageio.v3 as iio

    pixels = to_8bit(OPERATORS[operator](hdr))
    jpeg = kind.lower() in (".jpg", ".jpeg")
    encoded = iio.imwrite("<bytes>", pixels, extension=".jpg" if jpeg else ".png", **({"quality": 92} if jpeg else {}))
    write_file(temp, encoded)


def write_preview(path: Path, hdr: np.ndarray, operator: str, overwrite: bool) -> None:
    with atomic_output(path, overwrite) as temp:
        save_preview(temp, hdr, operator, path.suffix)


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


def _auto_fallback(backend, bracket: Bracket, settings: MergeSettings, note: Note):
    """With --backend auto, a bracket the network cannot take (2 or 5 frames, another reference)
    is merged by classic instead of failing; a backend named explicitly is never swapped."""
    refuses = getattr(backend, "refuses", None)
    problem = refuses(bracket) if settings.backend == "auto" and refuses is not None else None
    if not problem:
        return backend
    if settings.uncertainty is not None:
        raise BackendError(f"{problem}: only {backend.name} gives an uncertainty map; drop --uncertainty")
    from smarthdr_backends.classic import ClassicBackend

    note(f"{backend.name}: {problem}; auto merges this bracket with classic")
    return ClassicBackend()


def run_merge(paths: Sequence[Path], settings: MergeSettings, note: Note = _silent, backend=None) -> MergeReport:
    """The whole `smarthdr merge`: validate, merge with the chosen backend, write every output.

    `backend`: one already started by `create_backend`, so a batch loads a model only once.
    """
    started = time.perf_counter()
    report = MergeReport(inputs=[str(p) for p in paths])
    check_settings(settings)
    files, _ = resolve_inputs(paths)
    check_outputs(settings, files)
    if backend is None:
        backend = create_backend(settings, note)
    bracket = load_bracket(paths, settings, report, note)
    backend = _auto_fallback(backend, bracket, settings, note)
    note(f"merging {len(bracket)} frames with {backend.name} (reference {report.reference})")
    result = backend.merge(bracket)
    report.notes.extend(result.notes)
    report.backend = backend.name
    report.weights = result.weights_id
    hdr = result.hdr
    if hdr.shape != bracket.images[0].shape or not np.isfinite(hdr).all():
        raise RuntimeError(f"backend {backend.name} returned an invalid image {hdr.shape}")

    attributes = {
        "smarthdr:version": __version__,
        "smarthdr:backend": backend.name,
        "smarthdr:weights": result.weights_id or "none",
        "smarthdr:inputs": ", ".join(bracket.names),
        "smarthdr:reference": int(bracket.reference),
        "smarthdr:referenceFile": bracket.names[bracket.reference],
        "smarthdr:exposureTimes": [float(t) for t in bracket.exposures],
        "smarthdr:exposureSeconds": [float(t) for t in report.exposure_seconds],
        "smarthdr:exposureNote": "exposure times normalised to the shortest frame (t_short = 1); "
        "radiance = x^2.2 / t in those units",
        "smarthdr:response": report.response,
        "smarthdr:align": settings.align,
    }
    outputs = output_paths(settings)
    with atomic_outputs(outputs, settings.overwrite) as temps:
        files = dict(zip(outputs, temps))
        save_hdr(files[settings.output], hdr, kind=settings.output.suffix, attributes=attributes, float32=settings.float32)
        if settings.preview is not None:
            save_preview(files[settings.preview], hdr, settings.tonemap, settings.preview.suffix)
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
