"""`cuda` and `cpu`: the GFHDR student with its uncertainty judge, tiled, through PyTorch.

Both share one implementation and differ in device and numerics:
- `cuda`: autocast (bf16 where the GPU supports it, else fp16), channels_last tensors, optional
  `torch.compile`, tiles sized from free GPU memory (or `--max-memory`).
- `cpu`: fp32 by default (`--precision bf16` uses the AVX512-BF16/AMX units of recent x86 CPUs,
  about 2x faster; see bench/README.md for its accuracy), threads from the machine or
  `--threads`, tiles sized from `--max-memory` (default 2 GiB).
A learned backend is only available with trained weights: `--weights FILE` or the weights
shipped in `weights/`. Random weights would produce a plausible-looking but meaningless image.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from smarthdr_backends.base import Availability, BackendOptions, MergeResult
from smarthdr_cli.bracket import Bracket, choose_three
from smarthdr_cli.errors import BackendError
from smarthdr_cli.machine import usable_cores

CPU_DEFAULT_MEMORY = 2 * 1024**3
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _weights_path(options: BackendOptions | None) -> Path | None:
    from smarthdr_cli.model.weights import default_weights

    if options is not None and options.weights is not None:
        return options.weights
    return default_weights()


class TorchGFHDRBackend:
    """GFHDR inference on one torch device; subclasses name the device."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    learned: ClassVar[bool] = True
    gives_uncertainty: ClassVar[bool] = True
    parallel_safe: ClassVar[bool] = True
    device_type: ClassVar[str] = "cpu"

    @classmethod
    def device_problem(cls) -> str | None:
        """Why this device cannot run here, or None."""
        return None

    @classmethod
    def availability(cls, options: BackendOptions | None = None) -> Availability:
        if importlib.util.find_spec("torch") is None:
            return Availability(False, "PyTorch is not installed")
        problem = cls.device_problem()
        if problem:
            return Availability(False, problem)
        weights = _weights_path(options)
        if weights is None:
            return Availability(False, "no trained weights installed; pass --weights FILE.safetensors")
        return Availability(True, f"weights {weights}")

    def __init__(self, options: BackendOptions | None = None) -> None:
        import torch

        from smarthdr_cli.model.weights import load_weights

        self.options = options = options or BackendOptions()
        if options.precision not in PRECISIONS:
            raise BackendError(f"--precision {options.precision}: choose one of {', '.join(PRECISIONS)}")
        problem = self.device_problem()
        if problem:
            raise BackendError(f"backend {self.name!r} is not available: {problem}")
        path = _weights_path(options)
        if path is None:
            raise BackendError(f"backend {self.name!r} needs trained weights: pass --weights FILE.safetensors")
        self.device = torch.device(self.device_type)
        if self.device_type == "cpu":
            torch.set_num_threads(options.threads or usable_cores())
        self.model, self.card = load_weights(path, self.device)
        self.weights_id = f"{self.card.get('name', path.stem)}@{str(self.card.get('sha256', ''))[:12]}"
        self.dtype = self._dtype(options.precision)
        if self.device_type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if options.compile else self.model

    def _dtype(self, precision: str):  # -> torch.dtype
        import torch

        if precision == "fp32" or (precision == "auto" and self.device_type == "cpu"):
            return torch.float32
        if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return torch.float16

    def tile_size(self) -> int:
        import torch

        from smarthdr_cli.model.tiling import CPU_TILE, MAX_TILE, tile_size_for

        budget = self.options.max_memory
        if budget is None:
            if self.device_type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                budget = 0.7 * free
            else:
                budget = CPU_DEFAULT_MEMORY
        largest = CPU_TILE if self.device_type == "cpu" else MAX_TILE
        return tile_size_for(budget, self.model.config, self.dtype, largest)

    def infer(
        self,
        frames: list[np.ndarray],
        exposures: list[float],
        gamma: float,
        with_uncertainty: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ):
        """HDR (and uncertainty) as HxWx3 float32 arrays for three frames, reference in the middle;
        `progress(done, total)` after every tile."""
        from smarthdr_cli.model.inference import infer_frames

        return infer_frames(
            self.forward,
            frames,
            exposures,
            gamma,
            tile=self.tile_size(),
            window=self.model.config.window_size,
            device=self.device,
            dtype=self.dtype,
            with_uncertainty=with_uncertainty,
            channels_last=self.device_type == "cuda",
            progress=progress,
        )

    @staticmethod
    def select_frames(count: int, reference: int | None) -> tuple[list[int], int]:
        """Of a longer bracket the network takes three: the shortest, the reference, the longest."""
        return choose_three(count, reference)

    @staticmethod
    def refuses(bracket: Bracket) -> str | None:
        """Why the network cannot merge `bracket` (it was trained on short, reference, long)."""
        if len(bracket) != 3 or bracket.reference != 1:
            return f"the network merges three frames with the middle one as reference (got {len(bracket)} frames, reference {bracket.reference + 1})"
        return None

    def merge(self, bracket: Bracket, progress: Callable[[int, int], None] | None = None) -> MergeResult:
        """`progress(done, total)` after every tile of the network's tiled inference: a 3 MP merge
        on a CPU takes minutes (run_merge passes it to backends whose merge accepts it)."""
        problem = self.refuses(bracket)
        if problem:
            raise BackendError(f"backend {self.name!r}: {problem}; use --backend classic")
        hdr, sigma = self.infer(
            bracket.images,
            [float(t) for t in bracket.exposures],
            bracket.gamma,
            with_uncertainty=self.options.uncertainty,
            progress=progress,
        )
        notes = [f"{self.name}: weights {self.weights_id}, {str(self.dtype).replace('torch.', '')}"]
        return MergeResult(hdr=hdr, uncertainty=sigma, weights_id=self.weights_id, notes=notes)


class CpuBackend(TorchGFHDRBackend):
    name: ClassVar[str] = "cpu"
    summary: ClassVar[str] = "GFHDR network with uncertainty judge on the CPU (PyTorch)"
    device_type: ClassVar[str] = "cpu"


class CudaBackend(TorchGFHDRBackend):
    name: ClassVar[str] = "cuda"
    summary: ClassVar[str] = "GFHDR network with uncertainty judge on an NVIDIA GPU (PyTorch, autocast)"
    device_type: ClassVar[str] = "cuda"
    parallel_safe: ClassVar[bool] = False

    @classmethod
    def device_problem(cls) -> str | None:
        import torch

        if not torch.cuda.is_available():
            return "torch sees no GPU"
        return None
