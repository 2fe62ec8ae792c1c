"""Benchmark: seconds per 1000x1500 scene of the synthetic bracket engine (`smarthdr_cli.data.synth`).

What is measured, and why:

* Training needs hundreds of synthetic scenes, so the number to plan with is the wall time per
  scene of `synth.generate` on one core, files included: scene radiance, moving objects, camera
  motion, three noisy 16-bit exposures, and writing the scene folder (three uncompressed 16-bit
  TIFFs, exposure.txt, the motion mask and the Radiance .hdr ground truth; about 30 MB per
  scene). OpenCV runs with one thread (`cv2.setNumThreads(1)`); numpy is single-threaded here.
* Rows: procedural scenes (the default) and scenes cropped from real HDR photographs
  (`--hdr-source`, default `../shared/data/hdr-train/` when present). For each, `--scenes` scenes
  (default 10) are generated twice, in the same process: once through `generate` into an empty
  temporary folder (end to end, as `smarthdr synth` does it; with `--hdr-source` this includes
  decoding every source file the scenes use, once), and once scene by scene to split the time
  into `synth_scene` (in memory) and `write_scene` (files). The second pass finds the sources
  already decoded.
* Reported per row: median and mean end-to-end seconds per scene (from `generate`'s progress
  callback), the in-memory and writing medians, the CPU seconds of this process per wall second
  during `generate` (about 1.0 = one core fully used; less means waiting on the disk or other
  processes), and the bytes written per scene.

Usage: python bench/synth_speed.py [--scenes 10] [--size 1500x1000] [--hdr-source DIR] [--out-dir DIR]
Takes about 1 s per scene and row, twice, on a 2-core VM.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from common import machine, write_results

SHARED_SOURCES = Path(__file__).resolve().parents[2] / "shared" / "data" / "hdr-train"
RESULTS = Path(__file__).resolve().parent / "results" / "synth_speed.json"


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def end_to_end(settings: Any, out_dir: Path) -> dict[str, Any]:
    """`generate` into an empty folder; per-scene wall times from its progress callback."""
    from smarthdr_cli.data.synth import generate

    with tempfile.TemporaryDirectory(prefix="smarthdr-synth-bench-", dir=out_dir) as folder:
        out = Path(folder) / "data"
        stamps: list[float] = []
        started, cpu = time.perf_counter(), time.process_time()
        generate(out, settings, progress=lambda done, total: stamps.append(time.perf_counter()))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        size = folder_bytes(out)
    per_scene = np.diff([started, *stamps]).tolist()
    return {"wall_s": wall, "per_scene_s": per_scene, "cpu_per_wall": cpu / wall, "bytes_per_scene": size / len(stamps)}


def split_times(settings: Any, out_dir: Path) -> dict[str, Any]:
    """Each scene made in memory, then written: where the time goes."""
    from smarthdr_cli.data.synth.layout import write_scene
    from smarthdr_cli.data.synth.scene import synth_scene

    make, write = [], []
    with tempfile.TemporaryDirectory(prefix="smarthdr-synth-bench-", dir=out_dir) as folder:
        for index in range(settings.scene_count()):
            started = time.perf_counter()
            scene = synth_scene(settings, index)
            made = time.perf_counter()
            write_scene(scene, Path(folder) / f"{index:04d}", with_gt=True)
            make.append(made - started)
            write.append(time.perf_counter() - made)
    return {"synth_scene_s": make, "write_scene_s": write}


def measure(name: str, settings: Any, out_dir: Path) -> dict[str, Any]:
    print(f"{name}: {settings.scene_count()} scenes ...", file=sys.stderr)
    row = {"source": name, **end_to_end(settings, out_dir), **split_times(settings, out_dir)}
    row["median_s"] = statistics.median(row["per_scene_s"])
    row["mean_s"] = statistics.mean(row["per_scene_s"])
    row["synth_scene_median_s"] = statistics.median(row["synth_scene_s"])
    row["write_scene_median_s"] = statistics.median(row["write_scene_s"])
    return row


def main() -> None:
    import cv2

    from smarthdr_cli.data.synth import SynthSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--size", default="1500x1000", help="WIDTHxHEIGHT of every scene")
    parser.add_argument("--hdr-source", type=Path, default=SHARED_SOURCES if SHARED_SOURCES.is_dir() else None)
    parser.add_argument("--out-dir", type=Path, default=Path(tempfile.gettempdir()), help="where the scenes are written")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    width, height = (int(v) for v in args.size.lower().split("x"))
    base = SynthSettings(scenes=args.scenes, height=height, width=width)

    rows = [measure("procedural", base, args.out_dir)]
    if args.hdr_source is not None:
        rows.append(measure(f"hdr-source {args.hdr_source.name}", replace(base, hdr_source=args.hdr_source), args.out_dir))
    else:
        print("no --hdr-source and ../shared/data/hdr-train is absent: procedural row only", file=sys.stderr)

    print(f"\n### Synthetic scenes, {width}x{height}, 16-bit, one core ({args.scenes} scenes per row)\n")
    print("| source | median s/scene | mean s/scene | in memory (median s) | writing (median s) | CPU/wall | MB/scene |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['source']} | {row['median_s']:.2f} | {row['mean_s']:.2f} | {row['synth_scene_median_s']:.2f} "
              f"| {row['write_scene_median_s']:.2f} | {row['cpu_per_wall']:.2f} | {row['bytes_per_scene'] / 1e6:.0f} |")

    report = {
        "size": [width, height], "scenes": args.scenes, "settings": base.describe(),
        "hdr_source": None if args.hdr_source is None else str(args.hdr_source), "out_dir": str(args.out_dir),
        "opencv_threads": cv2.getNumThreads(), "rows": rows,
        "machine": machine(),
    }
    write_results(RESULTS, report)


if __name__ == "__main__":
    main()
