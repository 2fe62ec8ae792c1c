import cv2
import numpy as np
import pytest

from smarthdr_cli import align
from smarthdr_cli.camera import render_bracket
from smarthdr_cli.data.synth.fixed_scene import procedural_radiance


def _frames(seed=4):
    radiance = procedural_radiance(240, 360, seed=seed)
    rng = np.random.default_rng(seed)
    texture = cv2.resize(rng.random((30, 45)).astype(np.float32), (360, 240), interpolation=cv2.INTER_CUBIC)
    radiance = radiance * (0.5 + texture)[:, :, None] * 0.6
    return [f.astype(np.float32) / 255 for f in render_bracket(radiance, [1.0, 4.0], noise=0.001)]


def _shift(image, dx, dy, angle=0.0):
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    matrix[:, 2] += [dx, dy]
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("mode", ["translation", "homography"])
def test_recovers_a_shift_across_exposures(mode):
    short, medium = _frames()
    moved = _shift(short, 6.0, -3.0)
    fit = align.estimate(medium, 4.0, moved, 1.0, mode)
    assert fit.applied, fit.reason
    back = align.warp(moved, fit)
    inner = (slice(20, -20), slice(20, -20))
    assert np.abs(back - short)[inner].mean() < 0.35 * np.abs(moved - short)[inner].mean()


def test_homography_handles_rotation_better_than_translation():
    short, medium = _frames(seed=9)
    moved = _shift(short, 4.0, 2.0, angle=0.8)
    inner = (slice(30, -30), slice(30, -30))
    errors = {}
    for mode in ("translation", "homography"):
        fit = align.estimate(medium, 4.0, moved, 1.0, mode)
        errors[mode] = np.abs(align.warp(moved, fit) - short)[inner].mean()
    assert errors["homography"] < 0.7 * errors["translation"]


def test_static_frames_stay_put():
    short, medium = _frames()
    for mode in ("translation", "homography"):
        fit = align.estimate(medium, 4.0, short, 1.0, mode)
        assert not fit.applied and fit.shift_px < align.MIN_SHIFT_PX


def test_implausible_or_failed_fits_fall_back_to_none():
    short, medium = _frames()
    unrelated = np.random.default_rng(0).random(short.shape).astype(np.float32) * 0.8 + 0.1
    fit = align.estimate(medium, 4.0, unrelated, 1.0, "homography")
    assert not fit.applied
    assert align.warp(unrelated, fit) is unrelated
    dark = np.zeros_like(short)
    fit = align.estimate(medium, 4.0, dark, 1.0, "translation")
    assert not fit.applied and "too few" in fit.reason
    far = _shift(short, 60.0, 0.0)  # 60 px on a 433 px diagonal: more than a hand-held wobble
    limit = align.MAX_SHIFT * np.hypot(*short.shape[:2])
    for mode in ("translation", "homography"):
        fit = align.estimate(medium, 4.0, far, 1.0, mode)
        assert not fit.applied or fit.shift_px <= limit  # never moved further than a plausible wobble


def test_moving_object_and_clipped_sky_do_not_tilt_a_static_bracket():
    from smarthdr_cli.data.synth.fixed_scene import moving_object

    radiance = procedural_radiance(384, 576, seed=7)
    scenes, _ = moving_object(radiance, 3, reference=1, seed=7)
    frames = [f.astype(np.float32) / 255 for f in render_bracket(scenes, [1.0, 4.0, 16.0], noise=0.002, seed=7)]
    for index, exposure in ((0, 1.0), (2, 16.0)):
        fit = align.estimate(frames[1], 4.0, frames[index], exposure, "homography")
        assert fit.shift_px < 1.5, fit.reason



def test_frames_fitted_together_get_the_fits_they_get_alone():
    """estimate_all prepares the reference once for all frames: each fit must be exactly the one
    estimate gives that frame alone (here: one frame moved, one in place, at a size the fit
    reduces)."""
    radiance = procedural_radiance(900, 1400, seed=5)
    frames = [f.astype(np.float32) / 255 for f in render_bracket(radiance, [1.0, 4.0, 16.0], noise=0.002, seed=5)]
    moving = [(_shift(frames[0], 5.0, -2.0, 0.2), 1.0), (frames[2], 16.0)]
    together = align.estimate_all(frames[1], 4.0, moving, "homography")
    assert together[0].applied and not together[1].applied, [fit.reason for fit in together]
    for (image, exposure), fit in zip(moving, together):
        alone = align.estimate(frames[1], 4.0, image, exposure, "homography")
        assert fit.reason == alone.reason
        np.testing.assert_array_equal(fit.matrix, alone.matrix)
