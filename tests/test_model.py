"""GFHDR and its judge: size, layer shapes, any input size, exact attention, tiling, weights."""
import json
from pathlib import Path

import pytest
import torch

from smarthdr_cli.errors import InputError
from smarthdr_cli.metrics import psnr_mu
from smarthdr_cli.model import GFHDR, GFHDRConfig
from smarthdr_cli.model.config import PRESETS
from smarthdr_cli.model.gfhdr import shifted_window_mask, window_partition, window_reverse
from smarthdr_cli.model.tiling import tile_size_for, tiled_forward
from smarthdr_cli.model.weights import card_path, load_weights, save_weights
from smarthdr_cli.sizes import parse_memory


@pytest.fixture(scope="module")
def tiny() -> GFHDR:
    torch.manual_seed(0)
    return GFHDR(PRESETS["tiny"]).eval()


def _frames(height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(1, 6, height, width, generator=generator) for _ in range(3))


def test_full_network_has_the_published_size_and_layer_shapes():
    model = GFHDR(GFHDRConfig())
    counts = {}
    for name, parameter in model.named_parameters():
        group = name.split(".")[0]
        counts[group] = counts.get(group, 0) + parameter.numel()
    assert sum(v for k, v in counts.items() if k != "judge") == 1_222_113
    assert counts == {
        "conv_f1": 3_300, "conv_f2": 3_300, "conv_f3": 3_300,
        "att_short": 194_580, "att_long": 194_580, "conv_fuse": 97_260,
        "norm_in": 120, "blocks": 3 * 230_490, "norm_out": 120,
        "conv_after_body": 32_460, "conv_last": 1_623, "judge": 27_427,
    }
    layer = model.blocks[0].layers[1]
    shapes = {name: tuple(p.shape) for name, p in layer.named_parameters()}
    assert shapes["attn.qkv.weight"] == (180, 60) and shapes["attn.proj.weight"] == (60, 60)
    assert shapes["attn.relative_position_bias_table"] == (225, 6)
    assert shapes["local_context.conv.0.weight"] == (7, 60, 1, 1)
    assert shapes["local_context.conv.1.weight"] == (7, 7, 3, 3)
    assert shapes["local_context.conv.2.weight"] == (60, 7, 1, 1)
    assert shapes["local_context.fc.0.weight"] == (7, 60) and shapes["local_context.fc.2.weight"] == (60, 7)
    assert shapes["mlp.fc1.weight"] == (120, 60) and shapes["mlp.fc2.weight"] == (60, 120)
    assert [len(block.layers) for block in model.blocks] == [6, 6, 6]
    assert [layer.shift for layer in model.blocks[0].layers] == [0, 4, 0, 4, 0, 4]
    assert model.blocks[0].conv.dilation == (2, 2) and model.blocks[0].conv.weight.shape == (60, 60, 3, 3)
    assert model.att_short.conv1.weight.shape == (120, 120, 3, 3) and model.att_short.conv2.weight.shape == (60, 120, 3, 3)
    assert model.conv_fuse.weight.shape == (60, 180, 3, 3) and model.conv_last.weight.shape == (3, 60, 3, 3)
    rates = [layer.drop_path.probability for block in model.blocks for layer in block.layers]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1) and len(rates) == 18


@pytest.mark.parametrize("size", [(5, 7), (37, 53), (16, 16), (64, 40)])
def test_any_input_size(tiny, size):
    with torch.no_grad():
        hdr, sigma = tiny(*_frames(*size))
        plain, none = tiny(*_frames(*size), with_uncertainty=False)
    assert hdr.shape == sigma.shape == (1, 3, *size)
    assert none is None and torch.equal(hdr, plain)
    assert 0 <= hdr.min() and hdr.max() <= 1 and 0 < sigma.min() and sigma.max() < 1


def test_window_helpers_invert_each_other():
    x = torch.randn(2, 16, 24, 5)
    assert torch.equal(window_reverse(window_partition(x, 4), 4, 16, 24), x)


def test_masked_windows_attention_equals_explicit_softmax(tiny):
    """Only border windows get a mask; the result must equal full-mask explicit attention."""
    attn = tiny.blocks[0].layers[1].attn
    height, width, window, shift = 16, 24, 4, 2
    shift_mask = shifted_window_mask(height, width, window, shift, torch.device("cpu"))
    assert 0 < shift_mask.border.numel() < shift_mask.windows
    tokens = torch.randn(2, height, width, 8)
    windows = window_partition(torch.roll(tokens, (-shift, -shift), (1, 2)), window)
    n = window * window
    full_mask = torch.zeros(shift_mask.windows, n, n)
    full_mask[shift_mask.border] = shift_mask.mask
    with torch.no_grad():
        fast = attn(windows, shift_mask)
        q, k, v = attn.qkv(windows).reshape(-1, n, 3, attn.heads, 4).permute(2, 0, 3, 1, 4)
        scores = (q * 4**-0.5) @ k.transpose(-2, -1) + attn.position_bias()
        scores = (scores.view(2, -1, attn.heads, n, n) + full_mask[None, :, None]).view(-1, attn.heads, n, n)
        explicit = attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, 8))
    assert torch.allclose(fast, explicit, atol=1e-5)


def test_shift_masks_are_cached_per_size(tiny):
    tiny._shift_masks.clear()
    with torch.no_grad():
        tiny(*_frames(16, 16))
        first = dict(tiny._shift_masks)
        tiny(*_frames(16, 16))
        assert tiny._shift_masks == first and len(first) == 1
        tiny(*_frames(24, 16))
    assert len(tiny._shift_masks) == 2


def test_tiled_and_untiled_agree_away_from_the_border(tiny):
    frames = _frames(96, 128, seed=3)
    with torch.no_grad():
        whole, whole_sigma = tiny(*frames)
        tiled, tiled_sigma = tiled_forward(lambda a, b, c: tiny(a, b, c), frames, tile=64, overlap=32)
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert tiled.shape == whole.shape and tiled_sigma.shape == whole_sigma.shape
    assert psnr_mu(tiled[inner].numpy(), whole[inner].numpy()) > 55.0
    assert (tiled - whole)[inner].abs().max() < 0.03
    with torch.no_grad():  # the original GFHDR protocol: abutting tiles, no blending ramps
        abutting, _ = tiled_forward(lambda a, b, c: tiny(a, b, c), frames, tile=32, overlap=0)
    assert abutting.shape == whole.shape and torch.isfinite(abutting).all()
    # The same image in one tile is the untiled forward pass itself.
    with torch.no_grad():
        single, _ = tiled_forward(lambda a, b, c: tiny(a, b, c), frames, tile=128)
    assert torch.allclose(single, whole, atol=1e-6)


def test_tile_size_follows_the_memory_budget():
    full = GFHDRConfig()
    small, large = tile_size_for(0.5 * 1024**3, full, torch.float32), tile_size_for(4 * 1024**3, full, torch.float32)
    assert small % 8 == 0 and large % 8 == 0 and 64 <= small < large <= 1024
    assert tile_size_for(1.0, full, torch.float32) == 64
    assert parse_memory("2G") == 2 * 1024**3 and parse_memory("512MiB") == 512 * 1024**2 and parse_memory("1000") == 1000
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(InputError):
            parse_memory(bad)


def test_training_mode_backpropagates_through_both_heads(tiny):
    model = GFHDR(PRESETS["tiny"]).train()
    hdr, sigma = model(*_frames(16, 16))
    (hdr.mean() + sigma.mean()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_weights_round_trip_and_model_card(tiny, tmp_path: Path):
    path = tmp_path / "tiny.safetensors"
    card = save_weights(tiny, path, {"training_data": "none (test)", "metrics": {}})
    assert card["sha256"] and json.loads(card_path(path).read_text())["config"]["embed_dim"] == 8
    loaded, loaded_card = load_weights(path)
    assert loaded.config == tiny.config and loaded_card["training_data"] == "none (test)"
    frames = _frames(20, 20)
    with torch.no_grad():
        assert torch.equal(loaded(*frames)[0], tiny(*frames)[0])


def test_bad_weights_give_clear_errors(tiny, tmp_path: Path):
    path = tmp_path / "w.safetensors"
    save_weights(tiny, path)
    with pytest.raises(InputError, match="sha256"):
        path.write_bytes(path.read_bytes()[:-4] + b"\x00\x00\x00\x00")
        load_weights(path)
    card_path(path).unlink()
    with pytest.raises(InputError, match="not a valid safetensors"):
        path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
        load_weights(path)
    pickle = tmp_path / "w.pt"
    torch.save(tiny.state_dict(), pickle)
    with pytest.raises(InputError, match="safetensors"):
        load_weights(pickle)
    with pytest.raises(InputError, match="no such"):
        load_weights(tmp_path / "missing.safetensors")
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"conv_f1.weight": torch.zeros(1)}, str(other), metadata={"smarthdr_config": json.dumps(PRESETS["tiny"].to_dict())})
    with pytest.raises(InputError, match="do not fit"):
        load_weights(other)


def test_activation_checkpointing_gives_the_same_gradients():
    """Recomputing the layers in the backward pass (stochastic depth included) changes nothing."""
    config = PRESETS["tiny"]
    grads = []
    for enabled in (False, True):
        torch.manual_seed(0)
        model = GFHDR(config).train()
        model.set_checkpointing(enabled)
        inputs = [torch.rand(2, 6, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(3)]
        torch.manual_seed(1)
        hdr, sigma = model(*inputs)
        (hdr.mean() + sigma.mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name


def test_inference_gives_the_image_border_reflected_context(tiny):
    """The network never sees the image edge as its own (zero-padded) edge: the whole-image output
    is the network's output on the frames mirrored outwards by BORDER pixels, cropped back."""
    import numpy as np

    from smarthdr_cli.model.inference import BORDER, infer_frames
    from smarthdr_cli.preprocess import network_input

    rng = np.random.default_rng(4)
    frames = [rng.random((40, 56, 3)).astype(np.float32) for _ in range(3)]
    exposures = [1.0, 4.0, 16.0]
    hdr, sigma = infer_frames(tiny, frames, exposures, 2.2, tile=256, window=4, device=torch.device("cpu"))
    assert hdr.shape == sigma.shape == (40, 56, 3)
    mirrored = [np.pad(f, ((BORDER, BORDER), (BORDER, BORDER), (0, 0)), mode="reflect") for f in frames]
    inputs = [network_input(torch.from_numpy(f).permute(2, 0, 1)[None], t, 2.2, axis=1) for f, t in zip(mirrored, exposures)]
    with torch.no_grad():
        expected, _ = tiny(*inputs)
    expected = expected[0, :, BORDER:-BORDER, BORDER:-BORDER].permute(1, 2, 0).numpy()
    assert np.abs(hdr - expected).max() < 1e-6
    with torch.no_grad():  # and that differs from running the network on the bare image at its edges
        bare, _ = tiny(*[network_input(torch.from_numpy(f).permute(2, 0, 1)[None], t, 2.2, axis=1) for f, t in zip(frames, exposures)])
    assert np.abs(hdr[0] - bare[0, :, 0].permute(1, 0).numpy()).max() > 1e-4


def _trunk_and_judge_grads(config: GFHDRConfig) -> tuple[float, float]:
    """Gradient norms of a sigma-only loss on the trunk (F_att's convolutions) and on the judge."""
    torch.manual_seed(0)
    model = GFHDR(config).train()
    _, sigma = model(*_frames(16, 16))
    sigma.mean().backward()
    trunk = sum(float(p.grad.norm()) for name, p in model.named_parameters() if name.startswith(("conv_f", "att_", "conv_fuse")) and p.grad is not None)
    judge = sum(float(p.grad.norm()) for name, p in model.named_parameters() if name.startswith("judge.") and p.grad is not None)
    return trunk, judge


def test_judge_is_detached_from_the_trunk_by_default():
    assert PRESETS["tiny"].judge_detach
    trunk, judge = _trunk_and_judge_grads(PRESETS["tiny"])
    assert trunk == 0.0 and judge > 0.0
    from dataclasses import replace

    through = replace(PRESETS["tiny"], judge_detach=False)
    trunk, judge = _trunk_and_judge_grads(through)
    assert trunk > 0.0 and judge > 0.0
    assert through == PRESETS["tiny"]  # a training choice: weights trained either way fit either


def test_judge_detach_is_stored_with_the_weights(tmp_path: Path):
    from dataclasses import replace

    model = GFHDR(replace(PRESETS["tiny"], judge_detach=False))
    path = tmp_path / "through.safetensors"
    save_weights(model, path)
    loaded, card = load_weights(path)
    assert loaded.config.judge_detach is False and card["config"]["judge_detach"] is False
    old = {k: v for k, v in PRESETS["tiny"].to_dict().items() if k != "judge_detach"}  # weights from before the switch
    assert GFHDRConfig.from_dict(old).judge_detach is True
