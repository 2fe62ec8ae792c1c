"""Benchmark: the `classic` merge against OpenCV's MergeDebevec on a 12 MP bracket.

What is measured, and why:

* speed and peak memory of `ClassicBackend().merge(bracket)` and of
  `cv2.createMergeDebevec().process(frames, times, response)` on the same synthetic 12 MP
  (4000x3000) 8-bit bracket (EV -2/0/+2, exposures 1, 4, 16; gamma-2.2 camera; a moving object).
  MergeDebevec is the obvious non-learned baseline a user would otherwise reach for, so the
  classic backend should not be much slower or hungrier than it. Each candidate runs in its own
  fresh process (this script re-invoked with `--child`), loads the frames from a temporary .npy,
  and reports the median wall time of the repeats and its peak resident memory above the
  baseline taken after its inputs are loaded. OpenCV allocates outside Python, so tracemalloc
  cannot see it; resident memory (VmHWM after resetting it through /proc/self/clear_refs, or
  ru_maxrss where that reset is unavailable) treats both candidates alike.
  MergeDebevec is given the response estimated by `cv2.createCalibrateDebevec` (calibration is
  timed separately and not included in the merge time; the merge itself does the same work for
  any response curve).
* quality: PSNR-mu (mu-law of eq. (4) after normalising by the ground truth's maximum) against the
  ground-truth radiance, on a smaller 1500x1000 scene, static and with a moving object (ground
  truth: the reference frame's radiance). MergeDebevec is scored both with the calibrated
  response and with the camera's true response (x ** 2.2), to separate calibration error from
  merge error. MergeDebevec's output has arbitrary units, so every
  result is first scaled onto the ground truth by the median ratio over well-exposed pixels
  (the classic result is already in scene units; its fitted scale is reported as a check).

Usage: python bench/merge_classic.py [--size 4000x3000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from common import PeakMemory, machine, write_results

EXPOSURES = np.array([1.0, 4.0, 16.0])  # EV -2, 0, +2, normalised so the shortest is 1
SECONDS = EXPOSURES / 64.0  # 1/64, 1/16, 1/4 s: what MergeDebevec is given
REFERENCE = 1
NOISE = 0.002  # read-noise standard deviation relative to full scale (see camera.render_bracket)
RESULTS = Path(__file__).resolve().parent / "results" / "merge_classic.json"


# --------------------------------------------------------------------------- scene and frames


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Value noise in [0, 1]: a random grid of `cell`-pixel spacing, cubic-interpolated."""
    import cv2

    small = rng.random((max(2, height // cell), max(2, width // cell)), dtype=np.float32)
    return np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def scene_radiance(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Procedural HDR scene (float32 HxWx3, relative radiance, max just below 1).

    A smooth vertical and horizontal gradient spanning about 8 stops (2^-10 .. 2^-2), a texture of
    coarse and fine value noise (+-1 stop), a smoothly varying colour tint and a few very bright
    light sources (Gaussian lamps peaking just below 1, which saturate every frame but the
    shortest).
    """
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    log2 = -10.0 + 7.0 * (1.0 - rows) + 1.0 * np.sin(3.0 * cols + 0.5)
    log2 = log2 + 1.2 * (_smooth_noise(rng, height, width, 64) - 0.5)
    log2 = log2 + 0.8 * (_smooth_noise(rng, height, width, 4) - 0.5)
    base = np.exp2(log2).astype(np.float32)
    del log2
    image = np.empty((height, width, 3), dtype=np.float32)
    for channel, (low, span) in enumerate([(0.7, 0.5), (0.85, 0.3), (0.6, 0.6)]):
        image[:, :, channel] = base * (low + span * _smooth_noise(rng, height, width, 256))
    del base
    _add_lamps(image, rng, count=4)
    np.clip(image, 1e-6, 0.98, out=image)
    return image


def _add_lamps(image: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Add `count` warm Gaussian light sources (peak ~0.95) in place, one bounding box at a time."""
    height, width = image.shape[:2]
    for _ in range(count):
        sigma = (0.004 + 0.01 * rng.random()) * min(height, width)
        cy, cx = rng.random() * height, rng.random() * width
        half = int(4 * sigma) + 1
        y0, y1 = max(0, int(cy) - half), min(height, int(cy) + half)
        x0, x1 = max(0, int(cx) - half), min(width, int(cx) + half)
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        glow = 0.95 * np.exp(-(yy**2 + xx**2) / (2 * sigma**2))
        image[y0:y1, x0:x1] += glow[:, :, None] * np.array([1.0, 0.85, 0.6], dtype=np.float32)


def with_moving_object(radiance: np.ndarray, count: int, seed: int = 0) -> list[np.ndarray]:
    """One radiance image per frame with a textured disk that moves 6% of the width per frame."""
    rng = np.random.default_rng(seed + 7)
    height, width = radiance.shape[:2]
    radius = int(0.12 * min(height, width))
    texture = 0.01 + 0.05 * _smooth_noise(rng, 2 * radius, 2 * radius, 8)
    yy, xx = np.mgrid[-radius:radius, -radius:radius]
    disk = (yy**2 + xx**2) < radius**2
    top = int(0.55 * height)
    scenes = []
    for index in range(count):
        left = int((0.35 + 0.06 * (index - REFERENCE)) * width)
        scene = radiance.copy()
        patch = scene[top : top + 2 * radius, left : left + 2 * radius]
        patch[disk] = (texture[:, :, None] * np.array([0.9, 0.3, 0.25], dtype=np.float32))[disk]
        scenes.append(scene)
    return scenes


def render(scenes: np.ndarray | list[np.ndarray], seed: int = 0) -> np.ndarray:
    """The bracket as one uint8 array (frames x H x W x RGB), gamma-2.2 camera, 8 bits."""
    from smarthdr_cli.camera import gamma_curve, render_bracket

    frames = render_bracket(scenes, list(EXPOSURES), curve=gamma_curve, bits=8, noise=NOISE, seed=seed)
    return np.stack(frames)


# --------------------------------------------------------------------------- the two merges


def classic_inputs(frames: np.ndarray) -> Any:
    from smarthdr_cli.bracket import Bracket

    images = [np.multiply(frame, np.float32(1.0 / 255.0), dtype=np.float32) for frame in frames]
    return Bracket(images=images, exposures=EXPOSURES.copy(), reference=REFERENCE, bits=8)


def classic_merge(bracket: Any) -> np.ndarray:
    from smarthdr_backends.classic import ClassicBackend

    return ClassicBackend().merge(bracket).hdr


def debevec_inputs(frames: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """BGR uint8 frames, exposure times in seconds, and CalibrateDebevec's response."""
    import cv2

    bgr = [np.ascontiguousarray(frame[:, :, ::-1]) for frame in frames]
    times = SECONDS.astype(np.float32)
    response = cv2.createCalibrateDebevec().process(bgr, times)
    return bgr, times, response


def debevec_merge(inputs: tuple[list[np.ndarray], np.ndarray, np.ndarray]) -> np.ndarray:
    import cv2

    bgr, times, response = inputs
    hdr = cv2.createMergeDebevec().process(bgr, times, response)
    return np.ascontiguousarray(hdr[:, :, ::-1])


def debevec_true_inputs(frames: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """As `debevec_inputs` but with the camera's true response (x ** 2.2): quality only."""
    codes = (np.arange(256, dtype=np.float32) / 255.0) ** 2.2
    codes[0] = codes[1]  # MergeDebevec takes the log of the response; code 0 has weight too
    bgr, times, _ = debevec_inputs(frames)
    return bgr, times, np.repeat(codes[:, None, None], 3, axis=2)


Candidate = tuple[Callable[[np.ndarray], Any], Callable[[Any], np.ndarray]]
CANDIDATES: dict[str, Candidate] = {
    "classic": (classic_inputs, classic_merge),
    "MergeDebevec": (debevec_inputs, debevec_merge),
}
QUALITY_CANDIDATES: dict[str, Candidate] = {
    **CANDIDATES, "MergeDebevec (true response)": (debevec_true_inputs, debevec_merge),
}


# --------------------------------------------------------------------------- measurement (child)


def measure(name: str, frames_path: Path, repeats: int) -> dict[str, Any]:
    """Time `repeats` merges of candidate `name`; peak resident memory above the loaded inputs."""
    import cv2

    prepare, merge = CANDIDATES[name]
    frames = np.load(frames_path)  # fully read: file pages would otherwise count as resident
    started = time.perf_counter()
    inputs = prepare(frames)
    prepare_s = time.perf_counter() - started
    del frames
    memory = PeakMemory()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        hdr = merge(inputs)
        times.append(time.perf_counter() - started)
        del hdr
    return {
        "candidate": name,
        "times_s": times,
        "median_s": statistics.median(times),
        "peak_mib": memory.mib(),
        "memory_method": memory.method,
        "prepare_s": prepare_s,
        "opencv_threads": cv2.getNumThreads(),
    }


def run_child(name: str, frames_path: Path, repeats: int) -> dict[str, Any]:
    """Measure one candidate in a fresh interpreter, so its peak memory is its own."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name,
               "--frames", str(frames_path), "--repeats", str(repeats)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- quality


def fitted_scale(hdr: np.ndarray, truth: np.ndarray) -> float:
    """Median ratio truth/hdr over pixels of mid radiance: brings arbitrary units onto the truth."""
    usable = (truth > 1e-3) & (truth < 0.5) & (hdr > 0) & np.isfinite(hdr)
    return float(np.median(truth[usable] / hdr[usable]))


def quality(width: int, height: int) -> list[dict[str, Any]]:
    """PSNR-mu of both merges against the ground-truth radiance, static and dynamic scene."""
    from smarthdr_cli.metrics import psnr_mu

    radiance = scene_radiance(height, width, seed=1)
    cases = {"static": (radiance, radiance),
             "moving object": (with_moving_object(radiance, len(EXPOSURES), seed=1), None)}
    rows = []
    for case, (scenes, truth) in cases.items():
        truth = scenes[REFERENCE] if truth is None else truth
        frames = render(scenes, seed=1)
        peak = float(truth.max())
        for name, (prepare, merge) in QUALITY_CANDIDATES.items():
            hdr = merge(prepare(frames))
            scale = fitted_scale(hdr, truth)
            rows.append({"scene": case, "candidate": name, "scale": scale,
                         "psnr_mu": psnr_mu(hdr * scale / peak, truth / peak)})
    return rows


# --------------------------------------------------------------------------- main


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def print_tables(size: tuple[int, int], speed: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    classic, debevec = speed["classic"], speed["MergeDebevec"]
    print(f"\n### Merge speed and memory, {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.0f} MP), 3 frames 8-bit\n")
    print("| method | median time (s) | peak memory above inputs (MiB) |")
    print("|---|---:|---:|")
    for name, result in speed.items():
        print(f"| {name} | {result['median_s']:.2f} | {result['peak_mib']:.0f} |")
    print(f"| ratio classic / MergeDebevec | {classic['median_s'] / debevec['median_s']:.1f}x "
          f"| {classic['peak_mib'] / debevec['peak_mib']:.1f}x |")
    print("\n### Quality against ground truth (PSNR-mu, dB)\n")
    print("| scene | classic | MergeDebevec (calibrated response) | MergeDebevec (true x^2.2 response) |")
    print("|---|---:|---:|---:|")
    for scene in dict.fromkeys(row["scene"] for row in rows):
        values = [f"{row['psnr_mu']:.2f}" for row in rows if row["scene"] == scene]
        print(f"| {scene} | {' | '.join(values)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT of the speed bracket")
    parser.add_argument("--quality-size", default="1500x1000", help="WIDTHxHEIGHT of the quality scenes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=sorted(CANDIDATES), help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.frames, args.repeats)))
        return

    width, height = parse_size(args.size)
    started = time.perf_counter()
    radiance = scene_radiance(height, width, seed=0)
    frames = render(with_moving_object(radiance, len(EXPOSURES), seed=0), seed=0)
    del radiance
    print(f"rendered {frames.shape} bracket in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="smarthdr-bench-") as folder:
        frames_path = Path(folder) / "frames.npy"
        np.save(frames_path, frames)
        del frames
        speed = {name: run_child(name, frames_path, args.repeats) for name in CANDIDATES}
    rows = quality(*parse_size(args.quality_size))
    print_tables((width, height), speed, rows)

    report = {
        "size": [width, height], "repeats": args.repeats, "exposures": EXPOSURES.tolist(),
        "exposure_seconds": SECONDS.tolist(), "noise": NOISE, "moving_object": True,
        "debevec_response": "cv2.createCalibrateDebevec (default settings), not included in merge time",
        "speed": speed,
        "ratio_time_classic_over_debevec": speed["classic"]["median_s"] / speed["MergeDebevec"]["median_s"],
        "ratio_memory_classic_over_debevec": speed["classic"]["peak_mib"] / speed["MergeDebevec"]["peak_mib"],
        "quality_size": list(parse_size(args.quality_size)), "quality": rows,
        "machine": machine(),
    }
    write_results(RESULTS, report)


if __name__ == "__main__":
    main()
