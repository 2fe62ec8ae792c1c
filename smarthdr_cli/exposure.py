"""Exposure times of a bracket: from the user's flags, an `exposure.txt`, or the camera's metadata.

Times are in seconds until `normalise` divides them by the shortest one (t_short = 1), which is the
convention of the Kalantari data the network is trained on.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from smarthdr_cli.errors import ExposureError
from smarthdr_cli.io.exif import CaptureInfo

EXPOSURE_HINT = "pass --exposures 1/100,1/25,1/6 (seconds) or --ev -2,0,2, in the order the files are given"


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


def _numbers(text: str, count: int, flag: str) -> list[float]:
    """A comma-separated flag value with exactly one number per file."""
    parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
    if len(parts) != count:
        raise ExposureError(f"{flag}: got {len(parts)} values for {count} files")
    return [_number(p, flag) for p in parts]


def _ev_to_times(values: list[float], where: str) -> list[float]:
    if any(abs(v) > 30 for v in values):
        raise ExposureError(f"{where}: EV values must lie within -30..30 stops")
    return [2.0**v for v in values]


def parse_exposures(text: str, count: int) -> list[float]:
    """`--exposures 1/100,1/25,0.16`: one time in seconds per file, in the order given."""
    values = _numbers(text, count, "--exposures")
    if any(v <= 0 for v in values):
        raise ExposureError("--exposures: exposure times must be positive seconds")
    return values


def parse_ev(text: str, count: int) -> list[float]:
    """`--ev -2,0,2`: exposure values relative to any common base; t = 2^EV."""
    return _ev_to_times(_numbers(text, count, "--ev"), "--ev")


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
    missing = [p.name for p, info in zip(paths, infos) if info.exposure_time is None]
    if missing:
        raise ExposureError(f"no exposure time in the metadata of {', '.join(missing)}; {EXPOSURE_HINT}")
    times = [float(info.exposure_time) for info in infos]  # type: ignore[arg-type]
    folded = False
    isos = [info.iso for info in infos]
    if all(iso for iso in isos) and len({round(iso, 3) for iso in isos}) > 1:  # type: ignore[arg-type]
        times = [t * iso / isos[0] for t, iso in zip(times, isos)]  # type: ignore[operator]
        folded = True
    apertures = [info.f_number for info in infos]
    if all(n for n in apertures) and len({round(n, 2) for n in apertures}) > 1:  # type: ignore[arg-type]
        times = [t * (apertures[0] / n) ** 2 for t, n in zip(times, apertures)]  # type: ignore[operator]
        folded = True
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
