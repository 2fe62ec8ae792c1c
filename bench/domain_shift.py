"""Adapting the shipped network to a new camera with the seed's recipe: the product use of
`train --init-weights --labeled <synthetic> --unlabeled <your brackets>`, measured.

Camera A (what a photographer can synthesise with ground truth): `synth --profile custom`, 16-bit
gamma 2.2, mild noise, small camera motion. Camera B (their own camera, no ground truth): `synth
--profile film-jpeg`, a film curve with lifted blacks, 8-bit JPEGs, 2-8x the noise, every scene
hand-held. Both are made from the real HDR photographs in ../shared/data that the shipped weights
trained on; camera B's test scenes come from the five photographs the shipped weights held out
(bench/ship_weights.py), so no test photograph is seen in training by any row.

Rows, scored with `smarthdr evaluate --align homography` on camera B's and camera A's test scenes:
- shipped: weights/gfhdr.safetensors as installed;
- sup-A: fine-tuned from it, supervised on camera A only (`--ablation i`, with L^k as the
  shipped weights were trained);
- recipe: fine-tuned from it with the full recipe (`--ablation vii`): camera A labeled,
  camera B unlabeled;
- classic and the reference frame alone, the floors any merge must clear.
Both fine-tunes get the same labeled steps, learning rate and seed; the recipe's unlabeled
branch adds a batch of camera B per step. Camera B's unlabeled scenes are written with their
ground truth, which training never reads (`data/layouts.discover_unlabeled`); it only scores the
teacher's pseudo labels against the student on 8 of them each epoch (a diagnostic).

Each finished run is appended to WORK/runs.jsonl and a rerun skips it (a crash loses one run);
`--jobs` trainings run side by side, one thread each. The table (mean and 95% margin over the
seeds, and the paired recipe-minus-row differences) goes to bench/results/domain_shift.json.

    python bench/domain_shift.py --work DIR              # about 90 min on 2 cores
    python bench/domain_shift.py --work DIR --scale 0.1 --seeds 1   # a quick look
    python bench/domain_shift.py --work DIR --k-weight 0.01 --normalisation rank
        # a variant of both fine-tunes: its own runs (WORK/runs-kw0.01-rank.jsonl) and results
        # file (bench/results/domain_shift-kw0.01-rank.json); the fixed rows are scored again
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from reproduce_ablation import margin, variant
from ship_weights import REPO, SHARED, link_sources

from common import RunLog, machine

RESULTS = Path(__file__).resolve().parent / "results"
SHIPPED = REPO / "weights" / "gfhdr.safetensors"
ROWS = ("sup-A", "recipe")
TESTS = ("B", "A")  # camera B first: the one the fine-tunes are for
# folder: (split, synth seed, photographs, profile); camera B's unlabeled scenes keep their GT (see above)
DATA = {
    "A-labeled": ("labeled", 31, "src_train", "custom"),
    "B-unlabeled": ("labeled", 32, "src_train", "film-jpeg"),
    "B-test": ("test", 33, "src_test", "film-jpeg"),
    "A-test": ("test", 34, "src_test", "custom"),
}


def make_data(work: Path, counts: dict[str, int], height: int, width: int) -> dict[str, Path]:
    from smarthdr_cli.data.synth import SynthSettings, generate

    if not link_sources(work):
        raise SystemExit(f"no HDR photographs under {SHARED}: this experiment needs ../shared/data")
    (work / "data").mkdir(exist_ok=True)
    found = {}
    for name, (split, seed, source, profile) in DATA.items():
        out = work / "data" / name
        if not (out / "synth.json").exists():
            generate(out, SynthSettings(split={split: counts[name]}, seed=seed, hdr_source=work / source, profile=profile,
                                        height=height, width=width, overwrite=True, jobs=2))
        found[name] = out / split
    return found


def _read(align: str):
    from smarthdr_cli.data.layouts import ReadSettings

    return ReadSettings(align=align)


def score(weights: Path | None, backend: str, data: dict[str, Path], args: argparse.Namespace) -> dict[str, dict]:
    """{test set: evaluate's mean and reference-frame metrics} for one network (or classic)."""
    from smarthdr_cli.evaluate import EvaluateSettings, evaluate

    scores = {}
    for camera in TESTS:
        result = evaluate(EvaluateSettings(test_dir=data[f"{camera}-test"], backend=backend, weights=weights,
                                           read=_read(args.align), threads=args.threads_per_job))
        scores[camera] = {"mean": result["mean"], "reference": result["reference"]}
    return scores


def run_row(row: str, seed: int, data: dict[str, Path], args: argparse.Namespace) -> dict:
    from smarthdr_cli.train.config import resolve
    from smarthdr_cli.train.loop import train

    flags = {
        "labeled": str(data["A-labeled"]), "init_weights": str(SHIPPED), "model": "small", "cache_dir": str(args.work / "cache"),
        "seed": seed, "batch": args.batch, "lr": args.lr, "ema_alpha": args.ema_alpha, "patch": args.patch, "stride": args.stride,
        "steps_per_epoch": args.steps_per_epoch, "perceptual": False, "align": args.align, "threads": args.threads_per_job,
        "warmup_epochs": 0, "semi_epochs": args.epochs, "uncertainty_loss": True,
        "k_weight": args.k_weight, "normalisation": args.normalisation,
    }
    if row == "recipe":
        flags["unlabeled"] = str(data["B-unlabeled"])
    config = resolve(None, flags, "vii" if row == "recipe" else "i")
    run = args.work / "runs" / f"{row}{variant(args)}-seed{seed}"
    shutil.rmtree(run, ignore_errors=True)
    began = time.perf_counter()
    result = train(config, run)
    trained = time.perf_counter() - began
    semi = [r for r in result.history if r.get("stage") == "semi"]
    last = semi[-1] if semi else {}
    gaps = [r["teacher_minus_student_psnr_mu"] for r in semi if "teacher_minus_student_psnr_mu" in r]
    return {
        "row": row, "seed": seed, "scores": score(result.final, "cpu", data, args), "train_seconds": round(trained, 1),
        "k_weight": args.k_weight, "normalisation": args.normalisation, "kept_fraction": last.get("kept_fraction"), "teacher_minus_student_mean": statistics.mean(gaps) if gaps else None,
        "teacher_minus_student_last": gaps[-1] if gaps else None,
    }


def fixed_row(row: str, data: dict[str, Path], args: argparse.Namespace) -> dict:
    """The rows that do not train: the shipped weights and classic."""
    if row == "shipped":
        return {"row": row, "seed": None, "scores": score(SHIPPED, "cpu", data, args)}
    return {"row": row, "seed": None, "scores": score(None, "classic", data, args)}


def summarise(runs: list[dict], seeds: int) -> list[dict]:
    """Per row and test set: mean and margin over the seeds, and the recipe's paired lead."""
    def value(run: dict, camera: str, key: str = "psnr_mu") -> float:
        return run["scores"][camera]["mean"][key]

    fixed = {r["row"]: r for r in runs if r["seed"] is None}
    table = []
    for row in ("shipped", *ROWS, "classic", "reference"):
        line: dict = {"row": row}
        for camera in TESTS:
            if row == "reference":
                ref = fixed["classic"]["scores"][camera]["reference"]
                line[camera] = {"psnr_mu": ref["psnr_mu"], "ssim_mu": ref["ssim_mu"], "seeds": None}
                continue
            if row in fixed:
                line[camera] = {"psnr_mu": value(fixed[row], camera), "ssim_mu": value(fixed[row], camera, "ssim_mu"), "seeds": None}
                continue
            mine = sorted((r for r in runs if r["row"] == row and r["seed"] is not None and r["seed"] < seeds), key=lambda r: r["seed"])
            psnr = [value(r, camera) for r in mine]
            line[camera] = {"psnr_mu": statistics.mean(psnr) if psnr else None, "psnr_mu_margin": margin(psnr),
                            "ssim_mu": statistics.mean(value(r, camera, "ssim_mu") for r in mine) if mine else None, "seeds": len(mine)}
        table.append(line)
    recipe = {r["seed"]: r for r in runs if r["row"] == "recipe" and r["seed"] is not None and r["seed"] < seeds}
    sup = {r["seed"]: r for r in runs if r["row"] == "sup-A" and r["seed"] is not None and r["seed"] < seeds}
    for camera in TESTS:
        both = sorted(set(recipe) & set(sup))
        over_sup = [value(recipe[s], camera) - value(sup[s], camera) for s in both]
        over_shipped = [value(recipe[s], camera) - value(fixed["shipped"], camera) for s in sorted(recipe)] if "shipped" in fixed else []
        table.append({"row": f"recipe - sup-A ({camera}, paired)", camera: {"psnr_mu": statistics.mean(over_sup) if over_sup else None,
                                                                         "psnr_mu_margin": margin(over_sup), "seeds": len(over_sup)}})
        table.append({"row": f"recipe - shipped ({camera})", camera: {"psnr_mu": statistics.mean(over_shipped) if over_shipped else None,
                                                                   "psnr_mu_margin": margin(over_shipped), "seeds": len(over_shipped)}})
    return table


def print_table(table: list[dict]) -> None:
    print("\n| row | camera B PSNR-mu (dB) | camera B SSIM-mu | camera A PSNR-mu (dB) |\n|---|---:|---:|---:|")
    for line in table:
        cells = []
        for camera, key in (("B", "psnr_mu"), ("B", "ssim_mu"), ("A", "psnr_mu")):
            cell = line.get(camera)
            if cell is None or cell.get(key) is None:
                cells.append("")
                continue
            text = f"{cell[key]:.4f}" if key == "ssim_mu" else f"{cell[key]:+.2f}" if "-" in line["row"] and " " in line["row"] else f"{cell[key]:.2f}"
            if key == "psnr_mu" and cell.get("seeds") and cell["seeds"] > 1:
                text += f" ± {cell['psnr_mu_margin']:.2f}"
            cells.append(text)
        print(f"| {line['row']} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("domain-shift-work"))
    parser.add_argument("--scale", type=float, default=1.0, help="scales the scene counts and the epochs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--ema-alpha", type=float, default=0.99)
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default 10 x --scale)")
    parser.add_argument("--steps-per-epoch", type=int, default=80, help="pseudo labels are renewed once per epoch")
    parser.add_argument("--align", default="homography")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads-per-job", type=int, default=1)
    parser.add_argument("--k-weight", type=float, default=1.0, help="train --k-weight for both fine-tunes; not 1: its own runs and results file")
    parser.add_argument("--normalisation", default="global", help="train --normalisation (the recipe's masks); not global: its own runs and results file")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/domain_shift<variant>.json")
    args = parser.parse_args()
    args.out = args.out or RESULTS / f"domain_shift{variant(args)}.json"
    args.work = args.work.resolve()
    args.epochs = args.epochs if args.epochs is not None else max(1, round(10 * args.scale))
    counts = {"A-labeled": 40, "B-unlabeled": 48, "B-test": 15, "A-test": 15}
    counts = {k: max(2, round(v * args.scale)) for k, v in counts.items()}
    args.work.mkdir(parents=True, exist_ok=True)
    data = make_data(args.work, counts, args.height, args.width)

    log = RunLog(args.work / f"runs{variant(args)}.jsonl")
    runs, done = log.runs, log.done()
    began = time.perf_counter()

    pool = ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn"))
    # the recipe runs (about 2.5x a supervised one) first, so the two workers finish together
    futures = [pool.submit(run_row, row, seed, data, args) for row in reversed(ROWS) for seed in range(args.seeds) if (row, seed) not in done]
    futures += [pool.submit(fixed_row, row, data, args) for row in ("shipped", "classic") if (row, None) not in done]
    try:
        for future in as_completed(futures):
            log.record(future.result())
    finally:  # a failed run stops the rest too (a rerun continues from WORK/runs.jsonl)
        pool.shutdown(cancel_futures=True)

    table = summarise(runs, args.seeds)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "settings": settings, "counts": counts, "data": {k: str(v) for k, v in data.items()},
                                    "wall_seconds_this_call": round(time.perf_counter() - began, 1), "runs": runs, "table": table}, indent=1) + "\n")
    print_table(table)


if __name__ == "__main__":
    main()
