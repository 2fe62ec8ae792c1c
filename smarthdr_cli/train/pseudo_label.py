"""The teacher's step: pseudo HDR GTs, uncertainty scores and bi-level masks for unlabeled scenes.

Used after every epoch of the semi-supervised stage (`train`) and on its own (`pseudo-label`).
Two passes keep memory bounded for large unlabeled sets: pass 1 runs the teacher on each scene and
writes its pseudo label (float16) and score map to a work folder; pass 2 normalises the scores
over all scenes ("global", the seed's choice, or "rank": quantiles from a bounded sample) and
derives each scene's patch and pixel masks.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from smarthdr_cli.data.patches import CachedScene
from smarthdr_cli.io.output import atomic_output
from smarthdr_cli.model.inference import infer_frames
from smarthdr_cli.train import augment
from smarthdr_cli.train.dataset import PseudoLabels, rng_for
from smarthdr_cli.train.masking import (
    MaskSettings,
    SceneMask,
    collect_stats,
    pixel_scores,
    reference_disagreement,
    scene_mask,
    score_quantiles,
)

CPU_TEACHER_TILE, GPU_TEACHER_TILE = 256, 768


@dataclass
class PseudoLabeledScene:
    """One scene's pseudo label on disk (memory-mapped) and its masks."""

    scene: CachedScene
    labels: PseudoLabels
    mask: SceneMask
    uncertainty: np.ndarray  # (H, W, 3) float16 memmap: the judge's sigma (whichever scorer made the masks)

    @property
    def name(self) -> str:
        return self.scene.name


def _to_frames(images: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.ascontiguousarray(i.transpose(2, 0, 1)) for i in images]))


def teacher_predict(
    model: torch.nn.Module,
    scene: CachedScene,
    *,
    gamma: float,
    device: torch.device,
    aug: augment.Augmentation = augment.IDENTITY,
    dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's HDR and sigma (HxWx3 float32) on a (weakly augmented, then restored) scene."""
    frames = [scene.frame(i) for i in range(3)]
    if not aug.is_identity:
        moved = augment.apply({"frames": _to_frames(frames)}, aug)["frames"]
        frames = [f.permute(1, 2, 0).numpy() for f in moved]
    tile = GPU_TEACHER_TILE if device.type == "cuda" else CPU_TEACHER_TILE
    config = model.config  # type: ignore[attr-defined]
    hdr, sigma = infer_frames(
        model, frames, [float(t) for t in scene.exposures], gamma, tile=tile, window=config.window_size, device=device, dtype=dtype
    )
    assert sigma is not None
    if not aug.is_identity:
        back = augment.apply({"gt": torch.from_numpy(hdr.transpose(2, 0, 1)), "uncertainty": torch.from_numpy(sigma.transpose(2, 0, 1))}, aug.inverse())
        hdr, sigma = (back[k].permute(1, 2, 0).numpy() for k in ("gt", "uncertainty"))
    return hdr, sigma


def score(hdr: np.ndarray, sigma: np.ndarray, scene: CachedScene, scorer: str, gamma: float) -> np.ndarray:
    """(H, W) score map: the judge's RGB-mean sigma, or SMAE-style disagreement with the reference."""
    if scorer == "judge":
        return pixel_scores(sigma)
    return reference_disagreement(hdr, scene.frame(1), float(scene.exposures[1]), gamma)


def _save(path: Path, array: np.ndarray) -> None:
    """np.save to a new file renamed into place: readers of last epoch's memory map keep their copy."""
    with atomic_output(path, overwrite=True) as temp:
        np.save(temp, array)


def label_scenes(
    model: torch.nn.Module,
    scenes: Sequence[CachedScene],
    work: Path,
    settings: MaskSettings,
    *,
    scorer: str = "judge",
    gamma: float = 2.2,
    device: torch.device = torch.device("cpu"),
    seed: int = 0,
    epoch: int = 0,
    weak_aug: bool = True,
    rank: int = 0,
    world: int = 1,
    barrier: Callable[[], None] = lambda: None,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[PseudoLabeledScene]:
    """Pseudo-label every scene (this rank's share in pass 1), then mask all of them (pass 2)."""
    work.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    for number, scene in enumerate(scenes):
        if number % world != rank:
            continue
        aug = augment.draw_weak(rng_for(seed, epoch, 2, number)) if weak_aug else augment.IDENTITY
        hdr, sigma = teacher_predict(model, scene, gamma=gamma, device=device, aug=aug)
        _save(work / f"{number:05d}.hdr.npy", hdr.astype(np.float16))
        _save(work / f"{number:05d}.sigma.npy", sigma.astype(np.float16))
        _save(work / f"{number:05d}.score.npy", score(hdr, sigma, scene, scorer, gamma).astype(np.float32))
        if progress:
            progress(number + 1, len(scenes), scene.name)
    model.train(was_training)
    barrier()
    scores = [np.load(work / f"{n:05d}.score.npy", mmap_mode="r") for n in range(len(scenes))]
    stats = collect_stats(scores, settings) if settings.normalisation != "scene" else None  # global, rank: over the pass
    result = []
    for number, (scene, scene_scores) in enumerate(zip(scenes, scores)):
        mask = scene_mask(np.asarray(scene_scores), stats, settings)
        hdr = np.load(work / f"{number:05d}.hdr.npy", mmap_mode="r")
        sigma = np.load(work / f"{number:05d}.sigma.npy", mmap_mode="r")
        result.append(PseudoLabeledScene(scene, PseudoLabels(hdr, mask.pixel), mask, sigma))
    return result


QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def level_diagnostics(pseudo_labeled: Sequence[PseudoLabeledScene]) -> dict[str, float]:
    """What each mask level kept on its own and where its normalised scores lie, flat for
    metrics.jsonl: `patch_kept_fraction` (of patches), `pixel_kept_fraction` (of pixels) and
    `{patch,pixel}_score_{p50,p90,p99}` (absent for a level that is off or read from disk).

    They say whether a threshold bites: under global min-max a p99 below tau keeps ~everything."""
    patches = sum(len(s.mask.patch_keep) for s in pseudo_labeled)
    pixels = sum(s.mask.pixel.size for s in pseudo_labeled)
    result = {
        "patch_kept_fraction": sum(int(np.count_nonzero(s.mask.patch_keep)) for s in pseudo_labeled) / max(patches, 1),
        "pixel_kept_fraction": sum(int(np.count_nonzero(s.mask.pixel)) for s in pseudo_labeled) / max(pixels, 1),
    }
    for level in ("patch", "pixel"):
        histograms = [h for s in pseudo_labeled if (h := getattr(s.mask, f"{level}_hist")) is not None]
        values = score_quantiles(histograms, tuple(QUANTILES.values())) if len(histograms) == len(pseudo_labeled) else None
        if values is not None:
            result.update({f"{level}_score_{name}": round(v, 4) for name, v in zip(QUANTILES, values)})
    return result


def describe_levels(info: Mapping[str, Any]) -> str:
    """One line of `level_diagnostics` for the progress output."""
    parts = []
    for level, what in (("patch", "patches"), ("pixel", "pixels")):
        text = f"{level} level kept {100 * float(info[f'{level}_kept_fraction']):.1f}% of {what}"
        if f"{level}_score_p50" in info:
            text += " (normalised score p50/p90/p99 " + "/".join(f"{float(info[f'{level}_score_{q}']):.3f}" for q in QUANTILES) + ")"
        parts.append(text)
    return "; ".join(parts)


def summary(pseudo_labeled: Sequence[PseudoLabeledScene], settings: MaskSettings) -> dict[str, object]:
    """Kept fractions per scene and overall (pixel-weighted), per level with the normalised-score
    quantiles (`level_diagnostics`), for logs and `summary.json`."""
    pixels = [s.mask.pixel.size for s in pseudo_labeled]
    kept = [s.mask.kept_fraction for s in pseudo_labeled]
    overall = float(np.dot(pixels, kept) / max(sum(pixels), 1))
    return {
        "kept_fraction": overall,
        "patches_kept": int(sum(int(s.mask.patch_keep.sum()) for s in pseudo_labeled)),
        "patches": int(sum(len(s.mask.patch_keep) for s in pseudo_labeled)),
        **level_diagnostics(pseudo_labeled),
        "mask": {k: getattr(settings, k) for k in ("patch", "pixel", "tau_patch", "tau_pixel", "size", "stride", "normalisation")},
        "scenes": [
            {"name": s.name, "kept_fraction": s.mask.kept_fraction, "patches_kept": int(s.mask.patch_keep.sum()), "patches": len(s.mask.patch_keep)}
            for s in pseudo_labeled
        ],
    }


def write_summary(path: Path, data: dict[str, object]) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")
