"""The stratified held-out test split of `ship_weights.py`, scored without training: the network
(the installed weights, or --weights) and `classic` per kind of scene, each against the reference
frame alone. What a change to `classic`, to reading or to alignment does, class by class.

The split is ship_weights.py's: 8 scenes per class of `synth --profile` (dim, bright, clipped,
camera-motion, moving, tone-jpeg, seeds 100-105) plus its 15 "standard" scenes (seed 7), all
256x384 from the five photographs every training run holds out. Scores are `smarthdr evaluate
test/CLASS/test --backend cpu|classic --align homography --json` (the merge's default
alignment), cached under WORK/evaluations; delete that folder to score again after a change.

    python bench/stratified_eval.py --work DIR          # about 5 min on 2 cores, data included
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ship_weights import REPO, SIZE, SPLITS, class_table, evaluate, link_sources, smarthdr, verdict

from common import machine, write_results

RESULTS = Path(__file__).resolve().parent / "results"


def make_tests(work: Path) -> None:
    if not link_sources(work):
        raise SystemExit("no HDR photographs under ../shared/data: this benchmark needs them")
    (work / "test").mkdir(exist_ok=True)
    for folder, (split, seed, source, profile) in SPLITS.items():
        if folder.startswith("test/") and not (work / folder).exists():
            smarthdr(work, "synth", folder, "--split", split, "--seed", str(seed), "--hdr-source", source, *profile, *SIZE, "--jobs", "2", "-q")


def below_reference(scores: dict) -> int:
    return sum(row["psnr_mu"] < row["reference"]["psnr_mu"] for row in scores["scenes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "gfhdr.safetensors")
    parser.add_argument("--out", type=Path, default=RESULTS / "stratified.json")
    args = parser.parse_args()
    work = args.work.resolve()
    began = time.perf_counter()
    make_tests(work)
    figures = evaluate(work, args.weights.resolve())
    table = class_table(figures)
    for row in table:
        runs = figures[row["class"]]
        row["network_below_reference"] = below_reference(runs["cpu_align_homography"])
        row["classic_below_reference"] = below_reference(runs["classic_align_homography"])
    write_results(args.out, {
        "machine": machine(), "weights": str(args.weights), "seconds": round(time.perf_counter() - began, 1),
        "table": table, "why_the_network_may_not_ship": verdict(figures),
        "scenes": {name: {key: [{k: r[k] for k in ("name", "psnr_mu", "reference")} for r in run["scenes"]] for key, run in runs.items()}
                   for name, runs in figures.items()},
    })
    print("| class (scenes), PSNR-mu / PSNR-l / SSIM-mu | network | `classic` | reference frame alone | network ahead of classic | below the reference: network / classic |")
    print("|---|---|---|---|---:|---:|")
    fmt = lambda m: f"{m['psnr_mu']:.2f} / {m['psnr_l']:.2f} / {m['ssim_mu']:.4f}"  # noqa: E731
    for row in table:
        print(f"| {row['class']} ({row['scenes']}) | {fmt(row['network'])} | {fmt(row['classic'])} | {fmt(row['reference'])} | "
              f"{row['network_wins']}/{row['scenes']} | {row['network_below_reference']} / {row['classic_below_reference']} |")


if __name__ == "__main__":
    main()
