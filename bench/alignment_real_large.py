"""Alignment of large frames of a real photograph with known motion: the corner error of the
warps `align.estimate_all` fits at the work level, at the photograph's own size and upscaled
to 12 MP.

Why: the 12 MP bench bracket (`alignment_work_side.py`) is procedural texture upscaled 4x, and
its few matched keypoints (about 30) make its fits swing by pixels with the work level's size
(the long frame: 1.2-3.9 px over work sides 960-1100). A real photograph says more: the Canon
D30 RAW of `../shared/data/raw` (2176x1448), developed linearly, is rendered through the
project's camera model (gamma 2.2, noise 0.003) into brackets (exposures 1/4, 1, 4) whose short
and long frames are moved by random rotations (up to 0.4 degrees about a point near the centre)
and shifts (up to 8 px per 2000 px of width); the error is the largest distance over the four
corners between the fitted (or kept) warp and the true one, full-resolution px.

    python bench/alignment_real_large.py                       # --trials 6; about 1 min
    python bench/alignment_real_large.py --compare OLD_ALIGN   # also another align.py, side by side

`--compare` takes a file such as `git show 95458df:smarthdr_cli/align.py > /tmp/align_old.py`
(the alignment before the integer work level). Without ../shared the script says so and exits 0.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from common import corner_error, machine, write_results

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw" / "RAW_CANON_D30_SRGB.CRW"
RESULTS = Path(__file__).resolve().parent / "results" / "alignment_real_large.json"


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("align_compared", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["align_compared"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _photograph(width: int) -> np.ndarray:
    import cv2
    import rawpy

    with rawpy.imread(str(RAW)) as raw:
        linear = raw.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True).astype(np.float32) / 65535
    if width != linear.shape[1]:
        linear = cv2.resize(linear, (width, round(linear.shape[0] * width / linear.shape[1])), interpolation=cv2.INTER_CUBIC)
    return np.maximum(linear, 0.0) / np.percentile(linear, 99) * np.float32(0.6)


def _trials(radiance: np.ndarray, count: int, modules: dict[str, ModuleType]) -> dict[str, list[list[float]]]:
    import cv2

    from smarthdr_cli.camera import render_bracket

    height, width = radiance.shape[:2]
    rng = np.random.default_rng(3)
    errors: dict[str, list[list[float]]] = {name: [] for name in modules}
    for trial in range(count):
        scenes, truths = [radiance, radiance, radiance], [np.eye(3)] * 3
        for index in (0, 2):
            centre = (width / 2 + rng.normal(0, width / 10), height / 2 + rng.normal(0, height / 10))
            matrix = cv2.getRotationMatrix2D(centre, rng.uniform(-0.4, 0.4), 1.0)
            matrix[:, 2] += rng.uniform(-8, 8, 2) * width / 2000
            scenes[index] = cv2.warpAffine(radiance, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            truths[index] = np.vstack([matrix, [0.0, 0.0, 1.0]])
        frames = [f.astype(np.float32) / 255 for f in render_bracket(scenes, [0.25, 1.0, 4.0], noise=0.003, seed=trial)]
        for name, module in modules.items():
            fits = module.estimate_all(frames[1], 4.0, [(frames[0], 1.0), (frames[2], 16.0)], "homography")
            errors[name].append([corner_error(f.matrix if f.applied else np.eye(3), truths[i], height, width) for f, i in zip(fits, (0, 2))])
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--widths", nargs="+", type=int, default=[2176, 4032])
    parser.add_argument("--compare", type=Path, help="another align.py, fitted on the same brackets")
    args = parser.parse_args()
    if not RAW.is_file():
        print(f"{RAW} is not there (../shared/data beside the checkout): nothing to measure")
        return
    from smarthdr_cli import align

    modules: dict[str, ModuleType] = {"current": align}
    if args.compare:
        modules["compared"] = _module(args.compare)
    rows = []
    for width in args.widths:
        radiance = _photograph(width)
        height = radiance.shape[0]
        errors = _trials(radiance, args.trials, modules)
        for name, values in errors.items():
            table = np.array(values)
            row = {"width": width, "height": height, "align": name, "mean_short_px": float(table[:, 0].mean()), "mean_long_px": float(table[:, 1].mean()),
                   "median_short_px": float(np.median(table[:, 0])), "median_long_px": float(np.median(table[:, 1])), "errors": values}
            rows.append(row)
            print(f"{width}x{height} {name:9s} corner error mean short {row['mean_short_px']:.2f} long {row['mean_long_px']:.2f} px, "
                  f"median {row['median_short_px']:.2f} / {row['median_long_px']:.2f}", flush=True)
    write_results(RESULTS, {"machine": machine(), "trials": args.trials, "compared": str(args.compare) if args.compare else None, "rows": rows})


if __name__ == "__main__":
    main()
