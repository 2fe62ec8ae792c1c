"""How much of the trunk's gradient comes from L^k, with the judge's input detached or not.

For a set of weights and a few labeled scenes (`smarthdr synth` folders), 64 px patches at
random positions: the gradient of each loss term of eq. 9's supervised part (L^r: mu-law L1,
L^k: the uncertainty loss of eq. 10) on the trunk's parameters (every parameter but the judge's),
its norm, and the ratio ||grad L^k|| / ||grad L^r||, for the trained weights or (`--random-init`)
a fresh network of their configuration, once with F_att passed to the judge as
it is (the first version: L^k reaches the trunk through sigma) and once detached (the default).

    python bench/judge_gradient.py --weights weights/gfhdr.safetensors --scenes DIR/test --patches 32
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from common import machine, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "judge_gradient.json"


def main() -> None:
    from smarthdr_cli.data.layouts import ReadSettings, discover_scenes, read_scene
    from smarthdr_cli.model.gfhdr import GFHDR
    from smarthdr_cli.model.weights import load_weights
    from smarthdr_cli.preprocess import network_input
    from smarthdr_cli.train.losses import mu_l1, uncertainty_loss

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--scenes", type=Path, required=True)
    parser.add_argument("--patches", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-init", action="store_true", help="the weights' configuration, freshly initialised (the start of a run)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    inputs, targets = [[], [], []], []
    scenes = [read_scene(s, ReadSettings(align="homography")) for s in discover_scenes(args.scenes, "required")]
    for index in range(args.patches):
        scene = scenes[index % len(scenes)]
        height, width = scene.shape
        y, x = int(rng.integers(0, height - 64)), int(rng.integers(0, width - 64))
        for frame in range(3):
            patch = network_input(scene.frames[frame][y : y + 64, x : x + 64], float(scene.exposures[frame]))
            inputs[frame].append(torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1))))
        targets.append(torch.from_numpy(np.ascontiguousarray(np.minimum(scene.gt[y : y + 64, x : x + 64], 1.0).transpose(2, 0, 1))))
    batch = [torch.stack(frames).float() for frames in inputs]
    target = torch.stack(targets).float()
    trained, _ = load_weights(args.weights)
    rows = []
    for detach in (False, True):
        torch.manual_seed(args.seed)
        model = GFHDR(replace(trained.config, judge_detach=detach))
        if not args.random_init:
            model.load_state_dict(trained.state_dict())
        model.train()
        trunk = [p for name, p in model.named_parameters() if not name.startswith("judge.")]
        norms = {}
        for term in ("L^r", "L^k"):
            model.zero_grad()
            torch.manual_seed(args.seed)  # the same stochastic depth for both terms
            pred, sigma = model(*batch)
            loss = mu_l1(pred, target) if term == "L^r" else uncertainty_loss(pred, target, sigma)
            grads = torch.autograd.grad(loss, trunk, allow_unused=True)
            norms[term] = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))
        rows.append({"judge_input": "detached" if detach else "through", **norms, "ratio": norms["L^k"] / norms["L^r"]})
        print(f"| {rows[-1]['judge_input']} | {norms['L^r']:.4g} | {norms['L^k']:.4g} | {rows[-1]['ratio']:.2f} |")
    write_results(RESULTS.with_name(RESULTS.stem + ("_random_init" if args.random_init else "") + ".json"), {
        "machine": machine(), "weights": str(args.weights), "random_init": args.random_init,
        "scenes": str(args.scenes), "patches": args.patches, "rows": rows,
    })


if __name__ == "__main__":
    main()
