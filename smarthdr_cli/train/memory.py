"""How much memory a training step needs, measured on the run's own network before its first step.

A step's memory is almost all activations that autograd keeps for the backward pass, linear in
the patches a step carries (a 9-scene run of the tiny network peaked at 2.1 GB with a batch of 64
and 0.65 GB with 8: 26 MB per 64 px patch on top of 0.45 GB of code, data and model). Users meet
it as an out-of-memory kill hours into a run, or as a machine that swaps, so `train` measures
what one patch keeps (a forward pass of one patch through the student and its loss, under
saved-tensor hooks), scales it to the step and says it with the plan, with a warning when it
would not fit.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from smarthdr_cli.machine import available_memory

# Peak resident growth per patch over the bytes autograd saves per patch, measured on the CPU
# with 64 px patches (bench/README.md, "memory per step"): tiny 2.3, small 2.3, full 2.1. The
# backward pass holds gradients of the activations beside the saved tensors, hence about 2x.
PEAK_PER_SAVED = 2.2
PROBE_MAX = 64  # probe patches larger than this at this size and scale by the pixels
WARN_SHARE = 0.8  # warn when a step would take more than this share of the memory available


def saved_bytes_per_patch(network: nn.Module, loss: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], patch: int,
                          device: torch.device, with_uncertainty: bool, amp_dtype: torch.dtype | None = None) -> float:
    """Bytes autograd keeps for the backward pass of one `patch` px patch through `network` and
    `loss(pred, sigma)`, parameters excepted. Leaves every random stream as it found it."""
    probe = min(patch, PROBE_MAX)
    parameters = {p.untyped_storage().data_ptr() for p in network.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        inputs = [torch.rand(1, 6, probe, probe, device=device) for _ in range(3)]
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                pred, sigma = network(*inputs, with_uncertainty=with_uncertainty)
            value = loss(pred.float(), sigma.float() if sigma is not None else None)
        del value, pred, sigma
    return sum(kept.values()) * (patch / probe) ** 2


def available_bytes(device: torch.device) -> int | None:
    """Memory a step can still take: free GPU memory, or the kernel's MemAvailable; None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return available_memory()


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def describe_step_memory(per_patch_saved: float, patches: int, patch: int, available: int | None, unchecked_per_patch: float | None = None) -> list[str]:
    """The plan's memory line and, when the step would not fit, a warning that says what to change.

    `unchecked_per_patch`: under --checkpoint-activations, what a patch keeps without it. The
    step then needs more than what is kept between the recomputed layers (the recomputation of
    one layer at a time comes on top: 2x on the tiny network) and less than that, so both are said.
    """
    step = PEAK_PER_SAVED * per_patch_saved * patches
    size = f"a step of {patches} patches of {patch} px"
    if unchecked_per_patch is None:
        line = (f"memory: {size} keeps about {_gib(step)} of activations for its backward pass "
                f"({_gib(PEAK_PER_SAVED * per_patch_saved)} per patch, measured on this network)")
    else:
        line = (f"memory: {size} needs more than the {_gib(step)} kept between its recomputed layers (--checkpoint-activations) "
                f"and less than the {_gib(PEAK_PER_SAVED * unchecked_per_patch * patches)} it would keep without")
    if available is not None:
        line += f"; {_gib(available)} available"
    lines = [line]
    if available is not None and step > WARN_SHARE * available:
        fixes = "a smaller --batch or --patch" + ("" if unchecked_per_patch is not None else ", or --checkpoint-activations (less memory, about a third more time)")
        lines.append(f"warning: a step needs at least {_gib(step)} and {_gib(available)} is available: the run would swap or be killed; use {fixes}")
    return lines
