"""Benchmark: GFHDR forward time and peak memory on this machine, against a straightforward version.

Rows: the full network (1,222,113 parameters + judge), random weights from one seed, one bracket
of random frames, at 256x256 and 1000x1500; fp32 vs autocast (bf16 on CPU), untiled vs tiled.
The straightforward version is the same module with its window attention replaced, inside this
script only, by explicit softmax attention with the shifted-window mask rebuilt on every call for
every window (as in the reference Swin/GFHDR code); its output must equal ours within 1e-4.
Every row runs in a fresh process (peak resident memory above the loaded model and inputs,
VmHWM after a reset through /proc/self/clear_refs, else ru_maxrss). Accuracy: PSNR-mu of each
output against our fp32 output of the same size.

    python bench/gfhdr_forward.py                 # everything (~10 min on 2 cores)
    python bench/gfhdr_forward.py --quick         # 256x256 rows only
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import PeakMemory, machine

RESULTS = Path(__file__).resolve().parent / "results"


def patch_straightforward() -> None:
    """Explicit softmax attention; the full shifted-window mask rebuilt for every call."""
    import torch

    from smarthdr_cli.model import gfhdr

    def build_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
        label = gfhdr.shift_regions(height, width, window, shift)
        windows = gfhdr.window_partition(label[None, :, :, None], window).squeeze(-1)
        return (windows[:, None, :] - windows[:, :, None]).ne(0).float() * -100.0

    def forward(self, windows, shift):
        count, n, dim = windows.shape
        heads = self.heads
        qkv = self.qkv(windows).reshape(count, n, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * (dim // heads) ** -0.5
        attn = q @ k.transpose(-2, -1) + self.position_bias()
        if shift is not None:
            height, width = self._map_size
            mask = build_mask(height, width, int(n**0.5), int(n**0.5) // 2).to(attn.device)
            attn = attn.view(count // mask.shape[0], mask.shape[0], heads, n, n) + mask[None, :, None]
            attn = attn.view(-1, heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(count, n, dim))

    original_layer_forward = gfhdr.ContextAwareViTLayer.forward

    def layer_forward(self, x, shift_mask):
        self.attn._map_size = (x.shape[1], x.shape[2])
        return original_layer_forward(self, x, shift_mask)

    gfhdr.WindowAttention.forward = forward
    gfhdr.ContextAwareViTLayer.forward = layer_forward


def child(args: argparse.Namespace) -> None:
    import torch

    from smarthdr_cli.model import GFHDR
    from smarthdr_cli.model.tiling import tiled_forward

    torch.set_num_threads(os.cpu_count() or 1)
    if args.impl == "straightforward":
        patch_straightforward()
    torch.manual_seed(0)
    model = GFHDR().eval()
    height, width = args.height, args.width
    generator = torch.Generator().manual_seed(1)
    frames = tuple(torch.rand(1, 6, height, width, generator=generator) for _ in range(3))
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.precision]

    def forward(a, b, c):
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            return model(a, b, c, with_uncertainty=False)

    with torch.inference_mode():
        forward(*(f[:, :, :64, :64] for f in frames))  # warm-up: kernels, thread pool
        memory = PeakMemory()
        started = time.perf_counter()
        if args.tile:
            hdr, _ = tiled_forward(forward, frames, args.tile, args.overlap, with_uncertainty=False)
        else:
            hdr, _ = forward(*frames)
        seconds = time.perf_counter() - started
        peak = memory.mib()
    np.save(args.out, hdr[0].float().permute(1, 2, 0).numpy())
    print(json.dumps({"seconds": seconds, "peak_mib": peak}))


def run(impl: str, height: int, width: int, precision: str, tile: int, overlap: int, out: Path) -> dict:
    command = [sys.executable, __file__, "--child", "--impl", impl, "--height", str(height), "--width", str(width),
               "--precision", precision, "--tile", str(tile), "--overlap", str(overlap), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="smarthdr")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--tile", type=int, default=0)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="only the 256x256 rows")
    parser.add_argument("--tile-size", type=int, default=256, help="tile side of the cpu backend's default rows")
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0

    from smarthdr_cli.metrics import psnr_mu

    plans = [
        # (label, impl, size, precision, tile, overlap)
        ("straightforward", "straightforward", (256, 256), "fp32", 0, 0),
        ("smarthdr", "smarthdr", (256, 256), "fp32", 0, 0),
        ("smarthdr", "smarthdr", (256, 256), "bf16", 0, 0),
    ]
    if not args.quick:
        tile = args.tile_size
        plans += [
            ("straightforward, 256 tiles (GFHDR protocol)", "straightforward", (1000, 1500), "fp32", 256, 0),
            ("smarthdr, 256 tiles (GFHDR protocol)", "smarthdr", (1000, 1500), "fp32", 256, 0),
            ("smarthdr, untiled", "smarthdr", (1000, 1500), "fp32", 0, 0),
            (f"smarthdr, {tile} tiles, overlap 32 (cpu default)", "smarthdr", (1000, 1500), "fp32", tile, 32),
            (f"smarthdr, {tile} tiles, overlap 32 (cpu default)", "smarthdr", (1000, 1500), "bf16", tile, 32),
            ("smarthdr, 512 tiles, overlap 32", "smarthdr", (1000, 1500), "bf16", 512, 32),
        ]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        reference: dict[tuple[int, int], np.ndarray] = {}
        for label, impl, (height, width), precision, tile, overlap in plans:
            out = Path(folder) / f"{len(rows)}.npy"
            result = run(impl, height, width, precision, tile, overlap, out)
            image = np.load(out)
            key = (height, width)
            if impl == "smarthdr" and precision == "fp32" and tile == 0:
                reference[key] = image
            rows.append({"label": label, "size": f"{width}x{height}", "precision": precision, **result, "image": str(out)})
            print(f"{label:48s} {width}x{height} {precision}: {result['seconds']:.2f} s, {result['peak_mib']:.0f} MiB", flush=True)
        for row in rows:
            width, height = (int(v) for v in row["size"].split("x"))
            image = np.load(row.pop("image"))
            ref = reference.get((height, width))
            if ref is not None:
                row["max_abs_diff"] = float(np.abs(image - ref).max())
                row["psnr_mu_vs_fp32"] = psnr_mu(image, ref) if row["max_abs_diff"] > 0 else float("inf")

    print("\n| implementation | size | precision | seconds | peak MiB above inputs | max abs diff vs smarthdr fp32 untiled | PSNR-mu vs that (dB) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for row in rows:
        diff = row.get("max_abs_diff")
        psnr = row.get("psnr_mu_vs_fp32")
        print(f"| {row['label']} | {row['size']} | {row['precision']} | {row['seconds']:.2f} | {row['peak_mib']:.0f} | "
              f"{'-' if diff is None else f'{diff:.2e}'} | {'-' if psnr is None else ('identical' if psnr == float('inf') else f'{psnr:.1f}')} |")
    speed = {r["size"] + r["label"]: r["seconds"] for r in rows}
    straight, ours = speed.get("256x256straightforward"), speed.get("256x256smarthdr")
    if straight and ours:
        print(f"\nratio straightforward / smarthdr at 256x256 fp32: {straight / ours:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gfhdr_forward.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
