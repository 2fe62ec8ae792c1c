"""Alignment against the true camera motion of synthetic brackets: the corner error of the warp
`align.estimate_all` fits for each non-reference frame, against the warp the generator applied
(`data/synth/camera_motion.camera_warp`, recorded per frame in `synth.json`).

Runs on the stratified test split that `stratified_eval.py` makes (WORK/test/CLASS/...), on
the classes stored as 16-bit gamma TIFFs (tone-jpeg's JPEGs would first need their response).

    python bench/alignment_synthetic.py --work DIR        # seconds per class
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ship_weights import TEST_CLASSES

from common import corner_error, machine, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "alignment_synthetic.json"


def true_warp(move: dict, height: int, width: int) -> np.ndarray:
    """Reference -> frame coordinates of one frame, as camera_warp moved it."""
    import cv2

    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    matrix = np.vstack([cv2.getRotationMatrix2D(centre, move["rotation"], 1.0), [0.0, 0.0, 1.0]])
    matrix[:2, 2] += move["shift"]
    tilt, size = np.eye(3), min(height, width)
    perspective = move.get("perspective") or [0.0, 0.0]
    tilt[2, 0] = perspective[0] * size / (width / 2.0) ** 2
    tilt[2, 1] = perspective[1] * size / (height / 2.0) ** 2
    to_centre, back = np.eye(3), np.eye(3)
    to_centre[:2, 2], back[:2, 2] = [-centre[0], -centre[1]], centre
    return matrix @ back @ tilt @ to_centre


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--mode", default="homography")
    args = parser.parse_args()
    from smarthdr_cli import align
    from smarthdr_cli.io.ldr import read_ldr

    rows = {}
    for name in TEST_CLASSES:
        meta = json.loads((args.work / "test" / name / "synth.json").read_text())
        if not (args.work / "test" / name / meta["scenes"][0]["folder"] / "input_1.tif").exists():
            continue
        errors, motions, reasons = [], [], []
        for scene in meta["scenes"]:
            folder = args.work / "test" / name / scene["folder"]
            frames = [read_ldr(folder / f"input_{i}.tif")[0] for i in (1, 2, 3)]
            times = scene["exposures"]
            height, width = frames[0].shape[:2]
            fits = align.estimate_all(frames[1], times[1], [(frames[0], times[0]), (frames[2], times[2])], args.mode)
            for index, fit in zip((0, 2), fits):
                truth = true_warp(scene["camera"][index], height, width)
                errors.append(corner_error(fit.matrix if fit.applied else np.eye(3), truth, height, width))
                motions.append(corner_error(np.eye(3), truth, height, width))
                reasons.append(fit.reason)
        rows[name] = {"frames": len(errors), "corner_error_mean_px": float(np.mean(errors)), "corner_error_median_px": float(np.median(errors)),
                      "motion_mean_px": float(np.mean(motions)), "errors": errors, "reasons": reasons}
        print(f"{name:14s} corner error mean {np.mean(errors):5.2f} px, median {np.median(errors):5.2f} (motion {np.mean(motions):5.2f} px)", flush=True)
    write_results(RESULTS, {"machine": machine(), "mode": args.mode, "work": str(args.work), "classes": rows})


if __name__ == "__main__":
    main()
