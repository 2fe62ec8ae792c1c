"""Whole `smarthdr merge` runs, learned and classic, at 1500x1000 and 12 MP: time and peak memory.

What a photographer waits for: one `smarthdr merge` process per run (reading, alignment, the
merge, EXR writing; default settings, so homography alignment), timed by the wall clock, its
peak resident memory read from the kernel for that child alone (`os.wait4`). Brackets: one
`smarthdr synth` scene at each size (16-bit gamma TIFFs, seed 3, procedural, objects and camera
motion as synth's defaults), made once. Runs: `classic`, the `cpu` backend with the shipped
weights in fp32 and in bf16 (`--precision`). Each run once: on this shared 2-core machine
repeated merges differ by up to 15% (see the top of bench/README.md).

    python bench/merge_speed.py --work /tmp/speed              # about 6 minutes on 2 cores
    python bench/merge_speed.py --work /tmp/speed --sizes 1500x1000
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from common import machine, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "merge_speed.json"
RUNS = (("classic", ["--backend", "classic"]), ("cpu fp32", ["--backend", "cpu", "--precision", "fp32"]), ("cpu bf16", ["--backend", "cpu", "--precision", "bf16"]))


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one child process."""
    began = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({status}): {' '.join(command)}")
    return seconds, usage.ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--sizes", default="1500x1000,4000x3000", help="WIDTHxHEIGHT,...")
    parser.add_argument("--weights", type=Path, help="weights for the cpu runs (default: the shipped ones)")
    args = parser.parse_args()
    smarthdr = [sys.executable, "-m", "smarthdr_cli"]
    rows = []
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        scene = args.work / f"scene_{size}"
        if not scene.exists():
            subprocess.run([*smarthdr, "synth", str(scene), "--scenes", "1", "--seed", "3", "--width", str(width), "--height", str(height), "-q"], check=True)
        for name, flags in RUNS:
            out = args.work / f"{size}_{name.replace(' ', '_')}.exr"
            out.unlink(missing_ok=True)
            extra = ["--weights", str(args.weights)] if args.weights and name != "classic" else []
            seconds, mib = run([*smarthdr, "merge", str(scene / "0000"), "-o", str(out), *flags, *extra, "-q"])
            rows.append({"size": size, "run": name, "seconds": round(seconds, 1), "peak_mib": round(mib)})
            print(f"| {size} | {name} | {seconds:.1f} | {mib:.0f} |", flush=True)
    write_results(RESULTS, {"machine": machine(), "runs": rows})


if __name__ == "__main__":
    main()
