"""Side-by-side previews of real and synthetic brackets: classic | network(s), for looking at 100%.

Each bracket is merged with `smarthdr merge` (default settings, so what a user gets) by `classic`
and by each set of weights given, with the merge's default preview. The picture stacks one row
per bracket (each cell scaled to the same height) and, under each row, 100% crops of the
brightest area (where halos and colour bands show) and of the darkest textured area (where
noise and blotches show). Brackets: the bundled example, the real Frobisher bracket
(../shared/data/brackets/frobisher, skipped without ../shared) and any scene folders given.

    python bench/previews.py --work /tmp/previews --weights old=W1 --weights new=W2 \\
        --scene /tmp/ship/test/dim/test/0001 --out docs/previews.jpg
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
CELL_HEIGHT = 256
CROP = 96


def merge(work: Path, bracket: Path, name: str, backend: str, weights: Path | None) -> Path:
    preview = work / f"{bracket.name}_{name}.jpg"
    if not preview.exists():
        extra = ["--weights", str(weights)] if weights else []
        command = [sys.executable, "-m", "smarthdr_cli", "merge", str(bracket), "-o", str(preview.with_suffix(".exr")),
                   "--backend", backend, "--preview", str(preview), *extra, "-q"]
        print("+ " + " ".join(command[2:]), file=sys.stderr)
        subprocess.run(command, check=True, env=dict(os.environ))
    return preview


def crops(images: list[np.ndarray], reference: np.ndarray) -> list[np.ndarray]:
    """100% crops of each image at the brightest and the darkest textured CROP x CROP window of `reference`."""
    import cv2

    grey = reference.astype(np.float32).mean(axis=2)
    size = min(CROP, *grey.shape)
    mean = cv2.blur(grey, (size, size))
    texture = cv2.blur(np.abs(cv2.Laplacian(grey, cv2.CV_32F)), (size, size))
    half = size // 2
    valid = np.zeros_like(grey, dtype=bool)
    valid[half : grey.shape[0] - half, half : grey.shape[1] - half] = True
    bright = np.unravel_index(np.argmax(np.where(valid, mean, -1)), grey.shape)
    dark_score = np.where(valid & (texture > np.percentile(texture[valid], 30)), mean, np.inf)
    dark = np.unravel_index(np.argmin(dark_score), grey.shape)
    out = []
    for image in images:
        pair = [image[y - half : y - half + size, x - half : x - half + size] for y, x in (bright, dark)]
        out.append(np.concatenate([pair[0], np.full((size, 4, 3), 255, np.uint8), pair[1]], axis=1))
    return out


def row(previews: list[Path]) -> np.ndarray:
    import cv2
    import imageio.v3 as iio

    images = [iio.imread(p)[:, :, :3] for p in previews]
    scaled = [cv2.resize(i, (round(i.shape[1] * CELL_HEIGHT / i.shape[0]), CELL_HEIGHT), interpolation=cv2.INTER_AREA) for i in images]
    details = crops(images, images[0])
    cells = []
    for top, bottom in zip(scaled, details):
        width = max(top.shape[1], bottom.shape[1])
        pad = lambda a, width=width: np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0)), constant_values=255)  # noqa: E731
        cells.append(np.concatenate([pad(top), np.full((4, width, 3), 255, np.uint8), pad(bottom)], axis=0))
    height = max(c.shape[0] for c in cells)
    cells = [np.pad(c, ((0, height - c.shape[0]), (0, 8), (0, 0)), constant_values=255) for c in cells]
    return np.concatenate(cells, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--weights", action="append", default=[], help="NAME=FILE; one column each, after classic")
    parser.add_argument("--scene", type=Path, action="append", default=[], help="another bracket folder (a row)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    columns = [("classic", "classic", None)] + [(n, "cpu", Path(f)) for n, f in (w.split("=", 1) for w in args.weights)]
    brackets = [REPO / "examples" / "bracket", *([SHARED / "brackets" / "frobisher"] if (SHARED / "brackets" / "frobisher").is_dir() else []), *args.scene]
    rows = [row([merge(args.work, b, name, backend, weights) for name, backend, weights in columns]) for b in brackets]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 12), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    import imageio.v3 as iio

    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, np.concatenate(rows, axis=0), quality=92)
    print(f"columns: {', '.join(c[0] for c in columns)}; rows: {', '.join(b.name for b in brackets)}; wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
