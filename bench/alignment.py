"""Benchmark: pre-alignment modes none / translation / homography on a real bracket.

What is measured, and why:

The alignment step (`smarthdr_cli.align`) must undo the small camera motion of a hand-held
bracket and must never make a tripod bracket worse. No real hand-held bracket with known motion
is available here, so the motion is simulated on a real tripod bracket (frobisher, IMG_2600-2602,
1/8 s, 1 s, 8 s; reference: the 1 s frame):

1. The JPEGs are linearised with the bracket's own Debevec response (`response.calibrate`) and
   re-encoded in the gamma-2.2 domain (`to_gamma_domain`), as the CLI does.
2. For each of N seeds, each non-reference frame is warped by a random camera motion (translation
   up to +-12 px, rotation up to +-0.6 degrees about the centre, perspective terms up to 1e-5 per
   pixel) with cv2.warpPerspective and BORDER_REPLICATE. `estimate` (each mode) is run on the
   moved frame against the reference (exposures normalised 1, 8, 64) and `warp` brings it back.
3. Residual misalignment: mean absolute difference of log radiance, log(x^2.2 / t), between the
   realigned frame and the true (unmoved) frame, over samples well exposed in both (0.05..0.95)
   inside an interior crop (30 px border excluded). "oracle" warps back with the true inverse
   motion: its residual is the floor set by resampling twice. Also: the fraction of fits
   applied (the others are discarded by `estimate`'s checks and leave the frame as it was) and
   the mean time per fit, and the warp error: the mean distance between where the fitted and the
   true motion send a 9x9 grid of interior points (for "none": the motion itself).
   "homography, gate off" is a diagnostic, run only where `align` has a HOMOGRAPHY_GAIN gate (a
   homography is kept only if it beats the translation fit by that much correlation): the same
   fit with the gate at 0, to show what the gate costs or saves.
4. On the untouched tripod bracket, every mode must do no harm: the shift it finds, whether it
   applies it, and the log-radiance residual of the (possibly warped) frame against the
   reference over samples well exposed in both.

Usage: python bench/alignment.py [--trials 20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from common import machine, write_results

ROOT = Path(__file__).resolve().parents[1]
BRACKET_DIR = ROOT.parent / "shared" / "data" / "brackets" / "frobisher"
FILES = ["IMG_2600.jpg", "IMG_2601.jpg", "IMG_2602.jpg"]
SECONDS = np.array([1 / 8, 1.0, 8.0])  # EXIF ExposureTime of the three files (f/8, ISO 100)
EXPOSURES = SECONDS / SECONDS[0]  # 1, 8, 64
REFERENCE = 1
MOVING = (0, 2)
MODES = ("none", "translation", "homography")
UNGATED = "homography, gate off"  # diagnostic: HOMOGRAPHY_GAIN disabled, if align.py has that gate
MAX_TRANSLATION_PX = 12.0
MAX_ROTATION_DEG = 0.6
MAX_PERSPECTIVE = 1e-5
BORDER = 30
WELL_EXPOSED = (0.05, 0.95)
RESULTS = Path(__file__).resolve().parent / "results" / "alignment.json"


@dataclass
class Fit:
    mode: str
    frame: int
    residual: float
    applied: bool
    reason: str
    seconds: float
    shift_px: float
    error_px: float | None = None  # mean displacement error of the fitted warp (simulation only)
    model: str = "identity"  # what the applied warp is: identity, translation or homography


# --------------------------------------------------------------------------- inputs


def load_bracket() -> tuple[list[np.ndarray], str]:
    """The three frames in the gamma-2.2 domain, linearised with the calibrated response."""
    from smarthdr_cli.io.ldr import read_ldr
    from smarthdr_cli.response import calibrate

    images = [read_ldr(BRACKET_DIR / name)[0] for name in FILES]
    response = calibrate(images, EXPOSURES)
    if response is None:
        from smarthdr_cli.response import gamma_response

        response = gamma_response()
    return [response.to_gamma_domain(image) for image in images], response.source


def random_motion(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A 3x3 homography (frame -> moved frame) of small hand-held motion about the centre."""
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    tx, ty = rng.uniform(-MAX_TRANSLATION_PX, MAX_TRANSLATION_PX, size=2)
    px, py = rng.uniform(-MAX_PERSPECTIVE, MAX_PERSPECTIVE, size=2)
    cos, sin = np.cos(angle), np.sin(angle)
    motion = np.array([[cos, -sin, tx], [sin, cos, ty], [px, py, 1.0]])
    centre = np.array([[1.0, 0.0, width / 2], [0.0, 1.0, height / 2], [0.0, 0.0, 1.0]])
    return centre @ motion @ np.linalg.inv(centre)


def apply_motion(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Move `image` by `matrix` (its pixel p lands at matrix @ p), edges replicated."""
    import cv2

    height, width = image.shape[:2]
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE).astype(np.float32)


# --------------------------------------------------------------------------- residual


def log_radiance(image: np.ndarray, exposure: float) -> np.ndarray:
    return np.log(np.maximum(image, 1e-4) ** 2.2 / exposure)


def residual(image: np.ndarray, exposure: float, target: np.ndarray, target_exposure: float) -> float:
    """Mean |log-radiance difference| over samples well exposed in both, inside the crop."""
    crop = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    a, b = image[crop], target[crop]
    low, high = WELL_EXPOSED
    usable = (a > low) & (a < high) & (b > low) & (b < high)
    difference = np.abs(log_radiance(a, exposure) - log_radiance(b, target_exposure))
    return float(difference[usable].mean())


def geometric_error(fitted: np.ndarray, motion: np.ndarray, height: int, width: int) -> float:
    """Mean distance (px) between where the fitted and the true warp send a grid of interior points."""
    ys, xs = np.meshgrid(np.linspace(BORDER, height - BORDER, 9), np.linspace(BORDER, width - BORDER, 9))
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    a, b = fitted @ points, motion @ points
    return float(np.mean(np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0)))


def model_of(matrix: np.ndarray) -> str:
    if np.allclose(matrix, np.eye(3)):
        return "identity"
    if np.allclose(matrix[:2, :2], np.eye(2)) and np.allclose(matrix[2], [0, 0, 1]):
        return "translation"
    return "homography"


# --------------------------------------------------------------------------- experiments


def modes() -> tuple[str, ...]:
    """The modes to run: the three public ones, plus the ungated homography where there is a gate."""
    from smarthdr_cli import align

    return (*MODES, UNGATED) if hasattr(align, "HOMOGRAPHY_GAIN") else MODES


@contextmanager
def gate_off(label: str) -> Iterator[None]:
    """For the diagnostic mode, accept any homography that correlates at least as well as a shift."""
    from smarthdr_cli import align

    if label != UNGATED:
        yield
        return
    saved = align.HOMOGRAPHY_GAIN
    align.HOMOGRAPHY_GAIN = 0.0
    try:
        yield
    finally:
        align.HOMOGRAPHY_GAIN = saved


def fit(images: list[np.ndarray], frame: int, moved: np.ndarray, label: str) -> tuple[np.ndarray, Any, float]:
    """Align `moved` (frame `frame`) onto the reference: the realigned image, the fit, its time."""
    from smarthdr_cli.align import estimate, warp

    mode = "homography" if label == UNGATED else label
    with gate_off(label):
        started = time.perf_counter()
        alignment = estimate(images[REFERENCE], EXPOSURES[REFERENCE], moved, EXPOSURES[frame], mode)
        seconds = time.perf_counter() - started
    return warp(moved, alignment), alignment, seconds


def simulated(images: list[np.ndarray], trials: int) -> list[Fit]:
    """Random motion on the non-reference frames, undone by each mode (and by the true inverse)."""
    height, width = images[0].shape[:2]
    fits = []
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        for frame in MOVING:
            truth = images[frame]
            motion = random_motion(rng, height, width)
            moved = apply_motion(truth, motion)
            oracle = apply_motion(moved, np.linalg.inv(motion))
            fits.append(Fit("oracle", frame, residual(oracle, 1.0, truth, 1.0), True, "true inverse", 0.0, 0.0, 0.0,
                            "homography"))
            for mode in modes():
                realigned, alignment, seconds = fit(images, frame, moved, mode)
                error = geometric_error(alignment.matrix, motion, height, width)
                fits.append(Fit(mode, frame, residual(realigned, 1.0, truth, 1.0), alignment.applied,
                                alignment.reason, seconds, alignment.shift_px, error,
                                model_of(alignment.matrix)))
    return fits


def tripod(images: list[np.ndarray]) -> list[Fit]:
    """Each mode on the untouched bracket: shift found and residual against the reference."""
    fits = []
    reference = images[REFERENCE]
    for frame in MOVING:
        for mode in modes():
            realigned, alignment, seconds = fit(images, frame, images[frame], mode)
            error = residual(realigned, EXPOSURES[frame], reference, EXPOSURES[REFERENCE])
            fits.append(Fit(mode, frame, error, alignment.applied, alignment.reason, seconds,
                            alignment.shift_px, model=model_of(alignment.matrix)))
    return fits


# --------------------------------------------------------------------------- reporting


def summarise(fits: list[Fit]) -> list[dict[str, Any]]:
    """Per mode and frame (and both frames pooled): residual statistics, applied share, time."""
    rows = []
    for mode in ("oracle", *modes()):
        for frame in (*MOVING, None):
            group = [f for f in fits if f.mode == mode and (frame is None or f.frame == frame)]
            residuals = [f.residual for f in group]
            reasons: dict[str, int] = {}
            for f in group:
                if not f.applied:
                    key = f.reason.split(" (")[0].split(" of ")[0]
                    reasons[key] = reasons.get(key, 0) + 1
            rows.append({
                "mode": mode, "frame": "both" if frame is None else FILES[frame], "fits": len(group),
                "residual_mean": statistics.mean(residuals), "residual_median": statistics.median(residuals),
                "residual_max": max(residuals),
                "error_px_mean": statistics.mean(f.error_px for f in group),
                "error_px_max": max(f.error_px for f in group),
                "homography_kept": sum(f.model == "homography" for f in group) / len(group), "applied": sum(f.applied for f in group) / len(group),
                "discarded_reasons": reasons, "fit_ms": 1000 * statistics.mean(f.seconds for f in group),
            })
    return rows


def print_tables(rows: list[dict[str, Any]], still: list[Fit], trials: int) -> None:
    print(f"\n### Simulated hand-held motion ({trials} seeds x 2 frames)\n")
    print("| mode | frame | log-radiance residual mean | median | max | warp error mean (px) | max (px) "
          "| applied | of which homography | discarded (why) | ms / fit |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for row in rows:
        why = ", ".join(f"{count} {reason}" for reason, count in row["discarded_reasons"].items()) or "-"
        print(f"| {row['mode']} | {row['frame']} | {row['residual_mean']:.4f} | {row['residual_median']:.4f} "
              f"| {row['residual_max']:.4f} | {row['error_px_mean']:.2f} | {row['error_px_max']:.2f} | {100 * row['applied']:.0f}% "
              f"| {100 * row['homography_kept']:.0f}% | {why} | {row['fit_ms']:.0f} |")
    print("\n### Untouched tripod bracket (no synthetic motion)\n")
    print("| mode | frame | shift found (px) | applied | reason | residual vs reference |")
    print("|---|---|---:|---|---|---:|")
    for f in still:
        print(f"| {f.mode} | {FILES[f.frame]} | {f.shift_px:.2f} | {'yes' if f.applied else 'no'} "
              f"| {f.reason} | {f.residual:.4f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="random motions per non-reference frame")
    args = parser.parse_args()
    if not BRACKET_DIR.is_dir():
        print(f"skipped: the real bracket {BRACKET_DIR} is not available", file=sys.stderr)
        return 0

    images, response = load_bracket()
    fits = simulated(images, args.trials)
    still = tripod(images)
    rows = summarise(fits)
    print_tables(rows, still, args.trials)
    height, width = images[0].shape[:2]
    report = {
        "bracket": [str(BRACKET_DIR / name) for name in FILES], "size": [width, height],
        "exposure_seconds": SECONDS.tolist(), "exposures": EXPOSURES.tolist(), "reference": FILES[REFERENCE],
        "response": response, "trials": args.trials,
        "motion": {"translation_px": MAX_TRANSLATION_PX, "rotation_deg": MAX_ROTATION_DEG,
                   "perspective": MAX_PERSPECTIVE, "border": "replicate"},
        "residual": "mean |log(x^2.2/t) realigned - true| over samples in (0.05, 0.95) in both, 30 px border cut",
        "simulated": rows, "fits": [vars(f) for f in fits], "tripod": [vars(f) for f in still],
        "machine": machine(),
    }
    write_results(RESULTS, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
