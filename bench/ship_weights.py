"""Train, evaluate and package the weights that ship in `weights/gfhdr.safetensors`.

Every step is a `smarthdr` command, so what the model card reports is what a user can rerun:

1. data: `smarthdr synth` from the real HDR photographs in ../shared/data/hdr-train (CC0/BSD-3)
   and ../shared/data/hdr (BSD-3). Five photographs are held out: the test split is made only
   from them, so test scores are on scenes whose radiance the network never saw. Training
   scenes (240) and the validation scenes that pick the best epoch (10) come from the other 32.
2. train: `smarthdr train` (the "small" GFHDR, supervised, cosine rate; see TRAIN below).
3. evaluate: `smarthdr evaluate` of the network and of `classic`, with and without alignment.
4. frobisher: `smarthdr merge` of the real bracket in ../shared/data/brackets/frobisher by both,
   and a side-by-side picture (classic | network | network's uncertainty) for the README.
5. card: the selected student written to weights/ with a model card holding the configuration,
   data provenance, recipe, commit, training time, the figures of 3 and the note on 4.

Each step is skipped when its output exists, and an interrupted training run is resumed, so the
script can be run again after a crash. About two hours on 2 CPU cores, almost all of it step 2.
`--install` refuses weights that do not beat `classic` in PSNR-mu on the test split with the
merge's default alignment (homography): `merge --backend auto` picks them over `classic`.

    python bench/ship_weights.py --work /tmp/ship
    python bench/ship_weights.py --work /tmp/ship --frobisher-note note.txt --install   # after looking
    python bench/ship_weights.py --work /tmp/gpu --train-args "--model full --batch 32 --steps-per-epoch 1000"
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from common import machine, write_results

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results" / "ship_weights.json"
PICTURE = REPO / "docs" / "frobisher-shipped-weights.jpg"
HELD_OUT = (
    "3d-demo-data_leadenhall_market_1k.hdr", "3d-demo-data_narrow_moonlit_road_1k.hdr", "drei-assets_st_fagans_interior_1k.hdr",
    "drei-assets_venice_sunset_1k.hdr", "pmndrs-assets_lab.hdr",
)
SIZE = ["--height", "256", "--width", "384"]
SPLITS = {  # folder: (split, seed, sources)
    "data": ("labeled=240", 2026, "src_train"),
    "val": ("test=10", 2028, "src_train"),
    "test": ("test=15", 7, "src_test"),
}
TRAIN = [
    "--labeled", "data/labeled", "--test", "val/test", "--no-teacher", "--model", "small", "--no-perceptual",
    "--align", "homography", "--batch", "8", "--warmup-epochs", "34", "--semi-epochs", "0", "--steps-per-epoch", "200",
    "--lr", "7e-4", "--lr-schedule", "cosine", "--validate-every", "2", "--seed", "1",
]
ALIGNS = ("homography", "none")


def smarthdr(work: Path, *args: str, capture: bool = False) -> str:
    env = dict(os.environ, SMARTHDR_CACHE=str(work / "cache"))
    command = [sys.executable, "-m", "smarthdr_cli", *args]
    print("+ smarthdr " + " ".join(args), file=sys.stderr)
    done = subprocess.run(command, cwd=work, env=env, check=True, text=True, stdout=subprocess.PIPE if capture else None)
    return done.stdout if capture else ""


def make_data(work: Path) -> None:
    sources = sorted([*(SHARED / "hdr-train").glob("*.hdr"), *(SHARED / "hdr-train").glob("*.exr"), *(SHARED / "hdr").glob("*.exr")])
    for folder in ("src_train", "src_test"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    for path in sources:
        link = work / ("src_test" if path.name in HELD_OUT else "src_train") / path.name
        if not link.exists():
            link.symlink_to(path)
    for folder, (split, seed, source) in SPLITS.items():
        if not (work / folder).exists():
            smarthdr(work, "synth", folder, "--split", split, "--seed", str(seed), "--hdr-source", source, *SIZE, "--jobs", "2", "-q")


def train(work: Path, extra: list[str]) -> Path:
    """`extra` flags follow TRAIN, so they win (the last of a repeated flag counts)."""
    run = work / "run"
    if not (run / "student-final.safetensors").exists():
        if (run / "checkpoint.pt").exists():
            smarthdr(work, "train", "--resume", "run")
        else:
            smarthdr(work, "train", *TRAIN, *extra, "-o", "run")
    return run / "student-best.safetensors"


def evaluate(work: Path, weights: Path) -> dict[str, dict]:
    figures: dict[str, dict] = {}
    for align in ALIGNS:
        for backend in ("cpu", "classic"):
            key = f"{backend}_align_{align}"
            out = work / f"evaluate_{key}.json"
            if not out.exists():
                extra = ["--weights", str(weights)] if backend == "cpu" else []
                text = smarthdr(work, "evaluate", "test/test", "--backend", backend, "--align", align, *extra, "--json", "-q", capture=True)
                out.write_text(text)
            figures[key] = json.loads(out.read_text())
    return figures


def frobisher(work: Path, weights: Path) -> None:
    bracket = SHARED / "brackets" / "frobisher"
    for backend in ("cpu", "classic"):
        out = work / f"frobisher_{backend}.exr"
        if not out.exists():
            extra = ["--weights", str(weights), "--uncertainty", str(work / "frobisher_sigma.exr")] if backend == "cpu" else []
            smarthdr(work, "merge", str(bracket), "-o", str(out), "--backend", backend, "--preview", str(out.with_suffix(".jpg")), *extra, "-q")
    side_by_side(work)


def side_by_side(work: Path) -> None:
    """classic | network | network's sigma, with the previews' own tone mapping."""
    import numpy as np
    import imageio.v3 as iio

    from smarthdr_cli.io.hdr import read_hdr

    left, middle = (iio.imread(work / f"frobisher_{b}.jpg") for b in ("classic", "cpu"))
    sigma = read_hdr(work / "frobisher_sigma.exr")
    scaled = np.clip(sigma / max(float(np.percentile(sigma, 99.5)), 1e-6), 0, 1)
    right = (scaled * 255).astype(np.uint8)
    gap = np.full((left.shape[0], 8, 3), 255, np.uint8)
    PICTURE.parent.mkdir(exist_ok=True)
    iio.imwrite(PICTURE, np.concatenate([left, gap, middle, gap, right], axis=1), quality=90)


def speed(work: Path, weights: Path) -> dict[str, float]:
    """Wall-clock `smarthdr merge` of one 1500x1000 scene (reading, alignment and writing included)."""
    import time

    if not (work / "speed").exists():
        smarthdr(work, "synth", "speed", "--scenes", "1", "--seed", "3", "--hdr-source", "src_test", "-q")
    seconds = {}
    for backend in ("cpu", "classic"):
        out = work / f"speed_{backend}.exr"
        out.unlink(missing_ok=True)
        extra = ["--weights", str(weights)] if backend == "cpu" else []
        began = time.perf_counter()
        smarthdr(work, "merge", "speed/0000", "-o", str(out), "--backend", backend, *extra, "-q")
        seconds[backend] = round(time.perf_counter() - began, 2)
    return seconds


def card(work: Path, weights: Path, figures: dict[str, dict], note: str | None, seconds: dict[str, float]) -> dict:
    from smarthdr_cli.model.weights import read_card

    trained = read_card(weights) or {}
    history = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    means = {key: value["mean"] for key, value in figures.items()}
    config = trained.get("training") or {}
    terms = ["mu-law L1", *(["VGG-16 perceptual"] if config.get("perceptual") else []), *(["L^k"] if config.get("uncertainty_loss") else [])]
    if config.get("teacher", "none") == "none" and not config.get("pseudo"):
        recipe = f"supervised (the recipe's warm-up stage, eq. 9 on labeled scenes only): {', '.join(terms)}"
    else:
        recipe = f"semi-supervised with mean teacher and bi-level masking: {', '.join(terms)}"
    model = config.get("model_config") or config.get("model")
    return {
        "name": "gfhdr",
        "description": f"GFHDR ({model}) with its uncertainty judge, the default network of `smarthdr merge`",
        "recipe": recipe,
        "selected": trained.get("which"),
        "epochs": trained.get("epochs"),
        "training_seconds": round(sum(r.get("seconds", 0.0) for r in history), 1),
        "training_machine": machine(),
        "commit": trained.get("commit"),
        "training": trained.get("training"),
        "validation_history": [{"epoch": r["epoch"], "psnr_mu": r.get("psnr_mu")} for r in history if "psnr_mu" in r],
        "training_data": {
            "synthesis": {folder: {"split": split, "seed": seed, "sources": source, "size": "256x384"} for folder, (split, seed, source) in SPLITS.items()},
            "sources": "34 Poly Haven / pmndrs / openexr-images photographs in ../shared/data/hdr-train (CC0 and BSD-3, "
                       "each file's origin in its SOURCES.md) and 3 OpenEXR sample photographs in ../shared/data/hdr (BSD-3, ILM)",
            "held_out_for_test": list(HELD_OUT),
            "licences": "CC0 1.0 (Poly Haven) and BSD-3-Clause (Copyright (c) 2004, Industrial Light & Magic); "
                        "the BSD-3 text is in weights/LICENSE-training-data.txt",
        },
        "evaluation": {
            "test_split": "15 synthetic scenes from the 5 held-out photographs (synth seed 7, 256x384)",
            "mean": means,
            "command": "smarthdr evaluate test/test --backend cpu|classic --align homography|none --json",
        },
        "merge_seconds_1500x1000": {**seconds, "machine": "the training machine above, all cores, fp32"},
        "frobisher": note,
        "reproduce": "python bench/ship_weights.py --work DIR",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for data, run and evaluations")
    parser.add_argument("--frobisher-note", type=Path, help="text file: what the Frobisher previews show (written after looking)")
    parser.add_argument("--install", action="store_true", help="write weights/gfhdr.safetensors and its card (replacing them)")
    parser.add_argument("--force", action="store_true", help="install even weights that do not beat classic")
    parser.add_argument("--train-args", default="", help="extra `smarthdr train` flags for a new run, e.g. for a GPU")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    make_data(work)
    weights = train(work, shlex.split(args.train_args))
    figures = evaluate(work, weights)
    frobisher(work, weights)
    note = args.frobisher_note.read_text().strip() if args.frobisher_note else None
    model_card = card(work, weights, figures, note, speed(work, weights))
    write_results(RESULTS, {"machine": machine(), "card": model_card})
    for key, mean in model_card["evaluation"]["mean"].items():
        print(f"{key:28s} PSNR-mu {mean['psnr_mu']:6.2f}  PSNR-l {mean['psnr_l']:6.2f}  SSIM-mu {mean['ssim_mu']:.4f}")
    means = model_card["evaluation"]["mean"]
    margin = means["cpu_align_homography"]["psnr_mu"] - means["classic_align_homography"]["psnr_mu"]
    print(f"network - classic, PSNR-mu, default alignment: {margin:+.2f} dB")
    if args.install and margin <= 0 and not args.force:
        sys.exit("not installed: the network does not beat classic on the test split (--force to install anyway)")
    if args.install:
        from smarthdr_cli.model.weights import DEFAULT_NAME, load_weights, save_weights

        model, _ = load_weights(weights)
        save_weights(model, REPO / "weights" / DEFAULT_NAME, model_card, overwrite=True)
        print(f"installed {REPO / 'weights' / DEFAULT_NAME}", file=sys.stderr)


if __name__ == "__main__":
    main()
