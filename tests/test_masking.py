"""Bi-level uncertain area masking (eqs. 11, 12) on hand-made maps, and the SMAE/APSS scorer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smarthdr_cli.data.grid import grid_origins
from smarthdr_cli.errors import InputError
from smarthdr_cli.preprocess import gamma_correct
from smarthdr_cli.train.masking import (
    MaskSettings,
    MaskStats,
    collect_stats,
    normalise,
    patch_means,
    pixel_scores,
    reference_disagreement,
    scene_mask,
)

SMALL = MaskSettings(size=8, stride=4)


def square_map(height: int = 32, width: int = 40, low: float = 0.1, high: float = 0.9) -> np.ndarray:
    """An (H, W, 3) sigma map, `low` everywhere except an 8 x 8 square of `high` at (8, 12)."""
    sigma = np.full((height, width, 3), low, dtype=np.float32)
    sigma[8:16, 12:20] = high
    return sigma


def touches(origins: np.ndarray, size: int, top: int, left: int, extent: int) -> np.ndarray:
    rows = (origins[:, 0] < top + extent) & (origins[:, 0] + size > top)
    return rows & (origins[:, 1] < left + extent) & (origins[:, 1] + size > left)


def test_high_uncertainty_square_is_dropped_at_both_levels():
    scores = pixel_scores(square_map())
    mask = scene_mask(scores, collect_stats([scores], SMALL), SMALL)
    np.testing.assert_array_equal(mask.origins, grid_origins(32, 40, 8, 4))
    expected_pixels = np.ones((32, 40), dtype=bool)
    expected_pixels[8:16, 12:20] = False
    np.testing.assert_array_equal(mask.pixel, expected_pixels)
    # patch means: 0.1 + 0.8 * overlap / 64, normalised by the full-overlap patch (0.9): S < 0.4 iff overlap < 0.4 * 64
    overlap = np.array([
        max(0, min(t + 8, 16) - max(t, 8)) * max(0, min(left + 8, 20) - max(left, 12)) for t, left in mask.origins
    ])
    np.testing.assert_array_equal(mask.patch_keep, overlap < 0.4 * 64)
    assert not mask.patch_keep[touches(mask.origins, 8, 8, 12, 8) & (overlap >= 32)].any()
    assert mask.patch_keep[~touches(mask.origins, 8, 8, 12, 8)].all()
    assert mask.kept_fraction == pytest.approx((32 * 40 - 64) / (32 * 40))


def test_thresholds_are_strict():
    scores = np.array([[0.0, 0.5, 1.0, 0.49]], dtype=np.float32).repeat(2, axis=0)  # 0.5: exact in binary
    pixel = MaskSettings(patch=False, size=1, stride=1, tau_pixel=0.5, normalisation="scene")
    np.testing.assert_array_equal(scene_mask(scores, None, pixel).pixel[0], [True, False, False, True])  # S == tau dropped
    patch = MaskSettings(pixel=False, size=1, stride=1, tau_patch=0.5, normalisation="scene")
    np.testing.assert_array_equal(scene_mask(scores, None, patch).patch_keep.reshape(2, 4)[0], [True, False, False, True])


def test_disabled_levels_keep_everything():
    scores = pixel_scores(square_map())
    stats = collect_stats([scores], SMALL)
    neither = scene_mask(scores, stats, MaskSettings(patch=False, pixel=False, size=8, stride=4))
    assert neither.patch_keep.all() and neither.pixel.all() and neither.kept_fraction == 1.0
    only_pixel = scene_mask(scores, stats, MaskSettings(patch=False, size=8, stride=4))
    assert only_pixel.patch_keep.all() and not only_pixel.pixel.all()
    only_patch = scene_mask(scores, stats, MaskSettings(pixel=False, size=8, stride=4))
    assert only_patch.pixel.all() and not only_patch.patch_keep.all()


def test_kept_fraction_counts_pixels_in_a_kept_patch_and_kept_by_the_pixel_mask():
    sigma = np.full((32, 40), 0.1, dtype=np.float32)
    sigma[8:24, 12:28] = 0.9  # big enough that no kept 8 px patch reaches its middle
    sigma[2, 2] = 0.5  # a pixel dropped at pixel level only
    for settings in (MaskSettings(pixel=False, size=8, stride=4), SMALL):
        mask = scene_mask(sigma, collect_stats([sigma], settings), settings)
        covered = np.zeros(sigma.shape, dtype=bool)
        for top, left in mask.origins[mask.patch_keep]:
            covered[top:top + 8, left:left + 8] = True
        assert mask.kept_fraction == pytest.approx((covered & mask.pixel).mean())
        assert not covered[16, 20] and covered[2, 2] and mask.pixel[2, 2] != settings.pixel
    assert mask.kept_fraction < covered.mean() < 1.0


def test_global_and_scene_normalisation_differ_on_maps_of_different_ranges():
    calm = pixel_scores(square_map(low=0.10, high=0.20))  # a good pseudo label with a mild blemish
    noisy = pixel_scores(square_map(low=0.10, high=0.90))
    stats = collect_stats([calm, noisy], SMALL)
    assert (stats.pixel_min, stats.pixel_max) == pytest.approx((0.1, 0.9))
    global_calm = scene_mask(calm, stats, SMALL)
    assert global_calm.pixel.all() and global_calm.patch_keep.all()  # 0.2 is low on the pass's scale
    scene = MaskSettings(size=8, stride=4, normalisation="scene")
    scene_calm = scene_mask(calm, None, scene)
    assert not scene_calm.pixel[8:16, 12:20].any() and not scene_calm.patch_keep.all()  # its own worst part goes
    np.testing.assert_array_equal(scene_mask(noisy, stats, SMALL).pixel, scene_mask(noisy, None, scene).pixel)
    with pytest.raises(ValueError, match="collect_stats"):
        scene_mask(calm, None, SMALL)


def test_flat_maps_keep_everything_and_normalise_clips():
    flat = np.full((16, 16), 0.3, dtype=np.float32)
    mask = scene_mask(flat, collect_stats([flat], SMALL), SMALL)
    assert mask.pixel.all() and mask.patch_keep.all() and mask.kept_fraction == 1.0
    np.testing.assert_array_equal(normalise(np.array([0.0, 0.5, 1.0, 2.0]), 0.5, 1.5), [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(normalise(np.array([3.0, 4.0]), 1.0, 1.0), [0.0, 0.0])


def test_patch_means_match_a_brute_force_loop():
    rng = np.random.default_rng(0)
    scores = rng.random((23, 31)).astype(np.float32)
    for size, stride in ((5, 3), (8, 4), (23, 1)):
        origins = grid_origins(23, 31, size, stride)
        brute = [scores[t:t + size, left:left + size].mean(dtype=np.float64) for t, left in origins]
        np.testing.assert_allclose(patch_means(scores, origins, size), brute, rtol=1e-12, atol=1e-12)


def test_collect_stats_over_memmaps_equals_in_memory(tmp_path: Path):
    rng = np.random.default_rng(1)
    maps = [rng.random((20 + 4 * i, 24, 3)).astype(np.float16) for i in range(3)]
    for i, sigma in enumerate(maps):
        np.save(tmp_path / f"{i}.npy", sigma)
    mapped = (pixel_scores(np.load(tmp_path / f"{i}.npy", mmap_mode="r")) for i in range(3))
    in_memory = collect_stats([pixel_scores(m.astype(np.float32)) for m in maps], SMALL)
    assert collect_stats(mapped, SMALL) == in_memory
    with pytest.raises(InputError):
        collect_stats([], SMALL)


def test_pixel_scores_shapes_and_non_finite_values():
    sigma = np.zeros((2, 2, 3), dtype=np.float32)
    sigma[0, 0] = (0.3, 0.6, 0.9)
    sigma[1, 1, 2] = np.nan
    scores = pixel_scores(sigma)
    assert scores.dtype == np.float32 and scores.shape == (2, 2)
    assert scores[0, 0] == pytest.approx(0.6) and scores[1, 1] == 1.0  # NaN counts as maximally uncertain
    np.testing.assert_array_equal(pixel_scores(scores), scores)
    with pytest.raises(ValueError):
        pixel_scores(np.zeros((3, 2, 2)))


def test_settings_are_validated():
    for bad in ({"tau_patch": 0.0}, {"tau_pixel": 1.5}, {"size": 0}, {"stride": -1}, {"normalisation": "local"}):
        with pytest.raises(InputError):
            MaskSettings(**bad)
    assert MaskStats(0.0, 1.0, 0.0, 1.0).pixel_max == 1.0


def test_reference_disagreement_is_zero_for_the_linearised_reference_and_ignores_saturation():
    rng = np.random.default_rng(2)
    reference = rng.uniform(0.05, 0.9, size=(12, 16, 3)).astype(np.float32)
    reference[2:5, 3:7, 1] = 0.97  # saturated in one channel
    exposure = 4.0
    linear = gamma_correct(reference, np.float32(exposure), 2.2)
    np.testing.assert_allclose(reference_disagreement(linear, reference, exposure), 0.0, atol=1e-6)
    pseudo = linear.copy()
    pseudo[2:5, 3:7] += 0.2  # differs only where the reference is saturated ...
    pseudo[8:10, 10:14] *= 3.0  # ... and in an unsaturated region
    score = reference_disagreement(pseudo, reference, exposure)
    assert score.dtype == np.float32 and score.shape == (12, 16)
    assert (score[2:5, 3:7] == 0.0).all()
    assert (score[8:10, 10:14] > 0.05).all()
    outside = np.ones((12, 16), dtype=bool)
    outside[8:10, 10:14] = False
    np.testing.assert_allclose(score[outside], 0.0, atol=1e-6)
    mask = scene_mask(score, None, MaskSettings(size=4, stride=2, normalisation="scene"))  # drop-in for pixel_scores
    assert not mask.pixel[8:10, 10:14].any() and mask.pixel[outside].all()
