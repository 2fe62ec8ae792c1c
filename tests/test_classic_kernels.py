"""The compiled kernels of `classic` against a direct numpy evaluation of the same merge.

The numpy form below is the merge as it was written before the kernels (whole-band array
expressions): the kernels must give the same image, and the same keep maps, to float32 rounding.
"""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

import smarthdr_backends.classic as classic
from smarthdr_backends import classic_kernels as kernels
from smarthdr_backends.classic import ClassicBackend
from smarthdr_cli.bracket import Bracket, channel_max
from smarthdr_cli.camera import render_bracket
from smarthdr_cli.data.synth.fixed_scene import procedural_radiance


def _numpy_consistency(images, reference, noises, floors, tables):
    box = np.ones((3, 3), np.uint8)
    shape = images[0].shape[:2]
    disagree = [np.zeros(shape, dtype=bool) for _ in images]

    def interval(index, channel):
        plane = np.ascontiguousarray(images[index][..., channel])
        bounds = tables[index].bounds[channel]
        where = classic._grid_index(cv2.blur(plane, (3, 3)))
        low, high = bounds.low.take(where), bounds.high.take(where)
        at_floor = plane <= floors[index].level[channel] + np.float32(classic.K_SIGMA * noises[index].ldr)
        floored = cv2.dilate(at_floor.view(np.uint8), box).view(bool)
        np.copyto(low, np.float32(0.0), where=floored)
        np.copyto(high, bounds.high_floored.take(where), where=floored)
        np.copyto(high, np.float32(np.inf), where=cv2.dilate((plane >= classic.SATURATION).view(np.uint8), box).view(bool))
        return low, high

    for channel in range(3):
        ref_low, ref_high = interval(reference, channel)
        for index in range(len(images)):
            if index != reference:
                low, high = interval(index, channel)
                disagree[index] |= (low > ref_high) | (ref_low > high)
    size = 2 * classic.GHOST_DILATION + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    maps = []
    for index, different in enumerate(disagree):
        if index == reference:
            maps.append(np.ones(shape, dtype=np.float32))
            continue
        ghost = cv2.dilate(different.view(np.uint8), kernel)
        keep = 1.0 - cv2.GaussianBlur(ghost.astype(np.float32), (0, 0), classic.GHOST_DILATION)
        keep[ghost > 0] = 0.0
        maps.append(keep)
    return maps


def _numpy_precision(image, exposure, table, registration):
    grey = cv2.blur((image[..., 0] + image[..., 1] + image[..., 2]) * np.float32(1.0 / 3.0), (3, 3))
    index = classic._grid_index(grey)
    variance = table.variance.take(index)
    if registration > 0:
        linear = table.linear.take(index)
        across = cv2.Sobel(linear, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
        down = cv2.Sobel(linear, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
        variance = variance + (across * across + down * down) * np.float32(registration**2)
    return np.float32(exposure * exposure) / variance


def _numpy_merge(images, exposures, reference, noises, gamma, floors, tables, registrations):
    keeps = _numpy_consistency(images, reference, noises, floors, tables)
    shape = images[0].shape[:2]
    total = np.zeros(images[0].shape, dtype=np.float32)
    weight_sum = np.zeros(shape, dtype=np.float32)
    fallback = np.zeros(shape, dtype=np.float32)
    trust = np.ones(shape, dtype=np.float32)
    seen = np.zeros(shape, dtype=bool)
    darkest = np.full(images[0].shape, np.nan, dtype=np.float32)
    for image, exposure, keep, table, registration in zip(images, exposures, keeps, tables, registrations):
        radiance = classic._pow(image, gamma) * np.float32(1.0 / exposure)
        brightest = classic._grid_index(channel_max(image))
        dark = table.dark.take(brightest)
        weight = table.weight.take(brightest) * keep
        weight *= _numpy_precision(image, exposure, table, registration)
        weight_sum += weight
        agrees = keep > 0.5
        np.copyto(trust, table.trust.take(brightest), where=agrees & ~seen)
        seen |= agrees
        bound = table.linear.take(brightest) * np.float32(1.0 / exposure)
        np.copyto(bound, np.float32(0.0), where=~agrees)
        np.maximum(fallback, bound, out=fallback)
        floored = agrees & (dark <= 0)
        np.copyto(darkest, radiance, where=floored[:, :, None])
        total += radiance * weight[:, :, None]
    estimate = total / np.maximum(weight_sum, np.float32(1e-12))[:, :, None]
    grey = 1.0 - trust
    level = np.maximum(channel_max(estimate), grey * fallback)
    hdr = (level[:, :, None] - estimate) * grey[:, :, None] + estimate
    unmeasured = weight_sum <= 0
    black = unmeasured & (trust > 0) & ~np.isnan(darkest[..., 0])
    hdr[unmeasured] = fallback[unmeasured][:, None]
    hdr[black] = darkest[black]
    return hdr, keeps


def _hard_band():
    """A band with everything the kernels branch on: a lifted black floor, channels clipped in
    every frame, a moving object, a warped frame, and an 8-bit quantisation-step table."""
    radiance = procedural_radiance(96, 128, seed=11) * np.float32(3.0)
    radiance[10:30, 10:40] = 60.0  # clipped in every frame
    radiance[60:80, 90:120] = 1e-5  # black in every frame
    scenes = [radiance.copy() for _ in range(3)]
    scenes[2][40:60, 40:70] *= np.float32(0.05)  # moves: a ghost in the long frame
    frames = render_bracket(scenes, [1.0, 4.0, 16.0], noise=0.004, seed=11)
    images = [np.maximum(f.astype(np.float32) / 255, np.float32(12 / 255)) for f in frames]  # a lifted black
    exposures = [1.0, 4.0, 16.0]
    floor = classic.Floor(np.full(3, 12 / 255, np.float32), np.full(3, 14 / 255, np.float32))
    steps = np.linspace(0.001, 0.01, classic.STEP_GRID.size, dtype=np.float32)
    noises = [classic.Noise(ldr=0.003, linear=0.0005, steps=steps if i == 0 else None) for i in range(3)]
    tables = [classic._tables(t, n, floor, 2.2, classic.GREY_FROM) for t, n in zip(exposures, noises)]
    return images, exposures, noises, [floor] * 3, tables


@pytest.mark.parametrize("registration", [0.0, classic.REGISTRATION_PX])
def test_kernels_merge_as_the_numpy_expressions_do(registration):
    images, exposures, noises, floors, tables = _hard_band()
    registrations = [0.0, 0.0, registration]
    hdr, keeps = classic._merge_rows(images, exposures, 1, noises, 2.2, floors, tables, registrations)
    expected, expected_keeps = _numpy_merge(images, exposures, 1, noises, 2.2, floors, tables, registrations)
    for keep, want in zip(keeps, expected_keeps):
        assert np.array_equal(keep, want)
    assert 0.001 < np.mean(keeps[2] < 0.5) < 0.5  # the ghost was found, and not everywhere
    assert np.isfinite(hdr).all()
    assert np.allclose(hdr, expected, rtol=1e-6, atol=0.0)


def test_grid_rounds_as_opencv_does():
    """Half to even and saturated, as `cv2.multiply(..., dtype=CV_16U)`, which the tables were
    built to be indexed by."""
    rng = np.random.default_rng(5)
    ties = (np.arange(0, 4000, dtype=np.float32) + np.float32(0.5)) / np.float32(65535.0)
    values = np.concatenate([rng.uniform(-0.1, 1.1, 100_000).astype(np.float32), ties, np.float32([0.0, 1.0, -np.inf, np.inf])])
    expected = cv2.multiply(values, 65535.0, dtype=cv2.CV_16U).ravel().astype(np.intp)
    assert np.array_equal(classic._grid_index(values), expected)
    assert classic._grid_index(np.float32([np.nan]))[0] == 0  # never outside the table


def test_disposable_bracket_merges_into_a_frame_with_the_same_result(dynamic_scene, monkeypatch):
    """With a disposable bracket the result is written into one of the frames, band by band as
    their neighbours finish: bands running side by side must still read unmerged pixels."""
    _, frames, _ = dynamic_scene
    monkeypatch.setattr(classic, "BAND_ROWS", 24)  # 8 bands, two in flight
    make = lambda: Bracket([f.astype(np.float32) / 255 for f in frames], np.array([1.0, 4.0, 16.0]), 1, warped=(False, False, True))  # noqa: E731
    kept = make()
    fresh = ClassicBackend(classic.BackendOptions(threads=2)).merge(kept)
    assert not any(fresh.hdr is image for image in kept.images)
    assert np.array_equal(kept.images[0], frames[0].astype(np.float32) / 255)  # not disposable: untouched
    disposable = make()
    disposable.disposable = True
    reused = ClassicBackend(classic.BackendOptions(threads=2)).merge(disposable)
    assert any(reused.hdr is image for image in disposable.images)
    assert np.array_equal(reused.hdr, fresh.hdr)
    assert reused.notes == fresh.notes


def test_warm_loads_every_kernel():
    kernels.warm()
    for kernel in (kernels.grid_index, kernels.flags, kernels.disagreement, kernels.grey, kernels.grey_linear, kernels.accumulate, kernels.finish):
        assert kernel.signatures, kernel


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_numba_starts_without_scipy_and_keeps_its_linear_algebra():
    out = _python(
        "import sys\n"
        "from smarthdr_backends.classic import _warm_kernels\n"
        "_warm_kernels()\n"
        "print('scipy.linalg' in sys.modules)\n"
        "import numba, numpy as np, numba.np.arraymath as arraymath\n"
        "print(arraymath._HAVE_BLAS)\n"
        "dot = numba.njit(lambda a, b: np.dot(a, b))\n"
        "a = np.arange(6.0).reshape(2, 3)\n"
        "print(np.allclose(dot(a, a.T), a @ a.T), np.allclose(numba.njit(lambda x, y: np.correlate(x, y))(a[0], a[1]), np.correlate(a[0], a[1])))\n"
    )
    assert out.split() == ["False", "True", "True", "True"]


def test_scipy_is_hidden_from_the_starting_thread_only():
    out = _python(
        "import threading\n"
        "from smarthdr_backends.numba_start import without_scipy\n"
        "seen = []\n"
        "def other():\n"
        "    import scipy.linalg\n"
        "    seen.append('other thread imported it')\n"
        "with without_scipy():\n"
        "    try:\n"
        "        import scipy.fft\n"
        "    except ImportError:\n"
        "        seen.append('hidden here')\n"
        "    worker = threading.Thread(target=other)\n"
        "    worker.start()\n"
        "    worker.join()\n"
        "import scipy.fft\n"
        "seen.append('back after the block')\n"
        "print(';'.join(seen))\n"
    )
    assert out.strip() == "hidden here;other thread imported it;back after the block"
