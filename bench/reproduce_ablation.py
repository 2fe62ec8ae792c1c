"""The seed's Table 3 ablation, in miniature on synthetic data or unchanged on a real download.

Rows (as `smarthdr train --ablation ROW`): i baseline (supervised on the labeled scenes only),
ii + mean teacher, iii + L^k, iv + patch mask, v + pixel mask (instead of iv), vi both masks,
vii + strong augmentation (the full recipe), and "sup": the same network supervised on every
training scene (labeled + unlabeled with their ground truths), the upper bound. Each row is
trained with several seeds and scored with `smarthdr evaluate` (cpu backend) on the test scenes;
the table gives the mean and the 95% margin (Student's t over the seeds) of PSNR-mu and SSIM-mu.

Default (synthetic): `smarthdr synth --seed 0 --split labeled=5,unlabeled=69,test=15`, scenes of
96x144 pixels (x --scale), the "mini" network (16 wide, 2+2 layers, window 8: 59 k parameters with the judge),
no perceptual loss (no download), patches 32 px / stride 16, batch 8 per branch, 40 steps per
epoch, 6 warm-up + 12 semi-supervised epochs (epochs x --scale), and two changes for the short
schedule: Adam lr 1e-3 instead of the seed's 2e-4, so it gets somewhere, and EMA alpha 0.98
instead of 0.999. The EMA's time constant, 1 / (1 - alpha) steps, was about 0.7 epoch in the
seed's setting (1000 steps against about 1500 per epoch); 0.98 keeps that ratio here (50 steps
against 40 per epoch), while 0.999 would leave the teacher at the warm-up student for the whole
run (a first run with 0.999 is kept in bench/results/ablation_alpha0999_partial.jsonl). About an
hour for 8 rows x 3 seeds on 2 CPU cores at --scale 1.

`--judge-gradient through` trains with L^k's gradient reaching F_att through the judge (the first
version); `detach` (default) is the current behaviour. Row "i+k" (not in Table 3, not in the
default rows) is the supervised baseline with L^k.

Real data: pass --labeled, --unlabeled and --test (e.g. 5 of Kalantari's Training scenes, the
other 69 and Test), --supervised (all 74 with ground truth) for the "sup" row, and the seed's
settings: --model full --patch 64 --stride 32 --batch 64 --lr 2e-4 --ema-alpha 0.999 --warmup-epochs 30
--semi-epochs 170 --steps-per-epoch 0 --perceptual (on GPUs).

    python bench/reproduce_ablation.py                               # synthetic, ~1 h on 2 cores
    python bench/reproduce_ablation.py --scale 0.25 --seeds 2        # a quicker look
    python bench/reproduce_ablation.py --labeled K/l --unlabeled K/u --test K/Test --supervised K/Training \\
        --model full --patch 64 --stride 32 --batch 64 --lr 2e-4 --ema-alpha 0.999 --warmup-epochs 30 --semi-epochs 170 \\
        --steps-per-epoch 0 --perceptual
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import time
from pathlib import Path

from common import machine

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = ("i", "ii", "iii", "iv", "v", "vi", "vii", "sup", "i+k")  # i+k: row i with L^k (not in Table 3)
# Student's t quantile (0.975) for n - 1 degrees of freedom: the 95% margin of a mean over n seeds.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
MINI = {"embed_dim": 16, "depths": [2, 2], "num_heads": [2, 2], "window_size": 8, "reduction": 4, "judge_channels": 8, "drop_path_rate": 0.0}


def margin(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    return T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def make_synthetic(work: Path, scale: float) -> dict[str, Path]:
    """The 6.7% split and, for the "sup" row, the same 74 training scenes all with ground truth."""
    from smarthdr_cli.data.synth import SynthSettings, generate

    height, width = int(round(96 * scale / 8)) * 8, int(round(144 * scale / 8)) * 8
    common = dict(seed=0, height=max(height, 64), width=max(width, 96))
    if not (work / "split" / "synth.json").exists():
        generate(work / "split", SynthSettings(split={"labeled": 5, "unlabeled": 69, "test": 15}, overwrite=True, **common))
    if not (work / "all" / "synth.json").exists():
        # same seed: scenes 0..73 are the labeled and unlabeled scenes above, now all with GT
        generate(work / "all", SynthSettings(split={"labeled": 74}, overwrite=True, **common))
    return {"labeled": work / "split" / "labeled", "unlabeled": work / "split" / "unlabeled", "test": work / "split" / "test", "supervised": work / "all" / "labeled"}


def run_row(row: str, seed: int, data: dict[str, Path], args: argparse.Namespace, work: Path) -> dict:
    from smarthdr_cli.evaluate import EvaluateSettings, evaluate
    from smarthdr_cli.train.config import resolve
    from smarthdr_cli.train.loop import train

    flags = {
        "labeled": str(data["supervised"] if row == "sup" else data["labeled"]),
        "unlabeled": None if row in ("i", "sup", "i+k") else str(data["unlabeled"]),
        "cache_dir": str(work / "cache"), "seed": seed, "batch": args.batch, "lr": args.lr, "ema_alpha": args.ema_alpha, "patch": args.patch, "stride": args.stride,
        "warmup_epochs": args.warmup_epochs, "semi_epochs": args.semi_epochs,
        "steps_per_epoch": args.steps_per_epoch or None, "perceptual": args.perceptual,
        "model": args.model, "model_config": MINI if args.model == "mini" else None,
        "detach_judge": args.judge_gradient == "detach", "uncertainty_loss": True if row == "i+k" else None,
    }
    config = resolve(None, flags, "i" if row in ("sup", "i+k") else row)
    run = work / "runs" / f"{row}-{args.judge_gradient}-seed{seed}"
    shutil.rmtree(run, ignore_errors=True)
    began = time.perf_counter()
    result = train(config, run)
    trained = time.perf_counter() - began
    scores = evaluate(EvaluateSettings(test_dir=data["test"], backend="cpu", weights=result.final))
    last = result.history[-1]
    return {
        "row": row, "seed": seed, "psnr_mu": scores["mean"]["psnr_mu"], "ssim_mu": scores["mean"]["ssim_mu"],
        "judge_gradient": args.judge_gradient, "psnr_l": scores["mean"]["psnr_l"], "kept_fraction": last.get("kept_fraction"), "train_seconds": round(trained, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="scales the synthetic scene size and the epochs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", nargs="+", default=list(ROWS[:-1]), choices=ROWS)
    parser.add_argument("--labeled", type=Path)
    parser.add_argument("--unlabeled", type=Path)
    parser.add_argument("--test", type=Path)
    parser.add_argument("--supervised", type=Path, help="all training scenes with ground truth, for the sup row")
    parser.add_argument("--model", default="mini", help="mini (default), tiny, small or full")
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ema-alpha", type=float, default=0.98)
    parser.add_argument("--warmup-epochs", type=int, default=None)
    parser.add_argument("--semi-epochs", type=int, default=None)
    parser.add_argument("--steps-per-epoch", type=int, default=40, help="0: one pass over the patches")
    parser.add_argument("--judge-gradient", choices=("detach", "through"), default="detach",
                        help="detach (default): L^k trains only the judge; through: also the trunk (the first version)")
    parser.add_argument("--perceptual", action="store_true", help="with the VGG-16 loss (downloads its weights once)")
    parser.add_argument("--work", type=Path, default=Path("ablation-work"))
    parser.add_argument("--out", type=Path, default=RESULTS / "ablation.json")
    args = parser.parse_args()
    args.warmup_epochs = args.warmup_epochs if args.warmup_epochs is not None else max(1, round(6 * args.scale))
    args.semi_epochs = args.semi_epochs if args.semi_epochs is not None else max(1, round(12 * args.scale))

    args.work.mkdir(parents=True, exist_ok=True)
    if args.labeled:
        data = {"labeled": args.labeled, "unlabeled": args.unlabeled, "test": args.test, "supervised": args.supervised or args.labeled}
    else:
        data = make_synthetic(args.work, args.scale)
    runs = []
    for row in args.rows:
        for seed in range(args.seeds):
            runs.append(run_row(row, seed, data, args, args.work))
            print(json.dumps(runs[-1]), flush=True)
    table = []
    for row in args.rows:
        mine = [r for r in runs if r["row"] == row]
        psnr = [r["psnr_mu"] for r in mine]
        ssim = [r["ssim_mu"] for r in mine]
        table.append({"row": row, "psnr_mu": statistics.mean(psnr), "psnr_mu_margin": margin(psnr), "ssim_mu": statistics.mean(ssim), "ssim_mu_margin": margin(ssim)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"machine": machine(), "settings": settings, "data": {k: str(v) for k, v in data.items()}, "runs": runs, "table": table}, indent=1) + "\n")
    print("\n| row | PSNR-mu (dB) | SSIM-mu |\n|---|---:|---:|")
    for line in table:
        print(f"| {line['row']} | {line['psnr_mu']:.2f} ± {line['psnr_mu_margin']:.2f} | {line['ssim_mu']:.4f} ± {line['ssim_mu_margin']:.4f} |")


if __name__ == "__main__":
    main()
