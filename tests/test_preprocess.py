import numpy as np
import pytest
import torch

from smarthdr_cli.bracket import Bracket
from smarthdr_cli.preprocess import bracket_inputs, gamma_correct, network_input, to_ldr
from smarthdr_cli.tonemap import mu_law, mu_preview, reinhard


def test_eq1_on_numpy_and_torch_agree():
    x = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    expected = np.array([[[0.0, 0.5**2.2 / 4.0, 0.25]]], np.float32)
    assert np.allclose(gamma_correct(x, 4.0), expected)
    stacked = network_input(x, 4.0)
    assert stacked.shape == (1, 1, 6) and np.allclose(stacked[..., 3:], expected)
    tensor = torch.from_numpy(x).permute(2, 0, 1)[None]
    assert torch.allclose(network_input(tensor, 4.0, axis=1)[0, 3:].permute(1, 2, 0), torch.from_numpy(expected[0]))
    assert np.allclose(to_ldr(gamma_correct(x, 4.0), 4.0), x, atol=1e-6)


def test_bracket_inputs_use_normalised_exposures():
    images = [np.full((2, 2, 3), v, np.float32) for v in (0.2, 0.4, 0.8)]
    inputs = bracket_inputs(Bracket(images, np.array([1.0, 4.0, 16.0]), 1))
    assert [i.shape for i in inputs] == [(2, 2, 6)] * 3
    assert inputs[2][0, 0, 3] == pytest.approx(0.8**2.2 / 16.0)


def test_mu_law_eq4():
    assert mu_law(np.array([0.0, 1.0])) == pytest.approx([0.0, 1.0])
    assert mu_law(np.array([0.01]))[0] == pytest.approx(np.log(51.0) / np.log(5001.0))
    assert float(mu_law(torch.tensor([0.01]))[0]) == pytest.approx(np.log(51.0) / np.log(5001.0), rel=1e-6)


def test_previews_are_displayable():
    rng = np.random.default_rng(0)
    hdr = (rng.random((16, 16, 3)) ** 4 * 100).astype(np.float32)
    for operator in (reinhard, mu_preview):
        image = operator(hdr)
        assert image.shape == hdr.shape and image.min() >= 0 and image.max() <= 1
        assert image.mean() > 0.05  # not black
    # Brighter radiance stays brighter (global, monotone operators).
    ramp = np.repeat(np.geomspace(1e-3, 10, 32, dtype=np.float32)[None, :, None], 3, axis=2)
    assert np.all(np.diff(reinhard(ramp)[0, :, 1]) >= 0)
