"""Benchmark: `smarthdr batch` throughput (brackets per minute) on the CPU for 12 MP JPEG brackets.

What is measured, and why:

* A photo library is merged with `smarthdr batch DIR -o OUT`, so the number a user plans with is
  brackets per minute of that command, not the time of one merge: it includes process start,
  imports, bracket discovery (EXIF of every file), model load, JPEG decoding, response
  calibration (`--response auto` calibrates JPEGs), alignment, the merge, and writing the EXR.
  Each row runs the real command as a subprocess and times it from start to exit.
* Input: a folder of camera-like 12 MP (4000x3000) JPEG brackets (quality 95, EXIF Make/Model,
  DateTimeOriginal, ExposureTime 1/400, 1/100, 1/25 s, named IMG_0001.jpg ... in shooting
  order, each bracket a minute after the previous one, so discovery must find them as separate
  brackets). One synthetic scene (`synth.fixed_scene.procedural_radiance`, with a textured object that
  moves between frames, `fixed_scene.moving_object`) is rendered once through an sRGB + S-curve
  camera tone curve (`camera.s_curve`) with read and shot noise, and the same three frames are
  written for every bracket: rendering 12 MP is slow, and the merge does the same work for
  each copy.
* Rows: the `classic` backend with `--jobs 1` and `--jobs 2` on `--brackets` brackets (default
  6), and the learned `cpu` backend (full-size GFHDR network) in fp32 (its default) and with
  `--precision bf16`, on `--learned-brackets` brackets (default 1: several minutes each at
  12 MP on a 2-core machine). The learned backend runs with `--weights W`, a full-size network
  (default `GFHDRConfig`) with random weights from a fixed seed, written by the project's own
  `save_weights`: no trained weights exist yet, and the time of a forward pass does not depend
  on the weight values (same shapes, same operations; no data-dependent early exit).
* Reported per row: brackets merged, wall time of the whole command, brackets/minute,
  seconds/bracket (wall / brackets), the median per-bracket time from the batch report
  (`seconds` in smarthdr-batch-report.jsonl: one `run_merge`, without start-up and model
  load), CPU seconds of the command and its children over wall time (about 2.0 = both cores
  busy; noticeably less with `--jobs 2` or the learned backend hints at competing processes or
  serial parts), the CPU the *other* processes on the machine used meanwhile (busy time from
  /proc/stat minus this command's, per wall second, in cores: a noise indicator), and peak
  resident memory: ru_maxrss from `os.wait4` of the command (run from a small wrapper process,
  see WRAPPER), i.e. the maximum over the command and every process it reaped -- for
  `--jobs 2` the largest single worker (or the parent), not the sum of both workers.

Usage: python bench/batch_throughput.py [--brackets 6] [--learned-brackets 1] [--skip-learned]
The defaults take about 15 minutes on 2 idle cores (25 with competing load); the learned rows
are most of it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import cpu_model, machine

EXPOSURES_S = ((1, 400), (1, 100), (1, 25))  # EV -2 / 0 / +2 as ExposureTime rationals
RELATIVE = [1.0, 4.0, 16.0]  # the same exposures, normalised to the shortest
NOISE = 0.002  # read noise relative to full scale (camera.render_bracket)
CAMERA = ("Benchcam", "HDR-12")
RESULTS = Path(__file__).resolve().parent / "results" / "batch_throughput.json"


# --------------------------------------------------------------------------- data


def exif_jpeg(path: Path, pixels: np.ndarray, exposure: tuple[int, int], when: str) -> Path:
    """A camera-like JPEG: Make/Model, orientation, DateTimeOriginal and ExposureTime in EXIF."""
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = CAMERA[0], CAMERA[1], 1  # Make, Model, Orientation
    details = exif.get_ifd(0x8769)
    details[0x829A] = IFDRational(*exposure)  # ExposureTime
    details[0x9003] = when  # DateTimeOriginal
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


def render_frames(width: int, height: int) -> list[np.ndarray]:
    """One scene with a moving object, as three uint8 frames (EV -2/0/+2, reference in the middle)."""
    from smarthdr_cli.camera import render_bracket, s_curve
    from smarthdr_cli.data.synth.fixed_scene import moving_object, procedural_radiance

    radiance = procedural_radiance(height, width, seed=11)
    scenes, _ = moving_object(radiance, 3, reference=1, seed=11)
    del radiance
    return render_bracket(scenes, RELATIVE, curve=s_curve, bits=8, noise=NOISE, seed=11)


def write_brackets(folder: Path, frames: list[np.ndarray], count: int) -> list[Path]:
    """`count` brackets of the same frames, one minute apart, files numbered in shooting order."""
    paths = []
    number = 1
    for bracket in range(count):
        hour, minute = divmod(bracket, 60)
        when = f"2024:05:01 {12 + hour:02d}:{minute:02d}:00"
        for frame, exposure in zip(frames, EXPOSURES_S):
            paths.append(exif_jpeg(folder / f"IMG_{number:04d}.jpg", frame, exposure, when))
            number += 1
    return paths


def write_random_weights(path: Path) -> dict[str, Any]:
    """A full-size GFHDR network (default config) with random weights, saved by the project's code."""
    import torch

    from smarthdr_cli.model import GFHDR, GFHDRConfig
    from smarthdr_cli.model.weights import save_weights

    torch.manual_seed(0)
    model = GFHDR(GFHDRConfig())
    card = {"description": "random weights (seed 0) for bench/batch_throughput.py; not trained"}
    return save_weights(model, path, card)


# --------------------------------------------------------------------------- running


def smarthdr_command() -> list[str]:
    script = Path(sys.executable).with_name("smarthdr")
    if script.is_file():
        return [str(script)]
    found = shutil.which("smarthdr")
    return [found] if found else [sys.executable, "-m", "smarthdr_cli"]


# Runs the command and reports its wall time and the rusage that os.wait4 gives for it (its own
# and that of every process it reaped: the `--jobs` workers). It is a separate, small process
# because a process's ru_maxrss starts at the high-water mark of the address space it replaced
# on exec: launched straight from this script (vfork + exec), `smarthdr` would report this
# script's own peak (about 3 GiB after rendering 12 MP frames) whenever its own was lower.
WRAPPER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=sys.stderr)
_, status, usage = os.wait4(child.pid, 0)
wall = time.perf_counter() - started
child.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_kib": usage.ru_maxrss,
                  "returncode": child.returncode}))
"""


def busy_cpu_seconds() -> float:
    """CPU seconds all processes on the machine have spent busy since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user / nice
    return (sum(fields) - idle - guest) / os.sysconf("SC_CLK_TCK")


def run_row(label: str, inputs: Path, out: Path, extra: list[str], expected: int) -> dict[str, Any]:
    """Run one `smarthdr batch` to completion; wall time, rusage of it and its children, its report."""
    out.mkdir(parents=True)
    command = smarthdr_command() + ["batch", str(inputs), "-o", str(out), "-q", *extra]
    print(f"[{label}] {' '.join(command[-len(extra) - 5:])}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()[0]
    busy_before = busy_cpu_seconds()
    done = subprocess.run([sys.executable, "-S", "-c", WRAPPER, *command], capture_output=True, text=True)
    busy = busy_cpu_seconds() - busy_before
    load_after = os.getloadavg()[0]
    try:
        measured = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise SystemExit(f"{label}: the timing wrapper failed:\n{done.stdout}{done.stderr}") from None
    wall, cpu, code = measured["wall_s"], measured["cpu_s"], measured["returncode"]
    if code != 0:
        raise SystemExit(f"{label}: smarthdr batch exited {code}:\n{done.stderr}")
    report = (out / "smarthdr-batch-report.jsonl").read_text().splitlines()
    lines = [json.loads(line) for line in report if line.strip()]
    merged = [line for line in lines if line.get("status") == "ok"]
    if len(merged) != expected or len(lines) != expected:
        listing = "\n".join(map(json.dumps, lines))
        raise SystemExit(f"{label}: expected {expected} merged brackets, report says:\n{listing}")
    per_bracket = [float(line["seconds"]) for line in merged]
    row = {
        "label": label,
        "args": extra,
        "brackets": len(merged),
        "wall_s": wall,
        "brackets_per_min": 60.0 * len(merged) / wall,
        "s_per_bracket": wall / len(merged),
        "report_seconds": per_bracket,
        "report_median_s": statistics.median(per_bracket),
        "cpu_s": cpu,
        "cpu_per_wall": cpu / wall,
        "other_cpu_per_wall": max(0.0, busy - cpu) / wall,  # other processes, in cores (0..2 here)
        "peak_rss_mib": measured["maxrss_kib"] / 1024.0,
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": load_after,
        "output_bytes": sum(p.stat().st_size for p in out.rglob("*.exr")),
    }
    print(f"[{label}] {wall:.1f} s, {row['brackets_per_min']:.2f} brackets/min, "
          f"cpu/wall {row['cpu_per_wall']:.2f}, others {row['other_cpu_per_wall']:.2f}, "
          f"peak {row['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| row | brackets | wall time (s) | brackets / min | s / bracket | median merge in report (s) "
            "| CPU s / wall s | other processes (cores) | peak RSS (MiB) |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    body = [
        f"| {r['label']} | {r['brackets']} | {r['wall_s']:.1f} | {r['brackets_per_min']:.2f} | {r['s_per_bracket']:.1f} "
        f"| {r['report_median_s']:.1f} | {r['cpu_per_wall']:.2f} | {r['other_cpu_per_wall']:.2f} "
        f"| {r['peak_rss_mib']:.0f} |"
        for r in rows
    ]
    return "\n".join([head, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brackets", type=int, default=6, help="brackets for the classic rows (default 6)")
    parser.add_argument("--learned-brackets", type=int, default=1, help="brackets for the learned rows (default 1)")
    parser.add_argument("--skip-learned", action="store_true", help="only the classic rows")
    parser.add_argument("--size", default="4000x3000", help="frame size WxH (default 4000x3000, 12 MP)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.brackets < 1 or args.learned_brackets < 1:
        parser.error("--brackets and --learned-brackets must be at least 1")

    with tempfile.TemporaryDirectory(prefix="smarthdr-batch-bench-") as temp:
        root = Path(temp)
        started = time.perf_counter()
        frames = render_frames(width, height)
        render_s = time.perf_counter() - started
        started = time.perf_counter()
        write_brackets(root / "classic-in", frames, args.brackets)
        if not args.skip_learned:
            write_brackets(root / "learned-in", frames, args.learned_brackets)
        jpeg_bytes = sum(p.stat().st_size for p in (root / "classic-in").glob("*.jpg")) / (3 * args.brackets)
        write_s = time.perf_counter() - started
        del frames
        print(f"rendered {width}x{height} in {render_s:.1f} s, wrote JPEGs in {write_s:.1f} s "
              f"({jpeg_bytes / 2**20:.1f} MiB per frame)", file=sys.stderr, flush=True)

        plan = [
            ("classic, --jobs 1", "classic-in", ["--backend", "classic", "--jobs", "1"], args.brackets),
            ("classic, --jobs 2", "classic-in", ["--backend", "classic", "--jobs", "2"], args.brackets),
        ]
        card = None
        if not args.skip_learned:
            weights = root / "random-gfhdr.safetensors"
            card = write_random_weights(weights)
            learned = ["--backend", "cpu", "--weights", str(weights)]
            plan += [
                ("cpu (GFHDR), fp32", "learned-in", learned, args.learned_brackets),
                ("cpu (GFHDR), --precision bf16", "learned-in", [*learned, "--precision", "bf16"], args.learned_brackets),
            ]
        rows = []
        for index, (label, inputs, extra, count) in enumerate(plan):
            rows.append(run_row(label, root / inputs, root / f"out-{index}", extra, count))
            shutil.rmtree(root / f"out-{index}")

    report = {
        "machine": machine(),
        "size": f"{width}x{height}",
        "exposures_s": [f"{a}/{b}" for a, b in EXPOSURES_S],
        "jpeg_mib_per_frame": jpeg_bytes / 2**20,
        "render_s": render_s,
        "write_jpegs_s": write_s,
        "weights_parameters": card["parameters"] if card else None,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n### `smarthdr batch` throughput ({width}x{height} JPEG brackets, {cpu_model()}, {os.cpu_count()} cores)\n")
    print(table(rows))
    print(f"\nwritten {RESULTS}")


if __name__ == "__main__":
    main()
