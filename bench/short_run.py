"""A short `smarthdr train` run on synthetic data: do the losses fall, does the kept fraction move?

A synthetic split (`smarthdr synth`, seed 0: 2 labeled, 8 unlabeled, 2 test scenes of 192x288),
the small GFHDR configuration, no perceptual loss (so nothing is downloaded), patches 64 px with
stride 32, batch 8 per branch, 20 steps per epoch, 3 warm-up and 7 semi-supervised epochs, and
otherwise the seed's recipe (EMA 0.999, both masks at 0.4, strong augmentation). Prints one line
per epoch and writes the whole metrics.jsonl to bench/results/short_run.json.

    python bench/short_run.py           # about 5 min on 2 cores
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from common import machine

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    from smarthdr_cli.data.synth import SynthSettings, generate
    from smarthdr_cli.train.config import TrainConfig
    from smarthdr_cli.train.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "data", SynthSettings(seed=0, height=192, width=288, split={"labeled": 2, "unlabeled": 8, "test": 2}))
        config = TrainConfig(
            labeled=str(root / "data" / "labeled"), unlabeled=str(root / "data" / "unlabeled"), test=str(root / "data" / "test"),
            cache_dir=str(root / "cache"), model="small", perceptual=False, batch=8, warmup_epochs=3, semi_epochs=7,
            steps_per_epoch=20,
        )
        began = time.perf_counter()
        result = train(config, root / "run")
        seconds = time.perf_counter() - began
    keys = ("epoch", "stage", "s_r", "s_k", "u_r", "u_k", "kept_fraction", "psnr_mu", "psnr_l", "samples_per_s")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for record in result.history:
        cells = [record.get(k, "") for k in keys]
        print("| " + " | ".join(f"{c:.4f}" if isinstance(c, float) else str(c) for c in cells) + " |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "short_run.json").write_text(
        json.dumps({"machine": machine(), "config": config.to_dict(), "seconds": round(seconds, 1), "epochs": result.history}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
