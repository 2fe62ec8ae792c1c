"""Benchmark: the whole `smarthdr merge --backend classic` process on a 12 MP JPEG bracket against
OpenCV's CalibrateDebevec + MergeDebevec doing the same job, measured in one run.

What is measured, and why: a photographer runs one command on three camera JPEGs and waits for
the EXR. So both candidates are timed as whole processes from the same files on disk: ours is
`python -m smarthdr_cli merge A B C -o out.exr --backend classic -q` with default settings
(response auto = calibrate for JPEGs, homography alignment, ghost rejection, half-float EXR);
OpenCV's is a Python process that reads the JPEGs with cv2.imread, calibrates the response
(CalibrateDebevec), merges (MergeDebevec) and writes a Radiance .hdr (OpenCV's EXR writer is
off by default). Wall time and peak resident memory (ru_maxrss of the child from os.wait4)
are the medians of `--repeats` runs, alternating the candidates so that a busy machine slows
both alike; the table gives the ratio ours / OpenCV. (A child inherits its parent's peak RSS at
fork, so the frames are made in a separate child and this parent stays at ~40 MiB.) Then, in this process, the stages of our
pipeline are timed once (decode, content check, response, alignment, merge, EXR write) to
show where the time goes.

The bracket: 4032x3024 (an iPhone's 12 MP), 8-bit JPEGs (quality 92) with EXIF exposure times
1/400, 1/100, 1/25 s, rendered through the project's camera model (smarthdr_cli.camera) with a
mild S-shaped tone curve, noise, and a small hand-held shift between frames (1.5 px, 0.05 deg),
so that alignment does real work.

Usage: python bench/classic_pipeline.py [--size 4032x3024] [--repeats 3] [--frames A B C]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import machine, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "classic_pipeline.json"
SECONDS = (1 / 400, 1 / 100, 1 / 25)

OPENCV_SCRIPT = r"""
import sys, cv2, numpy as np
paths, times, out = sys.argv[1:4], np.array([float(t) for t in sys.argv[4:7]], np.float32), sys.argv[7]
frames = [cv2.imread(p, cv2.IMREAD_COLOR) for p in paths]
response = cv2.createCalibrateDebevec().process(frames, times)
hdr = cv2.createMergeDebevec().process(frames, times, response)
assert cv2.imwrite(out, hdr)
"""


def make_bracket(folder: Path, width: int, height: int) -> list[Path]:
    """Three camera-like JPEGs with EXIF ExposureTime, slightly shifted against each other."""
    import cv2
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    from smarthdr_cli.camera import render_bracket
    from smarthdr_cli.data.synth.fixed_scene import procedural_radiance

    small = procedural_radiance(height // 4, width // 4, seed=12)  # procedural detail at 3 MP, upscaled
    radiance = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(12)
    radiance *= (1.0 + 0.05 * rng.standard_normal((height, width, 1))).astype(np.float32)  # fine texture
    scenes = []
    for index in range(3):
        angle, shift = (index - 1) * 0.05, (index - 1) * 1.5
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        matrix[:, 2] += shift
        scenes.append(cv2.warpAffine(radiance, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))

    def curve(x: np.ndarray) -> np.ndarray:  # a camera's S-shaped tone curve, not x^(1/2.2)
        y = np.clip(x, 0.0, 1.0) ** (1 / 2.2)
        return np.clip(y + 0.08 * np.sin(2 * np.pi * y) * y * (1 - y) * 4, 0.0, 1.0)

    frames = render_bracket(scenes, [t / SECONDS[0] for t in SECONDS], curve=curve, noise=0.002, seed=12)
    paths = []
    for index, (frame, seconds) in enumerate(zip(frames, SECONDS)):
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Benchcam", "12MP"
        exif.get_ifd(0x8769)[0x829A] = IFDRational(1, round(1 / seconds))
        path = folder / f"IMG_{index + 1}.jpg"
        Image.fromarray(frame).save(path, quality=92, exif=exif.tobytes())
        paths.append(path)
    return paths


def run_child(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stderr = process.stderr.read().decode() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[:4]}... failed: {stderr.strip()}")
    return seconds, usage.ru_maxrss / 1024.0


def stages(paths: list[Path], out: Path) -> dict[str, float]:
    """Seconds per stage of our pipeline, in this process (imports excluded)."""
    from smarthdr_backends.classic import ClassicBackend
    from smarthdr_cli import align, reading
    from smarthdr_cli import merge as pipeline

    timings: dict[str, float] = {}
    # Each stage where the pipeline looks it up: the reader's stages in `reading`, the EXR write in `merge`.
    homes = {"_decode": reading, "check_content": reading, "_response": reading, "save_hdr": pipeline}
    real = {name: getattr(home, name) for name, home in homes.items()}
    align_estimate = align.estimate_all
    align_warp = align.warp

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - began
        return wrapper

    # check_content runs once per frame, frames side by side: its figure is the sum over frames.
    labels = {"_decode": "decode", "check_content": "content check (summed over frames)", "_response": "response calibration", "save_hdr": "EXR write"}
    for name, function in real.items():
        setattr(homes[name], name, timed(labels[name], function))
    align.estimate_all = timed("alignment fit", align_estimate)
    align.warp = timed("alignment warp", align_warp)
    merge, statistics = ClassicBackend.merge, ClassicBackend._statistics
    ClassicBackend.merge = timed("merge", merge)  # type: ignore[method-assign]
    ClassicBackend._statistics = staticmethod(timed("merge: frame statistics", statistics))  # type: ignore[method-assign]
    try:
        began = time.perf_counter()
        pipeline.run_merge(paths, pipeline.MergeSettings(output=out, backend="classic", overwrite=True))
        timings["total (in process)"] = time.perf_counter() - began
    finally:
        for name, function in real.items():
            setattr(homes[name], name, function)
        align.estimate_all, align.warp = align_estimate, align_warp
        ClassicBackend.merge = merge  # type: ignore[method-assign]
        ClassicBackend._statistics = staticmethod(statistics)  # type: ignore[method-assign]
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="4032x3024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", nargs=3, type=Path, help="three JPEGs (short, medium, long) instead of the synthetic bracket")
    parser.add_argument("--exposures", nargs=3, type=float, default=SECONDS, help="their exposure times in seconds (for OpenCV)")
    parser.add_argument("--make", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.make:
        make_bracket(args.make, width, height)
        return
    with tempfile.TemporaryDirectory(prefix="smarthdr-bench-") as work:
        folder = Path(work)
        if args.frames:
            paths = list(args.frames)
        else:  # made in a child: a child inherits its parent's peak RSS at fork, so this one stays small
            subprocess.run([sys.executable, __file__, "--make", str(folder), "--size", args.size], check=True)
            paths = [folder / f"IMG_{index + 1}.jpg" for index in range(3)]
        ours = [sys.executable, "-m", "smarthdr_cli", "merge", *map(str, paths), "-o", str(folder / "ours.exr"), "--backend", "classic", "-q", "--overwrite"]
        theirs = [sys.executable, "-c", OPENCV_SCRIPT, *map(str, paths), *map(str, args.exposures), str(folder / "opencv.hdr")]
        runs: dict[str, list[tuple[float, float]]] = {"smarthdr classic": [], "OpenCV Debevec": []}
        for _ in range(args.repeats):
            runs["smarthdr classic"].append(run_child(ours))
            runs["OpenCV Debevec"].append(run_child(theirs))
        rows = {
            name: {"seconds": statistics.median(r[0] for r in values), "peak_mib": statistics.median(r[1] for r in values),
                   "all_seconds": [round(r[0], 2) for r in values]}
            for name, values in runs.items()
        }
        timings = stages(paths, folder / "stages.exr")
    ratio_time = rows["smarthdr classic"]["seconds"] / rows["OpenCV Debevec"]["seconds"]
    ratio_memory = rows["smarthdr classic"]["peak_mib"] / rows["OpenCV Debevec"]["peak_mib"]
    print(f"{'candidate':<18} {'seconds':>8} {'peak MiB':>9}")
    for name, row in rows.items():
        print(f"{name:<18} {row['seconds']:>8.2f} {row['peak_mib']:>9.0f}")
    print(f"{'ratio':<18} {ratio_time:>8.2f} {ratio_memory:>9.2f}")
    print("\nour stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    write_results(RESULTS, {
        "machine": machine(), "size": [width, height], "repeats": args.repeats,
        "frames": [str(p) for p in args.frames] if args.frames else "synthetic 12 MP JPEG bracket",
        "candidates": rows, "ratio": {"seconds": ratio_time, "peak_mib": ratio_memory}, "stages_s": timings,
    })


if __name__ == "__main__":
    main()
