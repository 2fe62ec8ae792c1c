"""`smarthdr evaluate`: any backend on any labeled test folder, with the field's four metrics.

Conventions (those of Kalantari 2017 and the methods compared in the seed paper): prediction and
ground truth clipped to [0, 1] in the frames' units, full images (no border crop); PSNR-l on the
linear values; PSNR-mu after the mu-law of eq. 4 (mu = 5000); SSIM as Wang et al. 2004 and their
MATLAB code (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, data range 1), averaged over the
three colour channels, on the linear (SSIM-l) and mu-law (SSIM-mu) images. Runtime is the
backend's merge of one scene, reading and metrics excluded.

Every evaluation also scores the floor any merge must clear: the reference frame alone,
linearised (`x^2.2 / t` of the middle frame, as read), reported as `reference` beside the
backend's figures. A merge below it has made the image worse than not merging.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from smarthdr_backends import base
from smarthdr_cli.bracket import Bracket
from smarthdr_cli.data.layouts import ReadSettings, SceneSource, discover_scenes, read_scene
from smarthdr_cli.errors import OutputError
from smarthdr_cli.io.hdr import save_hdr
from smarthdr_cli.io.output import atomic_outputs, check_not_inputs, check_output_path
from smarthdr_cli.io.provenance import save_preview
from smarthdr_cli.metrics import psnr_l, psnr_mu, ssim_l, ssim_mu
from smarthdr_cli.preprocess import gamma_correct

Progress = Callable[[int, int, str], None]


@dataclass
class EvaluateSettings:
    test_dir: Path
    backend: str = "auto"
    weights: Path | None = None
    save_dir: Path | None = None
    read: ReadSettings = field(default_factory=ReadSettings)
    threads: int | None = None
    precision: str = "auto"
    overwrite: bool = False


def scene_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The four metrics of one prediction against its ground truth."""
    return {
        "psnr_mu": psnr_mu(prediction, truth),
        "psnr_l": psnr_l(prediction, truth),
        "ssim_mu": ssim_mu(prediction, truth),
        "ssim_l": ssim_l(prediction, truth),
    }


def _saved(folder: Path, source: SceneSource) -> list[Path]:
    return [folder / f"{source.name}.exr", folder / f"{source.name}.jpg"]


def _check_saves(folder: Path, sources: list[SceneSource], overwrite: bool) -> None:
    """Before any merge: every prediction's name is free (or --overwrite) and none is a scene's file."""
    inputs = [p for s in sources for p in (*s.frames, *([s.gt] if s.gt else []))]
    for source in sources:
        check_not_inputs(_saved(folder, source), inputs)
        for path in _saved(folder, source):
            check_output_path(path, overwrite)


def _save(folder: Path, source: SceneSource, hdr: np.ndarray, overwrite: bool) -> None:
    """The prediction and its mu-law preview, as one set (see io.output.atomic_outputs)."""
    with atomic_outputs(_saved(folder, source), overwrite) as (exr, jpg):
        save_hdr(exr, hdr, kind=".exr")
        save_preview(jpg, hdr, "mu", ".jpg")


def evaluate(settings: EvaluateSettings, progress: Progress | None = None, note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Per-scene and mean metrics, in the shape `--json` prints."""
    sources = discover_scenes(settings.test_dir, "required")
    if settings.save_dir is not None and not settings.save_dir.is_dir():
        raise OutputError(f"{settings.save_dir}: --save-dir must be an existing folder")
    if settings.save_dir is not None:
        _check_saves(settings.save_dir, sources, settings.overwrite)
    options = base.BackendOptions(weights=settings.weights, threads=settings.threads, precision=settings.precision)
    backend, passed = base.create(settings.backend, options)
    for reason in passed:
        (note or (lambda _: None))(f"backend {reason}")
    rows = []
    for number, source in enumerate(sources):
        scene = read_scene(source, settings.read)
        bracket = Bracket(images=scene.frames, exposures=scene.exposures, reference=1, names=[p.name for p in source.frames], bits=scene.bits, warped=scene.warped)
        began = time.perf_counter()
        result = backend.merge(bracket)
        seconds = time.perf_counter() - began
        assert scene.gt is not None
        floor = np.minimum(gamma_correct(scene.frames[1], scene.exposures[1]), 1.0)
        rows.append({
            "name": source.name, **scene_metrics(result.hdr, scene.gt), "seconds": round(seconds, 3),
            "reference": scene_metrics(floor, scene.gt),
        })
        if settings.save_dir is not None:
            _save(settings.save_dir, source, result.hdr, settings.overwrite)
        if progress:
            progress(number + 1, len(sources), source.name)
    keys = ("psnr_mu", "psnr_l", "ssim_mu", "ssim_l")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    floor = {k: float(np.mean([r["reference"][k] for r in rows])) for k in keys}
    weights_id = getattr(backend, "weights_id", None)
    return {"scenes": rows, "mean": mean, "reference": floor, "backend": backend.name, "weights": weights_id}
