"""Alignment's fit resolution at 12 MP: accuracy and time of `align.estimate_all` for several
work-level sizes (`align._WORK_SIDE`, about the long side of the image keypoints are found on and ECC's finest level, reached by an integer reduction) on classic_pipeline.py's
synthetic 12 MP JPEG bracket, whose true motion is known (frame i is the scene moved by a rotation
of (i - 1) x 0.05 degrees about the centre plus a (i - 1) x 1.5 px shift).

The error is the largest distance, over the four image corners, between where the fitted warp and
the true one put them (full-resolution pixels). The frames are read as `merge` reads them
(`--response auto`, no alignment), then fitted in process, each size `--repeats` times.

    python bench/alignment_work_side.py                  # about 1 min on 2 cores
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import corner_error, machine, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "alignment_work_side.json"
HERE = Path(__file__).resolve().parent


def true_warp(index: int, width: int, height: int) -> np.ndarray:
    """Reference -> frame coordinates for frame `index` of the bench bracket (classic_pipeline.make_bracket)."""
    import cv2

    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), (index - 1) * 0.05, 1.0)
    matrix[:, 2] += (index - 1) * 1.5
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4032x3024")
    parser.add_argument("--sides", nargs="+", type=int, default=[512, 768, 1024, 1536])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mode", default="homography")
    args = parser.parse_args()
    from smarthdr_cli import align
    from smarthdr_cli.reading import ReadOptions, read_bracket

    with tempfile.TemporaryDirectory(prefix="smarthdr-align-") as work:
        subprocess.run([sys.executable, str(HERE / "classic_pipeline.py"), "--make", work, "--size", args.size], check=True)
        paths = [Path(work) / f"IMG_{i + 1}.jpg" for i in range(3)]
        bracket = read_bracket(paths, ReadOptions(align="none")).bracket
    height, width = bracket.shape
    reference = bracket.reference
    moving = [(bracket.images[i], float(bracket.exposures[i])) for i in range(3) if i != reference]
    rows = []
    for side in args.sides:
        align._WORK_SIDE = side
        seconds, results = [], None
        for _ in range(args.repeats):
            began = time.perf_counter()
            results = align.estimate_all(bracket.images[reference], float(bracket.exposures[reference]), moving, args.mode, bracket.gamma)
            seconds.append(time.perf_counter() - began)
        frames = [i for i in range(3) if i != reference]
        errors = [corner_error(r.matrix if r.applied else np.eye(3), true_warp(i, width, height), height, width) for r, i in zip(results, frames)]
        factor = align._factor(height, width)  # the work level is an integer reduction of the frame
        rows.append({"work_side": side, "factor": factor, "work_px": [width // factor, height // factor],
                     "seconds": statistics.median(seconds), "all_seconds": [round(s, 2) for s in seconds],
                     "corner_error_px": errors, "reasons": [r.reason for r in results]})
        print(f"work side {side:5d} ({width // factor}x{height // factor}, 1/{factor}): {statistics.median(seconds):6.2f} s, "
              f"corner error {', '.join(f'{e:.2f}' for e in errors)} px ({'; '.join(r.reason for r in results)})", flush=True)
    write_results(RESULTS, {"machine": machine(), "size": [width, height], "mode": args.mode, "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
