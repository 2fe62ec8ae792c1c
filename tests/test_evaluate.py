"""`smarthdr evaluate` and the metrics it reports, against values computed by hand."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from smarthdr_cli.app import app
from smarthdr_cli.data.synth import SynthSettings, generate
from smarthdr_cli.io.hdr import read_hdr
from smarthdr_cli.io.ldr import read_ldr
from smarthdr_cli.metrics import psnr_l, psnr_mu, ssim_l, ssim_mu


def test_psnr_by_hand() -> None:
    truth = np.zeros((2, 2, 3), np.float32)
    prediction = truth.copy()
    prediction[0, 0, 0] = 0.1  # MSE = 0.01 / 12
    assert psnr_l(prediction, truth) == pytest.approx(10 * math.log10(12 / 0.01))
    t = math.log1p(5000 * 0.1) / math.log1p(5000)
    assert psnr_mu(prediction, truth) == pytest.approx(10 * math.log10(12 / t**2))
    # values above 1 are clipped first, as in the Kalantari protocol
    assert psnr_l(prediction * 20, truth) == pytest.approx(10 * math.log10(12))


def test_ssim_by_hand() -> None:
    """For constant images a and b, SSIM = (2ab + C1) / (a^2 + b^2 + C1) with C1 = (0.01)^2."""
    a, b = 0.3, 0.5
    x, y = np.full((16, 16, 3), a), np.full((16, 16, 3), b)
    c1 = 0.01**2
    assert ssim_l(x, y) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)
    ta, tb = (math.log1p(5000 * v) / math.log1p(5000) for v in (a, b))
    assert ssim_mu(x, y) == pytest.approx((2 * ta * tb + c1) / (ta * ta + tb * tb + c1), rel=1e-6)
    rng = np.random.default_rng(0)
    image = rng.random((32, 32, 3))
    assert ssim_l(image, image) == pytest.approx(1.0)
    noise = rng.normal(0, 1, image.shape)
    scores = [ssim_l(image, np.clip(image + level * noise, 0, 1)) for level in (0.01, 0.1, 0.3)]
    assert 1 > scores[0] > scores[1] > scores[2]


@pytest.fixture(scope="module")
def test_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval") / "data"
    generate(root, SynthSettings(seed=3, height=96, width=128, split={"test": 2}))
    return root / "test"


def test_evaluate_json_and_saved_predictions(test_split: Path, tmp_path: Path, runner) -> None:
    result = runner.invoke(app, ["evaluate", str(test_split), "--backend", "classic", "--json", "-q", "--save-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"scenes", "mean", "reference", "backend", "weights"} and data["backend"] == "classic"
    assert [s["name"] for s in data["scenes"]] == sorted(p.name for p in test_split.iterdir())
    for scene in data["scenes"]:
        assert set(scene) == {"name", "psnr_mu", "psnr_l", "ssim_mu", "ssim_l", "seconds", "reference"}
        saved = read_hdr(tmp_path / f"{scene['name']}.exr")
        truth = read_hdr(test_split / scene["name"] / "HDRImg.hdr")
        # the floor: the reference frame alone (16-bit gamma TIFF), linearised, against the same GT
        middle = read_ldr(test_split / scene["name"] / "input_2.tif")[0]
        exposures = [2.0 ** float(v) for v in (test_split / scene["name"] / "exposure.txt").read_text().split()]
        floor = np.minimum(middle.astype(np.float32) ** 2.2 / exposures[1], 1.0)
        assert psnr_mu(floor, truth) == pytest.approx(scene["reference"]["psnr_mu"], abs=1e-3)
        # the saved EXR is half precision: the scores recomputed from it agree closely
        assert psnr_mu(saved, truth) == pytest.approx(scene["psnr_mu"], abs=0.05)
        assert 25 < scene["psnr_mu"] < 80 and 0 < scene["ssim_mu"] <= 1
        assert (tmp_path / f"{scene['name']}.jpg").is_file()
    assert data["mean"]["psnr_mu"] == pytest.approx(np.mean([s["psnr_mu"] for s in data["scenes"]]))
    assert data["reference"]["psnr_mu"] == pytest.approx(np.mean([s["reference"]["psnr_mu"] for s in data["scenes"]]))


def test_evaluate_table_and_errors(test_split: Path, tmp_path: Path, runner) -> None:
    table = runner.invoke(app, ["evaluate", str(test_split), "--backend", "classic", "-q"])
    assert table.exit_code == 0 and "PSNR-mu" in table.output and "mean" in table.output
    assert "reference frame alone" in table.output
    for args, message in [
        (["evaluate", str(tmp_path / "none")], "no such folder"),
        (["evaluate", str(test_split), "--backend", "cpu", "--weights", str(tmp_path / "none.safetensors")], "no such weights file"),
        (["evaluate", str(test_split), "--backend", "classic", "--save-dir", str(tmp_path / "missing")], "--save-dir"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], result.output


def test_evaluate_merges_what_merge_merges(tmp_path: Path, runner) -> None:
    """evaluate scores the image `smarthdr merge` writes for the same frames: a 16-bit scene is
    merged as 16 bits (an earlier evaluate gave every scene classic's 8-bit noise floor, which
    on a low-noise camera is most of the noise it assumes)."""
    generate(tmp_path / "data", SynthSettings(seed=5, height=96, width=128, split={"test": 1}, noise=0.0003, shot_gain=0.00005))
    test_split = tmp_path / "data" / "test"
    scene = next(p for p in test_split.iterdir() if p.is_dir())
    result = runner.invoke(app, ["evaluate", str(test_split), "--backend", "classic", "--json", "-q", "--save-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    seconds = ",".join(f"{2.0 ** float(v):g}" for v in (scene / "exposure.txt").read_text().split())
    out = tmp_path / "merged.exr"
    frames = [str(scene / f"input_{i}.tif") for i in (1, 2, 3)]
    merged = runner.invoke(app, ["merge", *frames, "--exposures", seconds, "--reference", "2", "--response", "gamma",
                                 "--align", "none", "--backend", "classic", "-o", str(out), "-q"])
    assert merged.exit_code == 0, merged.output
    ours, theirs = read_hdr(tmp_path / f"{scene.name}.exr"), read_hdr(out)
    assert np.allclose(ours, theirs, rtol=2e-3, atol=1e-6), float(np.max(np.abs(ours - theirs)))
