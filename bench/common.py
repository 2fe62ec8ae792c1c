"""Helpers shared by the benchmark scripts (run as `python bench/NAME.py`, so importable as `common`)."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def cpu_model() -> str:
    """The CPU's model name, for the machine line of a results table."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, object]:
    """The machine line of every results file: CPU, cores and the versions that set the speed."""
    import os

    info: dict[str, object] = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()}
    for module in ("numpy", "cv2", "torch"):
        try:
            info[module if module != "cv2" else "opencv"] = __import__(module).__version__
        except ImportError:
            pass
    return info


def write_results(path: Path, report: dict) -> None:
    """The JSON record of a benchmark run, next to the tables it prints."""
    import json
    import sys

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}", file=sys.stderr)


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak resident memory of this process above the moment it was created.

    Resets the kernel's high-water mark (VmHWM) to the current resident set through
    /proc/self/clear_refs (Linux >= 4.0), so allocations outside Python (OpenCV, oneDNN) count
    too; where that is not allowed, falls back to the growth of ru_maxrss.
    """

    def __init__(self) -> None:
        import resource

        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False
        rss = _status_kib("VmRSS") if self.reset else None
        self.baseline_kib = rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.method = "VmHWM after clear_refs" if self.reset else "ru_maxrss delta"

    def mib(self) -> float:
        import resource

        peak = _status_kib("VmHWM") if self.reset else None
        if peak is None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return (peak - self.baseline_kib) / 1024.0


class RunLog:
    """The finished runs of a long benchmark, one JSON line each in `path`: a rerun skips what is
    there, so a crash or a stopped session loses at most the runs in flight."""

    def __init__(self, path: Path) -> None:
        import json

        self.path = path
        self.runs: list[dict] = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def done(self) -> set[tuple]:
        return {(r["row"], r["seed"]) for r in self.runs}

    def record(self, result: dict) -> None:
        import json

        self.runs.append(result)
        with self.path.open("a") as out:
            out.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)


def corner_error(fitted: np.ndarray, truth: np.ndarray, height: int, width: int) -> float:
    """Largest distance over the four image corners between where two warps (3x3, reference ->
    frame) put them, in px: how far a fitted alignment is from the true motion."""
    import numpy as np

    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], dtype=np.float64)
    a, b = corners @ fitted.T, corners @ truth.T
    return float(np.max(np.linalg.norm(a[:, :2] / a[:, 2:] - b[:, :2] / b[:, 2:], axis=1)))
