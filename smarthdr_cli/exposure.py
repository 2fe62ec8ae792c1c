"""Exposure times of a bracket: from the user's flags, an `exposure.txt`, or the camera's metadata.

Times are in seconds until `normalise` divides them by the shortest one (t_short = 1), which is the
convention of the Kalantari data the network is trained on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from smarthdr_cli.errors import ExposureError
from smarthdr_cli.io.exif import CaptureInfo, check_image

EXPOSURE_HINT = "pass --exposures 1/100,1/25,1/6 (seconds) or --ev -2,0,2, in the order the files are given"

# Plausible exposure times in seconds. Electronic shutters reach about 1/32000 s (3e-5 s) and
# astro or pinhole exposures run for hours; a time outside 1 us .. ~28 h is a metadata or typing
# error (an EXIF ExposureTime of 1e9 s, say), not a photograph.
MIN_SECONDS = 1e-6
MAX_SECONDS = 1e5
# EV values (--ev, exposure.txt) are relative to any base, so they are bounded in stops instead.
MAX_EV = 30
# Longest over shortest exposure of one bracket: 2^30, far beyond any sensor's range (about 2^15
# per frame), keeps the normalised times (t_short = 1), their products in the merge and 2^EV
# finite in float32; 1e-300 s .. 1e300 s gave inf in the output header.
MAX_SPAN_STOPS = 30


def _shown(text: str) -> str:
    """`text` quoted for a one-line message, at most ~40 characters of it."""
    return repr(text) if len(text) <= 40 else repr(text[:37]) + "..."


def _number(text: str, what: str) -> float:
    text = text.strip()
    try:
        value = float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError, OverflowError):  # OverflowError: "9999...9/1" is beyond float
        raise ExposureError(f"{what}: cannot read {_shown(text)} as a number") from None
    if not math.isfinite(value):
        raise ExposureError(f"{what}: {_shown(text)} is not a finite number")
    return value


def _numbers(text: str, source: str, example: str) -> list[float]:
    """A comma-separated list of numbers, e.g. one per file; `source` names it in messages."""
    parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:  # `--exposures ''` is a mistake (an unset shell variable), not "read the EXIF"
        raise ExposureError(f"{source} is empty; give one value per file, e.g. {source} {example}, or leave the flag out")
    return [_number(p, source) for p in parts]


def _check_seconds(times: Sequence[float], labels: Sequence[str], way_out: str) -> None:
    """Refuse times no camera takes; each label says where its time came from (a file, a flag)."""
    for t, label in zip(times, labels):
        if not (math.isfinite(t) and MIN_SECONDS <= t <= MAX_SECONDS):
            raise ExposureError(
                f"{label} {t:.6g} s is implausible (allowed {MIN_SECONDS:g} s .. {MAX_SECONDS:g} s); {way_out}"
            )


def _check_span(times: Sequence[float], labels: Sequence[str], where: str, way_out: str) -> None:
    """Refuse a bracket whose longest exposure is more than 2^MAX_SPAN_STOPS times its shortest.

    Beyond that the normalised times and the merge's sums leave float32 (inf in the output).
    """
    if not times:
        return
    short = min(range(len(times)), key=lambda i: times[i])
    long = max(range(len(times)), key=lambda i: times[i])
    stops = math.log2(times[long]) - math.log2(times[short])
    if not stops <= MAX_SPAN_STOPS:
        raise ExposureError(
            f"{where}: exposures span {stops:.1f} stops ({labels[short]} .. {labels[long]}); "
            f"a bracket may span at most {MAX_SPAN_STOPS} stops; {way_out}"
        )


def _ev_to_times(values: list[float], where: str) -> list[float]:
    if any(abs(v) > MAX_EV for v in values):
        raise ExposureError(f"{where}: EV values must lie within -{MAX_EV}..{MAX_EV} stops")
    times = [2.0**v for v in values]
    _check_span(times, [f"EV {v:g}" for v in values], where, "check the EV values")
    return times


@dataclass(frozen=True)
class GivenExposures:
    """Exposure times given for the frames in the order the files were given, checked as far as
    they can be before the files are read (numbers, plausible, span); the count is checked by
    `for_frames` once the reader knows how many frames there are.

    `seconds`: whether the times are seconds (an exposure time the output may record) rather
    than 2^EV of stops relative to any base. `source` names them in messages (the CLI: its flag).
    """

    times: tuple[float, ...]
    seconds: bool
    source: str

    def for_frames(self, count: int) -> list[float]:
        """The times, one per frame, or an ExposureError when their number is not `count`."""
        if len(self.times) != count:
            raise ExposureError(f"{self.source}: got {len(self.times)} values for {count} files")
        return list(self.times)


def given_seconds(text: str, source: str) -> GivenExposures:
    """`1/100,1/25,0.16`: one exposure time in seconds per file, in the order given."""
    values = _numbers(text, source, "1/100,1/25,1/6")
    if any(v <= 0 for v in values):
        raise ExposureError(f"{source}: exposure times must be positive seconds")
    way_out = "give times in seconds, e.g. 1/100,1/25,1/6"
    _check_seconds(values, [f"{source}: exposure time"] * len(values), way_out)
    _check_span(values, [f"{v:.6g} s" for v in values], source, way_out)
    return GivenExposures(tuple(values), True, source)


def given_ev(text: str, source: str) -> GivenExposures:
    """`-2,0,2`: exposure values relative to any common base, one per file; t = 2^EV."""
    return GivenExposures(tuple(_ev_to_times(_numbers(text, source, "-2,0,2"), source)), False, source)


def parse_exposures(text: str, count: int, source: str = "--exposures") -> list[float]:
    """`given_seconds` for `count` files: the times in seconds."""
    return given_seconds(text, source).for_frames(count)


def parse_ev(text: str, count: int, source: str = "--ev") -> list[float]:
    """`given_ev` for `count` files: the times 2^EV."""
    return given_ev(text, source).for_frames(count)


def read_exposure_file(path: Path, count: int) -> list[float]:
    """A Kalantari `exposure.txt`: one EV per line (t = 2^EV), in file-name order of the frames."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExposureError(f"{path}: cannot read exposure file ({exc})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) != count:
        raise ExposureError(f"{path}: has {len(lines)} exposure values for {count} frames")
    return _ev_to_times([_number(line, str(path)) for line in lines], str(path))


def effective_exposures(infos: Sequence[CaptureInfo], paths: Sequence[Path]) -> tuple[list[float], bool]:
    """Exposure times from metadata, with ISO and aperture folded in where they vary.

    Returns the times and whether ISO/aperture changed them. The sensor signal is proportional
    to t * ISO / N^2, so that product (scaled to the first frame's ISO and aperture) is what the
    merge needs when a bracket varies ISO or aperture instead of, or besides, shutter time.
    """
    missing = [p for p, info in zip(paths, infos) if info.exposure_time is None]
    for path in missing:  # an empty or text file has no EXIF either; say what it really is
        check_image(path)
    if missing:
        raise ExposureError(f"no exposure time in the metadata of {', '.join(p.name for p in missing)}; {EXPOSURE_HINT}")
    times = [float(info.exposure_time) for info in infos]  # type: ignore[arg-type]
    way_out = f"if the metadata is wrong, {EXPOSURE_HINT}"
    sources = {"exif": "EXIF", "libraw": "RAW metadata"}
    _check_seconds(times, [f"{p}: {sources.get(i.source, 'metadata')} exposure time" for p, i in zip(paths, infos)], way_out)
    folded = False
    isos = [info.iso for info in infos]
    if all(iso for iso in isos) and len({round(iso, 3) for iso in isos}) > 1:  # type: ignore[arg-type]
        times = [t * iso / isos[0] for t, iso in zip(times, isos)]  # type: ignore[operator]
        folded = True
    apertures = [info.f_number for info in infos]
    if all(n for n in apertures) and len({round(n, 2) for n in apertures}) > 1:  # type: ignore[arg-type]
        times = [t * (apertures[0] / n) ** 2 for t, n in zip(times, apertures)]  # type: ignore[operator]
        folded = True
    what = "effective exposures (time x ISO x aperture)" if folded else "exposure times in the metadata"
    _check_span(times, [f"{p.name} {t:.6g} s" for p, t in zip(paths, times)], what, way_out)
    return times, folded


def normalise(times: Sequence[float]) -> list[float]:
    """Times divided by the shortest: t_short = 1, as in the training data."""
    shortest = min(times)
    return [t / shortest for t in times]


def check_distinct(times_sorted: Sequence[float], names_sorted: Sequence[str]) -> None:
    """Two frames within 1/6 stop of each other carry no extra range and confuse the merge."""
    for (t0, n0), (t1, n1) in zip(zip(times_sorted, names_sorted), zip(times_sorted[1:], names_sorted[1:])):
        if t1 / t0 < 2 ** (1 / 6):
            raise ExposureError(
                f"{n0} and {n1} have the same exposure ({t0:.6g} s vs {t1:.6g} s); "
                f"a bracket needs different exposures ({EXPOSURE_HINT} if the metadata is wrong)"
            )
