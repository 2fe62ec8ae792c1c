"""The classic backend against ground truth: synthetic brackets rendered by the project's camera model."""
import numpy as np
import pytest

from smarthdr_backends.classic import ClassicBackend
from smarthdr_cli.bracket import Bracket
from smarthdr_cli.camera import render_bracket
from smarthdr_cli.data.synth.fixed_scene import procedural_radiance
from smarthdr_cli.metrics import psnr_mu
from smarthdr_cli.preprocess import gamma_correct


def _bracket(frames, exposures=(1.0, 4.0, 16.0), reference=1):
    images = [f.astype(np.float32) / 255 for f in frames]
    return Bracket(images, np.array(exposures), reference)


def _reference_alone(bracket):
    return gamma_correct(bracket.images[bracket.reference], bracket.exposures[bracket.reference])


def test_recovers_a_static_scene(static_scene):
    radiance, frames = static_scene
    bracket = _bracket(frames)
    hdr = ClassicBackend().merge(bracket).hdr
    assert hdr.shape == radiance.shape and hdr.dtype == np.float32
    assert psnr_mu(hdr, radiance) > 40.0
    assert psnr_mu(hdr, radiance) > psnr_mu(_reference_alone(bracket), radiance) + 5.0


def test_fills_clipped_reference_and_denoises_shadows(static_scene):
    radiance, frames = static_scene
    bracket = _bracket(frames)
    hdr = ClassicBackend().merge(bracket).hdr
    alone = _reference_alone(bracket)
    clipped = bracket.images[1].max(axis=2) >= 0.99
    dark = bracket.images[1].max(axis=2) < 0.15
    assert clipped.mean() > 0.05 and dark.mean() > 0.05  # the scene exercises both cases
    assert psnr_mu(hdr[clipped], radiance[clipped]) > psnr_mu(alone[clipped], radiance[clipped]) + 10.0
    assert psnr_mu(hdr[dark], radiance[dark]) > psnr_mu(alone[dark], radiance[dark]) + 1.0


def test_does_not_ghost_a_moving_object(dynamic_scene):
    truth, frames, moving = dynamic_scene
    bracket = _bracket(frames)
    hdr = ClassicBackend().merge(bracket).hdr
    alone = _reference_alone(bracket)
    # On the object's path the result must be at least as good as the reference frame alone
    # (a ghosting merge shows the object where the reference shows background, and vice versa).
    assert psnr_mu(hdr[moving], truth[moving]) >= psnr_mu(alone[moving], truth[moving]) - 0.5
    assert psnr_mu(hdr, truth) > 38.0
    naive = sum(np.float32(t) * gamma_correct(im, t) for im, t in zip(bracket.images, bracket.exposures)) / 21.0
    assert psnr_mu(naive[moving], truth[moving]) < psnr_mu(hdr[moving], truth[moving]) - 3.0  # the test can fail


@pytest.mark.parametrize("reference", [0, 2])
def test_other_references_and_two_frames(static_scene, reference):
    radiance, frames = static_scene
    bracket = _bracket(frames, reference=reference)
    hdr = ClassicBackend().merge(bracket).hdr
    assert psnr_mu(hdr, radiance) > 38.0
    pair = Bracket([bracket.images[0], bracket.images[2]], np.array([1.0, 16.0]), 0)
    assert psnr_mu(ClassicBackend().merge(pair).hdr, radiance) > 36.0


def test_never_worse_than_the_reference_where_noise_dominates():
    rng = np.random.default_rng(7)
    radiance = np.clip(rng.random((64, 64, 3)).astype(np.float32) * 0.2, 1e-4, None)
    frames = render_bracket(radiance, [1.0, 4.0, 16.0], noise=0.01, seed=2)
    bracket = _bracket(frames)
    hdr = ClassicBackend().merge(bracket).hdr
    assert psnr_mu(hdr, radiance) >= psnr_mu(_reference_alone(bracket), radiance)


def test_row_bands_give_the_same_result_as_one_band(dynamic_scene, monkeypatch):
    import smarthdr_backends.classic as classic

    _, frames, _ = dynamic_scene
    bracket = _bracket(frames)
    monkeypatch.setattr(classic, "BAND_ROWS", 10_000)
    whole = ClassicBackend().merge(bracket)
    monkeypatch.setattr(classic, "BAND_ROWS", 37)
    banded = ClassicBackend().merge(bracket)
    # Identical, not close: HALO_ROWS covers every filter's reach, so a band's own rows never
    # see its edges (one row short and the ghost maps' Gaussian tails differ there).
    assert np.array_equal(whole.hdr, banded.hdr)
    assert whole.notes == banded.notes


def test_band_edges_through_moving_objects_change_nothing(monkeypatch):
    """Objects that move across every band boundary: the ghost maps' tails reach HALO_ROWS deep
    (a halo of 9 rows changed the result there, by up to 1e-5)."""
    import smarthdr_backends.classic as classic

    radiance = procedural_radiance(192, 160, seed=3)
    scenes = [radiance.copy() for _ in range(3)]
    for row in range(4, 192, 24):
        scenes[2][row : row + 8, 20:140] *= np.float32(0.05)
        scenes[0][row + 4 : row + 12, 30:120] *= np.float32(8.0)
    bracket = _bracket(render_bracket(scenes, [1.0, 4.0, 16.0], noise=0.001, seed=3))
    monkeypatch.setattr(classic, "BAND_ROWS", 10_000)
    whole = ClassicBackend().merge(bracket).hdr
    monkeypatch.setattr(classic, "BAND_ROWS", 24)
    assert np.array_equal(whole, ClassicBackend().merge(bracket).hdr)


def _close(table: np.ndarray, where: np.ndarray, exact: np.ndarray, steps: bool) -> bool:
    looked_up = table.take(where)
    near = np.isclose(looked_up, exact, rtol=2e-3, atol=1e-6)
    if not steps:
        return bool(near.all())
    # The quantisation-step table is itself piecewise constant (1/512 apart): a value within a
    # grid step of one of its jumps may land on the other side, a jump of about 1%, nowhere more.
    return bool(near.mean() > 0.99 and np.allclose(looked_up, exact, rtol=3e-2, atol=1e-6))


@pytest.mark.parametrize("steps", [False, True])
def test_tabulated_functions_match_their_formulas_between_grid_values(steps):
    """The merge looks its per-pixel functions up on a grid; at values between grid points (any
    3x3 mean) the lookup must agree with the formula to far below the noise it models, on a
    frame with a lifted black floor, with and without an 8-bit quantisation-step table."""
    import smarthdr_backends.classic as classic

    rng = np.random.default_rng(3)
    values = rng.uniform(0.0, 1.0, 200_000).astype(np.float32)
    table = np.linspace(0.002, 0.02, classic.STEP_GRID.size, dtype=np.float32) if steps else None
    noise = classic.Noise(ldr=0.004, linear=0.0008, steps=table)
    floor = classic.Floor(np.array([0.03, 0.04, 0.05], np.float32), np.array([0.05, 0.06, 0.07], np.float32))
    tables = classic._tables(4.0, noise, floor, 2.2, classic.GREY_FROM)
    where = classic._grid_index(values)
    none = np.zeros(values.shape, dtype=bool)
    for channel in range(3):
        plane = classic._plane(floor, channel)
        low, high = classic._interval(values, none, none, 4.0, noise, plane, 2.2)
        _, high_floored = classic._interval(values, none, ~none, 4.0, noise, plane, 2.2)
        bounds = tables.bounds[channel]
        for looked_up, exact in ((bounds.low, low), (bounds.high, high), (bounds.high_floored, high_floored)):
            assert _close(looked_up, where, exact, steps)
    assert _close(tables.variance, where, classic._variance(values, noise, 2.2), steps)
    dark = classic._dark_weight(values, floor, noise)
    assert np.allclose(tables.weight.take(where), classic._saturation_weight(values) * dark, atol=2e-3)
    assert np.allclose(tables.trust.take(where), classic._colour_trust(values), atol=2e-3)
