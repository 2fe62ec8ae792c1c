"""How close `--response auto` comes to the camera's true curve, against OpenCV's CalibrateDebevec.

Brackets are `smarthdr synth` renders of the real HDR photographs in ../shared/data through the
project's camera model, so each scene's true tone curve (and black offset) is known. For every
scene, both estimates are compared with the inverse of the noise-free curve over the codes that
carry a measurement (black + 8 .. 250): log-RMS of estimate / truth after matching the scale at
code 250 (a response is relative). The baseline is what `response.calibrate` used before
issue 13: OpenCV's CalibrateDebevec on 300 samples (lambda 10) of the three channels side by side.

    python bench/response_calibration.py --work DIR        # about 3 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from ship_weights import link_sources

from common import machine, write_results

RESULTS = Path(__file__).resolve().parent / "results"
# name: (scenes, SynthSettings fields); "custom" sets fix the tone curve, the profiles draw it per scene
SETS = {
    "film, 8-bit TIFF, static": (8, dict(response="film", bits=8, objects=(0, 0), camera_shift=0.0, camera_rotation=0.0)),
    "gamma, 8-bit TIFF, moving objects": (8, dict(response="gamma", bits=8, objects=(2, 5))),
    "s-curve, 8-bit TIFF, moving objects": (8, dict(response="s-curve", bits=8, objects=(2, 5))),
    "film, 8-bit TIFF, 6 px hand-held shift": (8, dict(response="film", bits=8, objects=(0, 0), camera_shift=6.0)),
    "film-jpeg profile (camera B)": (16, dict(profile="film-jpeg")),
    "tone-jpeg profile": (12, dict(profile="tone-jpeg")),
}


def true_inverse(response: str, black: float) -> np.ndarray:
    """Linear exposure of each 8-bit code under the noise-free curve (the camera model's own)."""
    from smarthdr_cli.camera import RESPONSES, with_black

    linear = np.linspace(0.0, 1.0, 200001)
    encoded = with_black(RESPONSES[response], black)(linear) * 255
    return np.interp(np.arange(256), encoded, linear)


def opencv_debevec(frames: list[np.ndarray], times: list[float]) -> np.ndarray | None:
    side = [np.ascontiguousarray(np.concatenate([f[:, :, c] for c in range(3)], axis=1)) for f in frames]
    try:
        curve = cv2.createCalibrateDebevec(samples=300, lambda_=10.0, random=False).process(side, np.asarray(times, np.float32))
    except cv2.error:
        return None
    return np.asarray(curve, np.float64).reshape(256)


def log_error(estimate: np.ndarray | None, truth: np.ndarray, black: int) -> float | None:
    if estimate is None:
        return None
    codes = np.arange(black + 8, 251)
    ratio = np.log(np.maximum(estimate[codes], 1e-9) / truth[codes])
    ratio -= ratio[-1]
    return float(np.sqrt(np.mean(ratio**2)))


def measure(folder: Path) -> list[dict]:
    from smarthdr_cli.response import calibrate

    meta = json.loads((folder / "synth.json").read_text())
    rows = []
    for scene in meta["scenes"]:
        capture = scene.get("capture") or {"response": scene["response"], "black": 0.0}
        files = sorted((folder / scene["folder"]).glob("input_*.*"))
        frames = [cv2.imread(str(path))[:, :, ::-1] for path in files]
        truth = true_inverse(capture["response"], capture["black"])
        black = int(round(capture["black"] * 255))
        began = time.perf_counter()
        ours = calibrate([f / 255.0 for f in frames], scene["exposures"])
        seconds = time.perf_counter() - began
        rows.append({
            "scene": scene["folder"], "response": capture["response"], "black": capture["black"],
            "found_black": ours.black if ours else None, "seconds": round(seconds, 3),
            "calibrate": log_error(ours.curve[:, 0] if ours else None, truth, black),
            "opencv_debevec": log_error(opencv_debevec(frames, scene["exposures"]), truth, black),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("response-calibration-work"))
    parser.add_argument("--height", type=int, default=400)
    parser.add_argument("--width", type=int, default=600)
    parser.add_argument("--out", type=Path, default=RESULTS / "response_calibration.json")
    args = parser.parse_args()
    from smarthdr_cli.data.synth import SynthSettings, generate

    if not link_sources(args.work):
        raise SystemExit("no HDR photographs under ../shared/data: this benchmark needs them")
    report: dict = {"machine": machine(), "size": [args.height, args.width], "sets": {}}
    print("| set | scenes | calibrate (mean / max) | OpenCV CalibrateDebevec (mean / max) |\n|---|---:|---:|---:|")
    for number, (name, (scenes, fields)) in enumerate(SETS.items()):
        folder = args.work / f"set{number}"
        if not (folder / "synth.json").exists():
            generate(folder, SynthSettings(scenes=scenes, seed=40 + number, height=args.height, width=args.width,
                                           hdr_source=args.work / "src_train", overwrite=True, jobs=2, **fields))
        rows = measure(folder)
        report["sets"][name] = rows
        cells = []
        for key in ("calibrate", "opencv_debevec"):
            values = [r[key] for r in rows if r[key] is not None]
            failed = len(rows) - len(values)
            cells.append(f"{statistics.mean(values):.3f} / {max(values):.3f}" + (f" ({failed} failed)" if failed else ""))
        print(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |", flush=True)
    write_results(args.out, report)


if __name__ == "__main__":
    main()
