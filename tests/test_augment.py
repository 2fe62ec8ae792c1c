"""Weak/strong augmentation: everything spatial moves together, colours permute where they should.

The samples encode each pixel's (row, column) in its value (int64, so exact), plus the frame and
colour channel it came from, so that after an augmentation the position and channel every value
came from can be read back and compared across keys and with numpy as an oracle.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smarthdr_cli.train.augment import COLOUR_KEYS, IDENTITY, Augmentation, apply, draw_strong, draw_weak

PROPERTY = settings(derandomize=True, max_examples=60, deadline=None)
CHANNEL = 10_000  # value = channel tag * CHANNEL + row * width + column

augmentations = st.builds(
    Augmentation,
    vflip=st.booleans(),
    hflip=st.booleans(),
    rotate=st.integers(-3, 3),
    permutation=st.sampled_from(list(itertools.permutations(range(3)))),
)
sizes = st.tuples(st.integers(1, 7), st.integers(1, 7))


def coded_sample(height: int, width: int) -> dict[str, torch.Tensor]:
    position = torch.arange(height * width, dtype=torch.int64).view(height, width)
    colour = torch.arange(3, dtype=torch.int64).view(3, 1, 1) * CHANNEL
    return {
        "frames": torch.stack([position + colour + 10 * CHANNEL * f for f in range(3)]),
        "gt": position + colour + 100 * CHANNEL,
        "pseudo": position + colour + 200 * CHANNEL,
        "uncertainty": position + colour + 300 * CHANNEL,
        "pixel_mask": (position + 400 * CHANNEL).unsqueeze(0),
        "plain_mask": position.clone(),  # an (H, W) mask under a key augment.py does not know
        "bool_mask": position % 2 == 0,
        "exposures": torch.tensor([1.0, 4.0, 16.0]),
    }


def oracle(position: np.ndarray, aug: Augmentation) -> np.ndarray:
    """The same geometric operation written with numpy: vflip, then hflip, then rot90 (k=rotate)."""
    if aug.vflip:
        position = position[::-1]
    if aug.hflip:
        position = position[:, ::-1]
    return np.rot90(position, aug.rotate)


@PROPERTY
@given(size=sizes, aug=augmentations)
def test_every_spatial_tensor_moves_together_and_colours_permute_alike(size, aug):
    height, width = size
    sample = coded_sample(height, width)
    out = apply(sample, aug)
    assert out.keys() == sample.keys()
    expected = oracle(np.arange(height * width).reshape(height, width), aug)
    for key in ("frames", "gt", "pseudo", "uncertainty", "pixel_mask", "plain_mask"):
        value = out[key].numpy()
        assert value.shape[-2:] == expected.shape, key
        assert (value % CHANNEL == expected).all(), key  # every channel of every key: same pixel moves
    for channel in range(3):  # output channel c holds input channel permutation[c], for every colour key
        source = aug.permutation[channel]
        for frame in range(3):
            assert (out["frames"][frame, channel] // CHANNEL == 10 * frame + source).all()
        for base, key in ((100, "gt"), (200, "pseudo"), (300, "uncertainty")):
            assert (out[key][channel] // CHANNEL == base + source).all()
    assert (out["pixel_mask"] // CHANNEL == 400).all()  # masks are never channel-permuted
    mask = (np.arange(height * width) % 2 == 0).reshape(height, width)
    assert torch.equal(out["bool_mask"], torch.from_numpy(oracle(mask, aug).copy()))
    assert out["bool_mask"].dtype == torch.bool
    assert torch.equal(out["exposures"], sample["exposures"])


@PROPERTY
@given(size=sizes, aug=augmentations)
def test_apply_then_inverse_is_the_identity(size, aug):
    sample = coded_sample(*size)
    back = apply(apply(sample, aug), aug.inverse())
    assert back.keys() == sample.keys()
    for key, value in sample.items():
        assert torch.equal(back[key], value), key
    assert aug.inverse().inverse() == aug


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1))
def test_draws_are_deterministic_and_of_the_documented_kind(seed):
    weak = draw_weak(np.random.default_rng(seed))
    strong = draw_strong(np.random.default_rng(seed))
    assert weak == draw_weak(np.random.default_rng(seed))
    assert strong == draw_strong(np.random.default_rng(seed))
    assert weak.permutation == (0, 1, 2) and not weak.hflip and weak.rotate in (0, -1)  # never permutes
    assert not strong.vflip and strong.rotate in (0, 1)


def test_draw_probabilities_and_permutations():
    rng = np.random.default_rng(0)
    weak = [draw_weak(rng) for _ in range(2000)]
    strong = [draw_strong(rng) for _ in range(2000)]
    assert abs(np.mean([a.vflip for a in weak]) - 0.5) < 0.05
    assert abs(np.mean([a.rotate == -1 for a in weak]) - 0.5) < 0.05
    assert abs(np.mean([a.hflip for a in strong]) - 0.5) < 0.05
    assert abs(np.mean([a.rotate == 1 for a in strong]) - 0.5) < 0.05
    counts = {p: sum(a.permutation == p for a in strong) for p in itertools.permutations(range(3))}
    assert all(abs(c / 2000 - 1 / 6) < 0.04 for c in counts.values()), counts


def test_rotation_directions_on_a_non_square_image():
    image = torch.arange(6).view(1, 2, 3)  # [[0, 1, 2], [3, 4, 5]]
    clockwise = apply({"pixel_mask": image}, Augmentation(rotate=-1))["pixel_mask"][0]
    counter = apply({"pixel_mask": image}, Augmentation(rotate=1))["pixel_mask"][0]
    assert clockwise.tolist() == [[3, 0], [4, 1], [5, 2]]
    assert counter.tolist() == [[2, 5], [1, 4], [0, 3]]
    assert apply({"pixel_mask": image}, Augmentation(vflip=True))["pixel_mask"][0].tolist() == [[3, 4, 5], [0, 1, 2]]
    assert apply({"pixel_mask": image}, Augmentation(hflip=True))["pixel_mask"][0].tolist() == [[2, 1, 0], [5, 4, 3]]


def test_identity_and_validation():
    assert IDENTITY.is_identity and Augmentation(vflip=True, hflip=True, rotate=2).is_identity
    assert not Augmentation(permutation=(1, 0, 2)).is_identity and not Augmentation(rotate=1).is_identity
    with pytest.raises(ValueError):
        Augmentation(permutation=(0, 0, 1))
    sample = coded_sample(4, 5)
    with pytest.raises(ValueError, match="differ in size"):
        apply({**sample, "pixel_mask": torch.zeros(1, 5, 4)}, Augmentation(rotate=1))
    with pytest.raises(ValueError, match="colour channels"):
        apply({**sample, "gt": torch.zeros(4, 4, 5)}, IDENTITY)
    assert set(COLOUR_KEYS) == {"frames", "gt", "pseudo", "uncertainty"}
