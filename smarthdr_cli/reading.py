"""Bracket reading: frame files -> validated, ordered, linearised, aligned `Bracket` and its provenance.

The one reader of brackets: `merge` and `batch` read what they merge with it, the dataset layouts
(`data.layouts`) read training and test scenes with it, so every command validates and linearises
frames the same way. Options come in typed (`ReadOptions`, parsed where settings are built, see
`parse_reference`, `exposure.given_seconds`, `response.parse_response`); what was read and how
comes back in a `ReadResult`, for the caller to report as it likes. Nothing here prints: status
lines go through the `note` callback.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from smarthdr_cli import align, exposure
from smarthdr_cli.bracket import GAMMA, Bracket, Frame, check_content, choose_three
from smarthdr_cli.errors import BracketError, InputError
from smarthdr_cli.exposure import GivenExposures
from smarthdr_cli.io import raw as raw_io
from smarthdr_cli.io.capture import capture_info
from smarthdr_cli.io.exif import CaptureInfo, orientation_turns
from smarthdr_cli.io.hdr import is_hdr
from smarthdr_cli.io.ldr import code_values, is_ldr, read_ldr
from smarthdr_cli.machine import usable_cores
from smarthdr_cli.response import Response, ResponseChoice, calibrate, load_response

Note = Callable[[str], None]
EXPOSURE_FILE = "exposure.txt"
# (frame count, reference position in exposure order or None) -> (the indices in exposure order
# of the frames to read, the reference's position among them, who merges them: for the status line)
FrameSelector = Callable[[int, Optional[int]], Tuple[List[int], int, str]]


def _silent(_: str) -> None:
    return None


@dataclass(frozen=True)
class ReferenceChoice:
    """The reference frame asked for: `position` (1-based, in exposure order) when `text` is a
    number, else `text` names one of the input files (a name or a path). `source` names the
    choice in messages (the CLI: its flag)."""

    text: str
    position: int | None = None
    source: str = "reference"

    def index(self, ordered: Sequence[Path]) -> int:
        """The 0-based index of the chosen frame among `ordered` (the frames in exposure order)."""
        if self.position is not None:
            if not 1 <= self.position <= len(ordered):
                raise BracketError(f"{self.source} {self.position}: choose 1..{len(ordered)} (1 = shortest exposure)")
            return self.position - 1
        text = self.text.strip()
        for index, path in enumerate(ordered):
            if text in (str(path), path.name) or Path(text).resolve() == path.resolve():
                return index
        raise BracketError(f"{self.source} {self.text!r} is neither a position nor one of the input files")


def parse_reference(text: str, source: str) -> ReferenceChoice:
    """A position in exposure order (1 = shortest) or a file; which files there are is known only
    when the bracket is read (`ReferenceChoice.index`)."""
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit():  # str.isdigit alone accepts superscripts such as "²"
        return ReferenceChoice(text, int(stripped), source)
    return ReferenceChoice(text, None, source)


def parse_align(text: str, source: str) -> align.AlignMode:
    """`text` as an alignment mode, or an InputError naming `source`."""
    if text not in align.ALIGN_MODES:
        raise InputError(f"{source} {text}: choose {', '.join(align.ALIGN_MODES)}")
    return text  # type: ignore[return-value]


@dataclass(frozen=True)
class ReadOptions:
    """What reading a bracket can be told; defaults are `merge`'s.

    `exposures`: given times (else an exposure file, else the metadata); `reference`: the frame
    to align to and merge around (else the middle one); `response`: how frames are linearised
    (the black level, where there is one, is found by `calibrate`); `align`: the warp fitted to
    each frame."""

    exposures: GivenExposures | None = None
    reference: ReferenceChoice | None = None
    response: ResponseChoice = ResponseChoice()
    align: align.AlignMode = "homography"


@dataclass
class ReadResult:
    """A bracket and how it was read: the provenance a merge reports and writes into its outputs."""

    bracket: Bracket
    used: list[Path]  # the frames read, in exposure order (a longer bracket's three for the network)
    exposure_seconds: list[float]  # their exposure times as found (seconds, or 2^EV)
    exposures: list[float]  # normalised: the shortest is 1
    reference: str  # the reference frame's file name
    reference_info: CaptureInfo  # its capture metadata
    reference_seconds: float | None  # its exposure time where it is known in seconds (EXIF, --exposures)
    response: str  # "linear RAW", "gamma 2.2", "calibrated" or the curve file
    black_level: int  # 8-bit code the calibrated response maps to zero light (0: no offset)
    alignment: list[str]  # per non-reference frame: "name: what alignment did"


def check_options(options: ReadOptions) -> None:
    """Refuse option values no bracket could use, before any file is read (for options not built
    by the parse functions, which check as they parse)."""
    options.response.check()
    if options.align not in align.ALIGN_MODES:
        raise InputError(f"align {options.align}: choose {', '.join(align.ALIGN_MODES)}")


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


def network_three(count: int, reference: int | None) -> tuple[list[int], int, str]:
    """The frames the network takes of a longer bracket: the shortest, the reference, the longest."""
    chosen, position = choose_three(count, reference)
    return chosen, position, "the network"


def _exposure_times(
    files: Sequence[Path], infos: Sequence[CaptureInfo], given: GivenExposures | None, exposure_file: Path | None, note: Note
) -> list[float]:
    if given is not None:
        return given.for_frames(len(files))
    if exposure_file is not None:
        note(f"exposures from {exposure_file}")
        return exposure.read_exposure_file(exposure_file, len(files))
    times, folded = exposure.effective_exposures(infos, files)
    if folded:
        note("ISO/aperture differ across the bracket: folded into effective exposure times")
    return times


def _orient(image: np.ndarray, orientation: int) -> np.ndarray:
    turns, mirror = orientation_turns(orientation)
    if mirror:
        image = image[:, ::-1]
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else np.ascontiguousarray(image)


def _decode(
    paths: Sequence[Path], infos: Sequence[CaptureInfo], times: Sequence[float], ref: int, pool: ThreadPoolExecutor
) -> list[Frame]:
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
    decoded = list(pool.map(lambda path: read_ldr(path, codes=True), paths))  # 8-bit: codes until linearised
    return [Frame(path, _orient(image, info.orientation), t, bits, False) for path, info, t, (image, bits) in zip(paths, infos, times, decoded)]


def _response(choice: ResponseChoice, frames: Sequence[Frame], layout: bool, note: Note) -> Response | None:
    """The response that maps frames to the gamma-2.2 domain, or None when they are there already."""
    raw = frames[0].raw
    setting = choice.text
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
        note("response: linear RAW development" if raw else f"response: gamma 2.2 ({choice.source} gamma)")
        return None
    if raw:
        raise BracketError(f"{choice.source} {setting} applies to JPEG/PNG/TIFF frames; RAW frames are developed linearly")
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


def _linearised(frame: Frame, response: Response | None) -> np.ndarray:
    """The frame in the gamma-2.2 domain: through `response`, or as it is (float32 in [0, 1])."""
    codes = frame.image.dtype == np.uint8
    if response is not None:
        return response.to_gamma_domain(frame.image, bits=frame.bits, out=None if codes else frame.image)
    return code_values(frame.image) if codes else frame.image


def read_bracket(
    paths: Sequence[Path],
    options: ReadOptions = ReadOptions(),
    note: Note = _silent,
    exposure_file: Path | None = None,
    select: FrameSelector = network_three,
    decoded: Callable[[], None] | None = None,
) -> ReadResult:
    """Read, validate, order, linearise and align the frames named by `paths`.

    `exposure_file`: a Kalantari `exposure.txt` for explicitly listed frames (dataset readers);
    a single folder argument finds its own. `select`: which frames the merge will take (the
    merge's backend decides, see `merge.frame_selector`), so only those are decoded; the
    default takes the network's three. `decoded`: called once the frames are decoded, before
    their content check and response calibration (`merge` lets the backend start its own
    preparation there, beside that lighter work).
    """
    files, found_file = resolve_inputs(paths)
    exposure_file = exposure_file or found_file
    if len(files) < 2:
        raise BracketError(f"a bracket needs at least 2 frames, got {len(files)}")
    infos = [capture_info(p) for p in files]
    times = _exposure_times(files, infos, options.exposures, exposure_file, note)
    order = sorted(range(len(files)), key=lambda i: times[i])
    ordered = [files[i] for i in order]
    ordered_times = [times[i] for i in order]
    exposure.check_distinct(ordered_times, [p.name for p in ordered])
    asked = options.reference.index(ordered) if options.reference is not None else None
    chosen, ref, merger = select(len(files), asked)
    if len(files) > 3:
        names = ", ".join(ordered[i].name for i in chosen)
        if len(chosen) == len(files):
            note(f"{len(files)} frames: {merger} merges all of them ({names})")
        else:
            note(f"{len(files)} frames: {merger} merges {names} (shortest, reference, longest)")
    paths_used = [ordered[i] for i in chosen]
    times_used = [ordered_times[i] for i in chosen]
    infos_used = [infos[order[i]] for i in chosen]

    # Decoding, the content check and the response lookup release the GIL: one frame per core
    # (a 12 MP JPEG decodes in ~0.2 s); errors come in frame order, as one after another.
    with ThreadPoolExecutor(max(1, min(usable_cores(), len(paths_used)))) as pool:
        frames = _decode(paths_used, infos_used, times_used, ref, pool)
        if decoded is not None:
            decoded()
        shapes = {f.image.shape for f in frames}
        if len(shapes) > 1:
            raise BracketError("frames differ in size: " + ", ".join(f"{f.path.name} {f.image.shape[1]}x{f.image.shape[0]}" for f in frames))
        list(pool.map(lambda f: check_content([f.image], [f.path.name]), frames))

        response = _response(options.response, frames, exposure_file is not None, note)
        # In place where a frame is float already, and the frames dropped: from here on each
        # frame exists once (a 12 MP frame is 145 MB in float32), and a warped frame replaces its
        # original. 8-bit frames are still their codes: a lookup gives their values.
        images = list(pool.map(lambda f: _linearised(f, response), frames))
    bits, raw = max(f.bits for f in frames), frames[0].raw
    del frames

    normalised = exposure.normalise(times_used)
    alignment_notes = []
    warped = [False] * len(images)
    others = [index for index in range(len(images)) if index != ref]
    fits = align.estimate_all(images[ref], normalised[ref], [(images[i], normalised[i]) for i in others], options.align)
    for index, fit in zip(others, fits):
        images[index] = align.warp(images[index], fit)
        warped[index] = fit.applied
        alignment_notes.append(f"{paths_used[index].name}: {fit.reason}")
        note(f"align {paths_used[index].name}: {fit.reason}")  # also when kept in place: say so

    bracket = Bracket(
        images=images,
        exposures=np.asarray(normalised),
        reference=ref,
        names=[p.name for p in paths_used],
        exposure_seconds=np.asarray(times_used),
        gamma=GAMMA,
        bits=bits,
        warped=tuple(warped),
    )
    reference_info = infos_used[ref]
    reference_seconds = reference_info.exposure_time
    if reference_seconds is None and options.exposures is not None and options.exposures.seconds:
        reference_seconds = times_used[ref]  # given in seconds; EV values and exposure.txt are not
    return ReadResult(
        bracket=bracket,
        used=paths_used,
        exposure_seconds=[float(t) for t in times_used],
        exposures=[float(t) for t in normalised],
        reference=paths_used[ref].name,
        reference_info=reference_info,
        reference_seconds=reference_seconds,
        response="linear RAW" if raw else (response.source if response else "gamma 2.2"),
        black_level=response.black if response else 0,
        alignment=alignment_notes,
    )
