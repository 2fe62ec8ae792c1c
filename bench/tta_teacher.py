"""Would a test-time-augmentation teacher give better pseudo labels on a new camera? PSNR-mu of
the shipped network on domain_shift.py's test scenes: plain, averaged over the 4 flips, and over
the 8 flips and quarter turns (each prediction turned back first, as `teacher_predict` does).

    python bench/tta_teacher.py --work DIR     # DIR of bench/domain_shift.py; about 3 min on 2 cores
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from common import machine, write_results

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="the --work folder of bench/domain_shift.py")
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "gfhdr.safetensors")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tta_teacher.json")
    args = parser.parse_args()

    import torch

    from smarthdr_cli.data.layouts import ReadSettings, discover_scenes
    from smarthdr_cli.data.patches import prepare_scenes
    from smarthdr_cli.metrics import psnr_mu
    from smarthdr_cli.model.weights import load_weights
    from smarthdr_cli.train import augment
    from smarthdr_cli.train.pseudo_label import teacher_predict

    device = torch.device("cpu")
    model, _ = load_weights(args.weights, device)
    model.eval()
    augs = [augment.Augmentation(vflip=v, hflip=h, rotate=r) for v, h, r in itertools.product((False, True), (False, True), (0, 1))]
    flips = [i for i, a in enumerate(augs) if a.rotate == 0]
    rows = {}
    for camera in ("B", "A"):
        sources = discover_scenes(args.work / "data" / f"{camera}-test" / "test", "required")
        scenes = prepare_scenes(sources, args.work / "cache", ReadSettings(align="homography"))
        plain, four, eight = [], [], []
        for scene in scenes:
            truth = np.asarray(scene.gt, np.float32)
            with torch.no_grad():
                predictions = [teacher_predict(model, scene, gamma=2.2, device=device, aug=a)[0] for a in augs]
            plain.append(psnr_mu(predictions[0], truth))
            four.append(psnr_mu(np.mean([predictions[i] for i in flips], axis=0), truth))
            eight.append(psnr_mu(np.mean(predictions, axis=0), truth))
        rows[camera] = {"scenes": len(scenes), "plain": float(np.mean(plain)), "flips_x4": float(np.mean(four)), "dihedral_x8": float(np.mean(eight))}
        print(f"camera {camera}: plain {rows[camera]['plain']:.3f}, 4 flips {rows[camera]['flips_x4']:.3f}, 8 dihedral {rows[camera]['dihedral_x8']:.3f} dB")
    write_results(args.out, {"machine": machine(), "weights": str(args.weights), "work": str(args.work), "psnr_mu": rows})


if __name__ == "__main__":
    main()
