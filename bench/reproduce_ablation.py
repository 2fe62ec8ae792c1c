"""The seed's Table 3 ablation at a scale where the warm-up student converges, on synthetic data
or unchanged on a real download.

Rows (as `smarthdr train --ablation ROW`): i baseline (supervised on the labeled scenes only),
ii + mean teacher, iii + L^k, iv + patch mask, v + pixel mask (instead of iv), vi both masks,
vii + strong augmentation (the full recipe), and "sup": the same network supervised on every
training scene (labeled + unlabeled with their ground truths), the upper bound. Row "i+k" (not in
Table 3, not in the default rows) is the supervised baseline with L^k.

Schedule. Every row of a seed starts its second stage from the same converged warm-up student
(`--warmup-epochs` supervised epochs on the labeled scenes, run once per seed and per L^k setting,
since L^k reaches the trunk through the prediction it weighs): rows ii-vii then run
`--semi-epochs` semi-supervised epochs from it (`train --init-weights`, the product's way of
adapting a network), row i runs the same number of supervised epochs from it, so every row gets
the same steps and a fresh Adam at the start of its second stage. "sup" runs warm-up + semi
epochs supervised from scratch on all scenes. Each finished run is appended to
`WORK/runs-detach.jsonl` (`runs-through.jsonl` with `--judge-gradient through`, `runs-kw0.01-rank-detach.jsonl`
with `--k-weight 0.01 --normalisation rank`: a variant has its own runs, warm-ups and results file); running the
script again skips what is there (a crash loses one run; a cut-short warm-up resumes).
`--jobs` runs that many trainings side by side, each on one CPU thread.

Default (synthetic): `smarthdr synth --seed 0 --split labeled=5,unlabeled=69,test=15`, scenes of
96x144 pixels (x --scale), the "mini" network (16 wide, 2+2 layers, window 8: 59 k parameters with
the judge), no perceptual loss (no download), patches 32 px / stride 16, batch 8 per branch, 40
steps per epoch, 50 warm-up + 25 second-stage epochs (x --scale), Adam lr 1e-3 (constant) instead of
the seed's 2e-4, and EMA alpha 0.99 instead of 0.999: the teacher then averages the converged
student over its last ~100 steps (2.5 epochs), while 0.999 (1000 steps, the whole second stage)
would leave it near the warm-up student. The unlabeled scenes are read from copies that hold
their ground truth, which training never uses (`data/layouts.discover_unlabeled`): it only scores
the teacher's pseudo labels against the student on 8 of them each epoch (the diagnostics below).
The test scenes are scored with `smarthdr evaluate` (cpu backend); the table gives the mean and the
95% margin (Student's t over the seeds) of PSNR-mu and SSIM-mu, and per row the last epoch's
kept fractions and the mean teacher-minus-student PSNR-mu over the second stage.

Real data: pass --labeled, --unlabeled and --test (e.g. 5 of Kalantari's Training scenes, the
other 69 and Test), --supervised (all 74 with ground truth) for the "sup" row, and the seed's
settings: --model full --patch 64 --stride 32 --batch 64 --lr 2e-4 --ema-alpha 0.999 --warmup-epochs 30
--semi-epochs 170 --steps-per-epoch 0 --perceptual --jobs 1 (on GPUs).

    python bench/reproduce_ablation.py --work DIR                    # synthetic, about 2 h on 2 cores
    python bench/reproduce_ablation.py --scale 0.25 --seeds 2        # a quicker look
    python bench/reproduce_ablation.py --labeled K/l --unlabeled K/u --test K/Test --supervised K/Training \\
        --model full --patch 64 --stride 32 --batch 64 --lr 2e-4 --ema-alpha 0.999 --warmup-epochs 30 --semi-epochs 170 \\
        --steps-per-epoch 0 --perceptual --jobs 1
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import shutil
import statistics
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from common import RunLog, machine

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = ("i", "ii", "iii", "iv", "v", "vi", "vii", "sup", "i+k")  # i+k: row i with L^k (not in Table 3)
# Student's t quantile (0.975) for n - 1 degrees of freedom: the 95% margin of a mean over n seeds.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
MINI = {"embed_dim": 16, "depths": [2, 2], "num_heads": [2, 2], "window_size": 8, "reduction": 4, "judge_channels": 8, "drop_path_rate": 0.0}
FINAL = "student-final.safetensors"


def margin(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    return T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def make_synthetic(work: Path, scale: float) -> dict[str, Path]:
    """The 6.7% split; for the "sup" row the same 74 training scenes all with ground truth; and the
    unlabeled scenes again as links to those copies (their GT only scores teacher vs student)."""
    from smarthdr_cli.data.synth import SynthSettings, generate

    work.mkdir(parents=True, exist_ok=True)
    height, width = int(round(96 * scale / 8)) * 8, int(round(144 * scale / 8)) * 8
    common = dict(seed=0, height=max(height, 64), width=max(width, 96))
    if not (work / "split" / "synth.json").exists():
        generate(work / "split", SynthSettings(split={"labeled": 5, "unlabeled": 69, "test": 15}, overwrite=True, **common))
    if not (work / "all" / "synth.json").exists():
        # same seed: scenes 0..73 are the labeled and unlabeled scenes above, now all with GT
        generate(work / "all", SynthSettings(split={"labeled": 74}, overwrite=True, **common))
    linked = work / "unlabeled-with-gt"
    linked.mkdir(exist_ok=True)
    for scene in sorted(p.name for p in (work / "split" / "unlabeled").iterdir() if p.is_dir()):
        if not (linked / scene).exists():
            (linked / scene).symlink_to((work / "all" / "labeled" / scene).resolve(), target_is_directory=True)
    return {"labeled": work / "split" / "labeled", "unlabeled": linked, "test": work / "split" / "test", "supervised": work / "all" / "labeled"}


def needs_k(row: str) -> bool:
    """Whether the row trains with L^k, and so which warm-up it starts from."""
    from smarthdr_cli.train.config import ABLATION_ROWS

    return row == "i+k" or (row in ABLATION_ROWS and bool(ABLATION_ROWS[row]["uncertainty_loss"]))


def _flags(args: argparse.Namespace, seed: int) -> dict:
    return {
        "cache_dir": str(args.work / "cache"), "seed": seed, "batch": args.batch, "lr": args.lr, "ema_alpha": args.ema_alpha, "patch": args.patch,
        "stride": args.stride, "steps_per_epoch": args.steps_per_epoch or None, "perceptual": args.perceptual, "model": args.model,
        "model_config": MINI if args.model == "mini" else None, "detach_judge": args.judge_gradient == "detach", "threads": args.threads_per_job,
        "k_weight": args.k_weight, "normalisation": args.normalisation,
    }


def variant(args: argparse.Namespace, warmup: bool = False) -> str:
    """What names this call's runs apart from the seed's settings: "-kw0.01", "-rank" (a
    warm-up is supervised, so only the k-weight names it); "" with the defaults."""
    tag = f"-kw{args.k_weight:g}" if args.k_weight != 1.0 else ""
    return tag if warmup or args.normalisation == "global" else f"{tag}-{args.normalisation}"


def warmup_dir(args: argparse.Namespace, seed: int, k: bool) -> Path:
    return args.work / "runs" / f"warmup-k{int(k)}{variant(args, warmup=True) if k else ''}-{args.judge_gradient}-seed{seed}"


def run_warmup(seed: int, k: bool, data: dict[str, Path], args: argparse.Namespace) -> Path:
    """The seed's warm-up student (supervised on the labeled scenes), continued if it was cut short."""
    from smarthdr_cli.train.config import resolve
    from smarthdr_cli.train.loop import train

    run = warmup_dir(args, seed, k)  # train and evaluate set the threads: "threads" in _flags
    if (run / FINAL).exists():
        return run / FINAL
    flags = {**_flags(args, seed), "labeled": str(data["labeled"]), "uncertainty_loss": k, "warmup_epochs": args.warmup_epochs, "semi_epochs": 0}
    resume = (run / "checkpoint.pt").exists()
    if not resume:
        shutil.rmtree(run, ignore_errors=True)
    result = train(resolve(None, flags, "i"), run, resume=resume)
    return result.final


def run_row(row: str, seed: int, data: dict[str, Path], args: argparse.Namespace, start: Path | None) -> dict:
    """One row and seed: its second stage from the warm-up student `start` (or, for "sup", the
    whole schedule from scratch on every scene), scored on the test scenes."""
    from smarthdr_cli.evaluate import EvaluateSettings, evaluate
    from smarthdr_cli.train.config import resolve
    from smarthdr_cli.train.loop import train

    flags = _flags(args, seed)
    if row == "sup":
        flags.update(labeled=str(data["supervised"]), warmup_epochs=args.warmup_epochs + args.semi_epochs, semi_epochs=0)
    else:
        flags.update(labeled=str(data["labeled"]), init_weights=str(start), warmup_epochs=0, semi_epochs=args.semi_epochs)
        if row not in ("i", "i+k"):
            flags["unlabeled"] = str(data["unlabeled"])
    if row == "i+k":
        flags["uncertainty_loss"] = True
    config = resolve(None, flags, "i" if row in ("sup", "i+k") else row)
    run = args.work / "runs" / f"{row}{variant(args)}-{args.judge_gradient}-seed{seed}"
    shutil.rmtree(run, ignore_errors=True)
    began = time.perf_counter()
    result = train(config, run)
    trained = time.perf_counter() - began
    scores = evaluate(EvaluateSettings(test_dir=data["test"], backend="cpu", weights=result.final, threads=args.threads_per_job))
    semi = [r for r in result.history if r.get("stage") == "semi"]
    last = semi[-1] if semi else {}
    gaps = [r["teacher_minus_student_psnr_mu"] for r in semi if "teacher_minus_student_psnr_mu" in r]
    return {
        "row": row, "seed": seed, "psnr_mu": scores["mean"]["psnr_mu"], "ssim_mu": scores["mean"]["ssim_mu"], "psnr_l": scores["mean"]["psnr_l"],
        "judge_gradient": args.judge_gradient, "k_weight": args.k_weight, "normalisation": args.normalisation,
        "kept_fraction": last.get("kept_fraction"), "patch_kept_fraction": last.get("patch_kept_fraction"),
        "pixel_kept_fraction": last.get("pixel_kept_fraction"), "teacher_minus_student_first": gaps[0] if gaps else None,
        "teacher_minus_student_last": gaps[-1] if gaps else None, "teacher_minus_student_mean": statistics.mean(gaps) if gaps else None,
        "k_to_r_grad_ratio_last": last.get("k_to_r_grad_ratio"), "train_seconds": round(trained, 1),
    }


def schedule(args: argparse.Namespace, data: dict[str, Path], todo: list[tuple[str, int]], record) -> None:
    """Run the warm-ups, then each row as soon as its warm-up is there, `--jobs` at a time."""
    pool = ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn"))
    waiting: dict[tuple[int, bool], list[tuple[str, int]]] = {}
    futures: dict[Future, tuple] = {}
    for row, seed in todo:
        if row == "sup":
            continue
        waiting.setdefault((seed, needs_k(row)), []).append((row, seed))
    for seed, k in waiting:
        futures[pool.submit(run_warmup, seed, k, data, args)] = ("warmup", seed, k)
    for row, seed in todo:
        if row == "sup":
            futures[pool.submit(run_row, row, seed, data, args, None)] = ("row", row, seed)
    while futures:
        finished, _ = wait(futures, return_when=FIRST_COMPLETED)
        for future in finished:
            what = futures.pop(future)
            result = future.result()
            if what[0] == "warmup":
                print(f"warm-up seed {what[1]} (L^k {'on' if what[2] else 'off'}) ready: {result}", flush=True)
                for row, seed in waiting[(what[1], what[2])]:
                    futures[pool.submit(run_row, row, seed, data, args, result)] = ("row", row, seed)
            else:
                record(result)
    pool.shutdown()


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
    parser.add_argument("--ema-alpha", type=float, default=0.99)
    parser.add_argument("--warmup-epochs", type=int, default=None)
    parser.add_argument("--semi-epochs", type=int, default=None, help="epochs of each row's second stage")
    parser.add_argument("--steps-per-epoch", type=int, default=40, help="0: one pass over the patches")
    parser.add_argument("--judge-gradient", choices=("detach", "through"), default="detach",
                        help="detach (default): F_att reaches the judge detached; through: L^k also reaches the trunk through F_att (the first version)")
    parser.add_argument("--k-weight", type=float, default=1.0, help="weight of L^k (train --k-weight); not 1: its own warm-ups, runs and results file")
    parser.add_argument("--normalisation", default="global", help="train --normalisation for every row; not global: its own runs and results file")
    parser.add_argument("--perceptual", action="store_true", help="with the VGG-16 loss (downloads its weights once)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings side by side")
    parser.add_argument("--threads-per-job", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("ablation-work"))
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/ablation<variant>.json")
    args = parser.parse_args()
    args.out = args.out or RESULTS / f"ablation{variant(args)}.json"
    args.warmup_epochs = args.warmup_epochs if args.warmup_epochs is not None else max(1, round(50 * args.scale))
    args.semi_epochs = args.semi_epochs if args.semi_epochs is not None else max(1, round(25 * args.scale))
    args.work = args.work.resolve()

    args.work.mkdir(parents=True, exist_ok=True)
    if args.labeled:
        data = {"labeled": args.labeled, "unlabeled": args.unlabeled, "test": args.test, "supervised": args.supervised or args.labeled}
    else:
        data = make_synthetic(args.work, args.scale)
    log = RunLog(args.work / f"runs{variant(args)}-{args.judge_gradient}.jsonl")
    runs = log.runs
    todo = [(row, seed) for row in args.rows for seed in range(args.seeds) if (row, seed) not in log.done()]
    began = time.perf_counter()
    schedule(args, data, todo, log.record)
    table = []
    for row in args.rows:
        mine = [r for r in runs if r["row"] == row and r["seed"] < args.seeds]
        psnr, ssim = [r["psnr_mu"] for r in mine], [r["ssim_mu"] for r in mine]
        line = {"row": row, "seeds": len(mine), "psnr_mu": statistics.mean(psnr), "psnr_mu_margin": margin(psnr),
                "ssim_mu": statistics.mean(ssim), "ssim_mu_margin": margin(ssim)}
        for key in ("kept_fraction", "patch_kept_fraction", "pixel_kept_fraction", "teacher_minus_student_mean", "teacher_minus_student_last"):
            values = [r[key] for r in mine if r.get(key) is not None]
            line[key] = statistics.mean(values) if values else None
        table.append(line)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "settings": settings, "data": {k: str(v) for k, v in data.items()},
                                    "wall_seconds_this_call": round(time.perf_counter() - began, 1), "runs": runs, "table": table}, indent=1) + "\n")
    print("\n| row | PSNR-mu (dB) | SSIM-mu | kept (last epoch) | teacher - student (dB, mean / last) |\n|---|---:|---:|---:|---:|")
    for line in table:
        kept = f"{100 * line['kept_fraction']:.0f}%" if line["kept_fraction"] is not None else ""
        gap = f"{line['teacher_minus_student_mean']:+.2f} / {line['teacher_minus_student_last']:+.2f}" if line["teacher_minus_student_mean"] is not None else ""
        print(f"| {line['row']} | {line['psnr_mu']:.2f} ± {line['psnr_mu_margin']:.2f} | {line['ssim_mu']:.4f} ± {line['ssim_mu_margin']:.4f} | {kept} | {gap} |")


if __name__ == "__main__":
    main()
