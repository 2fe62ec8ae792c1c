"""The mask normalisations keep the fractions they promise on known score distributions, the
per-level diagnostics say so, and `--k-weight` scales L^k in eq. 9 (issue 15)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from smarthdr_cli.app import app
from smarthdr_cli.errors import InputError
from smarthdr_cli.train.config import TrainConfig, resolve
from smarthdr_cli.train.masking import (
    HIST_BINS,
    MaskSettings,
    collect_stats,
    normalise,
    patch_means,
    rank,
    scene_mask,
    score_quantiles,
)
from smarthdr_cli.train.pseudo_label import describe_levels, level_diagnostics

SIZE, STRIDE = 8, 4


def scenes(kind: str, count: int = 4, shape: tuple[int, int] = (96, 128), seed: int = 0) -> list[np.ndarray]:
    """(H, W) float32 score maps of one distribution, each scene on its own scale (so a
    per-scene normalisation and a pass-wide one differ)."""
    rng = np.random.default_rng(seed)
    maps = []
    for number in range(count):
        scale = 1.0 + number
        if kind == "uniform":
            values = rng.random(shape)
        elif kind == "lognormal":  # the heavy tail that makes min-max inert
            values = rng.lognormal(-3.0, 1.0, shape)
        elif kind == "ties":  # 1000 distinct levels, so ~100 pixels share each score
            values = rng.integers(0, 1000, shape) / 1000.0
        else:
            raise ValueError(kind)
        maps.append((values * scale).astype(np.float32))
    return maps


def kept_per_level(maps: list[np.ndarray], settings: MaskSettings, **stats_options) -> tuple[float, float, list]:
    stats = collect_stats(maps, settings, **stats_options) if settings.normalisation != "scene" else None
    masks = [scene_mask(m, stats, settings) for m in maps]
    patches = sum(int(k.patch_keep.sum()) for k in masks) / sum(k.patch_keep.size for k in masks)
    pixels = sum(int(k.pixel.sum()) for k in masks) / sum(k.pixel.size for k in masks)
    return patches, pixels, masks


@pytest.mark.parametrize("kind", ["uniform", "lognormal", "ties"])
@pytest.mark.parametrize("tau", [0.4, 0.1])
def test_rank_drops_the_worst_tau_at_both_levels(kind: str, tau: float) -> None:
    settings = MaskSettings(size=SIZE, stride=STRIDE, tau_patch=tau, tau_pixel=tau, normalisation="rank")
    patches, pixels, masks = kept_per_level(scenes(kind), settings)
    assert patches == pytest.approx(1 - tau, abs=0.01) and pixels == pytest.approx(1 - tau, abs=0.01)
    # the quantiles are of the pass, not of each scene: the scenes on a larger scale lose more
    per_scene = [k.pixel.mean() for k in masks]
    assert per_scene[0] > per_scene[-1]


def test_rank_from_a_bounded_sample_keeps_the_promised_share_and_is_deterministic() -> None:
    maps = scenes("lognormal", count=6)
    settings = MaskSettings(size=SIZE, stride=STRIDE, normalisation="rank")
    stats = collect_stats(maps, settings, sample_size=20000)
    assert stats.pixel_sample.size == 20000 and stats.patch_sample.size == sum(len(patch_means(m, scene_mask(m, stats, settings).origins, SIZE)) for m in maps)
    assert np.all(np.diff(stats.pixel_sample) >= 0)
    _, pixels, _ = kept_per_level(maps, settings, sample_size=20000)
    assert pixels == pytest.approx(0.6, abs=0.01)
    again = collect_stats(maps, settings, sample_size=20000)
    np.testing.assert_array_equal(again.pixel_sample, stats.pixel_sample)  # the same pass masks the same way


def test_rank_quantile_is_the_share_strictly_below_and_ties_across_the_cut_are_kept_whole() -> None:
    sample = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], dtype=np.float32)
    np.testing.assert_allclose(rank(np.array([0.0, 0.45, 0.9, 2.0], dtype=np.float32), sample), [0.0, 0.5, 0.9, 1.0])
    settings = MaskSettings(size=1, stride=1, patch=False, normalisation="rank")
    one_scene = sample.reshape(1, 10)
    mask = scene_mask(one_scene, collect_stats([one_scene], settings), settings)
    np.testing.assert_array_equal(mask.pixel[0], [True] * 6 + [False] * 4)  # quantile 0.6 is not < 0.6
    tied = np.zeros((10, 10), dtype=np.float32)
    tied[7:] = np.linspace(0.5, 1.0, 30).reshape(3, 10)  # 70% share the lowest score
    mask = scene_mask(tied, collect_stats([tied], settings), settings)
    assert mask.pixel.mean() == pytest.approx(0.7)  # at most tau is dropped
    flat = np.full((10, 10), 0.3, dtype=np.float32)
    assert scene_mask(flat, collect_stats([flat], settings), settings).pixel.all()  # like min-max on a flat range
    with pytest.raises(ValueError, match="rank"):
        scene_mask(flat, None, settings)
    with pytest.raises(ValueError, match="sample"):  # ranges without a sample: stats of another normalisation
        scene_mask(flat, collect_stats([flat], MaskSettings(size=1, stride=1, patch=False)), settings)


def test_global_min_max_on_a_heavy_tail_keeps_what_min_max_implies() -> None:
    maps = scenes("lognormal")
    settings = MaskSettings(size=SIZE, stride=STRIDE)
    patches, pixels, masks = kept_per_level(maps, settings)
    lo, hi = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
    expected = np.mean(np.concatenate([m.ravel() for m in maps]) < lo + 0.4 * (hi - lo))
    assert pixels == pytest.approx(expected, abs=1e-6)
    assert pixels > 0.97  # the inert mask of the issue: tau 0.4 keeps almost every pixel
    means = [patch_means(m, k.origins, SIZE) for m, k in zip(maps, masks)]
    low, high = min(x.min() for x in means), max(x.max() for x in means)
    assert patches == pytest.approx(np.mean(np.concatenate(means) < low + 0.4 * (high - low)), abs=1e-9)


def test_scene_normalisation_keeps_per_scene() -> None:
    maps = scenes("lognormal")
    _, _, masks = kept_per_level(maps, MaskSettings(size=SIZE, stride=STRIDE, normalisation="scene"))
    for scores, mask in zip(maps, masks):
        lo, hi = float(scores.min()), float(scores.max())
        assert mask.pixel.mean() == pytest.approx(np.mean(scores < lo + 0.4 * (hi - lo)), abs=1e-6)
        means = patch_means(scores, mask.origins, SIZE)
        assert mask.patch_keep.mean() == pytest.approx(np.mean(normalise(means, means.min(), means.max()) < 0.4))


@pytest.mark.parametrize("normalisation", ["global", "scene", "rank"])
def test_diagnostics_report_kept_shares_and_normalised_score_quantiles(normalisation: str) -> None:
    maps = scenes("lognormal")
    settings = MaskSettings(size=SIZE, stride=STRIDE, normalisation=normalisation)
    patches, pixels, masks = kept_per_level(maps, settings)
    info = level_diagnostics([SimpleNamespace(mask=m) for m in masks])  # type: ignore[list-item]
    assert info["patch_kept_fraction"] == pytest.approx(patches) and info["pixel_kept_fraction"] == pytest.approx(pixels)
    lo, hi = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
    if normalisation == "global":
        normalised = np.concatenate([normalise(m.ravel(), lo, hi) for m in maps])
    elif normalisation == "scene":
        normalised = np.concatenate([normalise(m.ravel(), float(m.min()), float(m.max())) for m in maps])
    else:
        normalised = rank(np.concatenate([m.ravel() for m in maps]), np.sort(np.concatenate([m.ravel() for m in maps])))
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        assert info[f"pixel_score_{name}"] == pytest.approx(np.quantile(normalised, q), abs=2.0 / HIST_BINS)
    if normalisation == "rank":
        assert info["pixel_score_p50"] == pytest.approx(0.5, abs=0.01) and info["patch_score_p90"] == pytest.approx(0.9, abs=0.01)
    line = describe_levels(info)
    assert "patch level kept" in line and "pixel level kept" in line and "p50/p90/p99" in line
    # a level that is off reports no quantiles; masks read back from disk have no histograms
    off = scene_mask(maps[0], collect_stats(maps, settings) if normalisation != "scene" else None, MaskSettings(size=SIZE, stride=STRIDE, patch=False, normalisation=normalisation))
    info = level_diagnostics([SimpleNamespace(mask=off)])  # type: ignore[list-item]
    assert "patch_score_p50" not in info and "pixel_score_p50" in info and info["patch_kept_fraction"] == 1.0
    assert score_quantiles([]) is None


def test_train_config_takes_rank_and_k_weight_and_old_configs_default_them(tmp_path: Path) -> None:
    from smarthdr_cli.train.checkpoint import resumed_config

    config = resolve(None, {"normalisation": "rank", "k_weight": 0})
    assert config.normalisation == "rank" and config.k_weight == 0
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(InputError, match="k_weight"):
            TrainConfig(k_weight=bad)
    with pytest.raises(InputError, match="normalisation"):
        TrainConfig(normalisation="quantile")
    old = TrainConfig(model="tiny").to_dict()
    del old["k_weight"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert resumed_config(tmp_path).k_weight == 1.0 and resumed_config(tmp_path).normalisation == "global"


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_k_weight_scales_the_uncertainty_loss_in_the_total(weight: float) -> None:
    from smarthdr_cli.train.student import Objective

    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 8, 8, requires_grad=True), torch.rand(2, 3, 8, 8)
    sigma = torch.rand(2, 3, 8, 8).clamp(0.05, 0.95).requires_grad_(True)
    parts = Objective(TrainConfig(k_weight=weight, perceptual=False), None)(pred, sigma, target, None)
    assert torch.isfinite(parts["k"]) and parts["k"] != 0  # computed and logged at every weight
    assert float(parts["total"].detach()) == pytest.approx(float((parts["r"] + weight * parts["k"]).detach()), rel=1e-6)
    parts["total"].backward()
    assert (sigma.grad is None or not sigma.grad.any()) == (weight == 0)  # L^k is sigma's only way into the loss


def test_k_weight_zero_keeps_a_non_finite_uncertainty_loss_out() -> None:
    from smarthdr_cli.train.student import Objective

    pred, target = torch.full((1, 3, 4, 4), float("inf")), torch.zeros(1, 3, 4, 4)
    sigma = torch.full((1, 3, 4, 4), 0.5)
    parts = Objective(TrainConfig(k_weight=0.0, perceptual=False, k_domain="linear"), None)(pred, sigma, target, None)
    assert not torch.isfinite(parts["k"]) and torch.equal(parts["total"], parts["r"])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from smarthdr_cli.data.synth import SynthSettings, generate

    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, SynthSettings(seed=2, height=64, width=96, split={"labeled": 1, "unlabeled": 3}))
    return root


TINY = ["--model", "tiny", "--no-perceptual", "--batch", "2", "--patch", "32", "--stride", "16", "--steps-per-epoch", "1"]


def test_cli_train_takes_rank_and_k_weight_and_records_the_diagnostics(dataset: Path, tmp_path: Path, runner) -> None:
    run = tmp_path / "run"
    args = ["train", "--labeled", str(dataset / "labeled"), "--unlabeled", str(dataset / "unlabeled"), "-o", str(run),
            "--cache-dir", str(tmp_path / "cache"), "--warmup-epochs", "0", "--semi-epochs", "1", *TINY,
            "--normalisation", "rank", "--k-weight", "0.5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["normalisation"] == "rank" and saved["k_weight"] == 0.5
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["stage"] == "semi"
    # 3 scenes of 15 patches: rank with tau 0.4 keeps 27 of 45 (ties in the judge's sigma aside)
    assert record["patch_kept_fraction"] == pytest.approx(0.6, abs=0.05)
    assert record["pixel_kept_fraction"] == pytest.approx(0.6, abs=0.05)
    for key in ("patch_score_p50", "patch_score_p90", "patch_score_p99", "pixel_score_p50", "pixel_score_p90", "pixel_score_p99"):
        assert 0.0 <= record[key] <= 1.0, key
    assert "patch level kept" in result.output and "p50/p90/p99" in result.output


@pytest.mark.parametrize(("flag", "value", "message"), [("--k-weight", "-1", "k_weight"), ("--normalisation", "quantile", "normalisation")])
def test_cli_train_rejects_bad_values_in_one_line(dataset: Path, tmp_path: Path, runner, flag: str, value: str, message: str) -> None:
    args = ["train", "--labeled", str(dataset / "labeled"), "--unlabeled", str(dataset / "unlabeled"), "-o", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), *TINY, flag, value]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.output, result.output
    assert not (tmp_path / "run").exists()
