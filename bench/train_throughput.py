"""Benchmark: training throughput of `smarthdr train` (patches per second) on this machine.

Rows: the tiny, small and full GFHDR configurations, each for one warm-up epoch (labeled branch
only) and one semi-supervised epoch (labeled + unlabeled branch, both masks, strong augmentation),
with the full loss of eq. 9 including the VGG-16 perceptual loss (random VGG weights of the real
shape: the speed is the same as with ImageNet weights, and no download is needed). Data: a
synthetic split from `smarthdr synth` (2 labeled, 4 unlabeled scenes of 256x384). Patches 64x64,
batch 16 per branch (4 for full, whose activations for 2 x 16 patches take over 20 GB on the CPU).
samples/s counts the patches of both branches, excluding the teacher's pseudo-labeling pass,
which is reported separately per megapixel. Each configuration runs in a fresh process, so its
peak resident memory (ru_maxrss) is its own.

    python bench/train_throughput.py                # tiny, small, full (~6 min on 2 cores)
    python bench/train_throughput.py --configs full --batch 16 --checkpoint-activations
    python bench/train_throughput.py --configs tiny small --device cuda --batch 64
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import machine

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = {"tiny": 12, "small": 4, "full": 2}
BATCH = {"tiny": 16, "small": 16, "full": 4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "small", "full"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=None, help="patches per branch (default: 16, 4 for full)")
    parser.add_argument("--checkpoint-activations", action="store_true", help="train with activation checkpointing")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.device, args.batch or BATCH.get(args.child, 16), args.checkpoint_activations)))
        return
    rows = []
    for name in args.configs:
        command = [sys.executable, __file__, "--child", name, "--device", args.device] + (["--batch", str(args.batch)] if args.batch else [])
        command += ["--checkpoint-activations"] if args.checkpoint_activations else []
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    info = {**machine(), "device": args.device}
    RESULTS.mkdir(exist_ok=True)
    name = "train_throughput_checkpointing.json" if args.checkpoint_activations else "train_throughput.json"
    (RESULTS / name).write_text(json.dumps({"machine": info, "patch": 64, "rows": rows}, indent=1) + "\n")
    print("\n| config | batch per branch | warm-up (patches/s) | semi-supervised (patches/s, both branches) | teacher pass (s per MP) | peak memory (GiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['config']} | {row['batch']} | {row['warmup_samples_per_s']:.1f} | {row['semi_samples_per_s']:.1f} | "
            f"{row['pseudo_label_s_per_mp']:.2f} | {row['peak_gib']:.1f} |"
        )


def run_one(name: str, device: str, batch: int, checkpointing: bool) -> dict:
    """One configuration: a warm-up and a semi-supervised epoch in this process."""
    import resource

    from safetensors.torch import save_file

    from smarthdr_cli.data.synth import SynthSettings, generate
    from smarthdr_cli.train.config import TrainConfig
    from smarthdr_cli.train.loop import train
    from smarthdr_cli.train.losses import VGG16Features

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "data", SynthSettings(seed=0, height=256, width=384, split={"labeled": 2, "unlabeled": 4}))
        torch.manual_seed(0)
        vgg = root / "vgg16.safetensors"
        save_file({k: v.contiguous() for k, v in VGG16Features().state_dict().items()}, str(vgg))
        config = TrainConfig(
            labeled=str(root / "data" / "labeled"), unlabeled=str(root / "data" / "unlabeled"), cache_dir=str(root / "cache"),
            model=name, vgg_weights=str(vgg), batch=batch, warmup_epochs=1, semi_epochs=1,
            steps_per_epoch=STEPS.get(name, 2), device=device, checkpoint_activations=checkpointing,
        )
        began = time.perf_counter()
        result = train(config, root / "run")
        warm, semi = result.history
        pixels = 4 * 256 * 384
        return {
            "config": name,
            "batch": batch,
            "checkpoint_activations": checkpointing,
            "warmup_samples_per_s": warm["samples_per_s"],
            "semi_samples_per_s": semi["samples_per_s"],
            "pseudo_label_s_per_mp": round(semi["pseudo_seconds"] / (pixels / 1e6), 2),
            "kept_fraction": semi["kept_fraction"],
            "wall_s": round(time.perf_counter() - began, 1),
            "peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        }


if __name__ == "__main__":
    main()
