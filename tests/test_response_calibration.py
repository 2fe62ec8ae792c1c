"""Issue 13: the calibrated response of camera JPEGs and film scans must be the camera's curve.

OpenCV's CalibrateDebevec on 300 sampled pixels gave curves 25-57% off (log RMS) on hand-held,
noisy JPEG brackets with moving objects: samples land on different things in each frame, and
the ratio-only fit leaves a wiggle free (here: 0.45-0.74 on every bracket). The histogram-based
fit must come within 30% of the true curve on average (here 0.23), with no registration and whatever moved;
one of these four brackets is still 0.54 off (its frames share too little content).
"""
import json

import cv2
import numpy as np
import pytest

from smarthdr_cli.camera import RESPONSES, with_black
from smarthdr_cli.data.synth import SynthSettings, generate
from smarthdr_cli.response import calibrate


def _true_inverse(capture: dict) -> np.ndarray:
    """Linear exposure of each 8-bit code under the capture's noise-free curve."""
    linear = np.linspace(0.0, 1.0, 200001)
    encoded = with_black(RESPONSES[capture["response"]], capture["black"])(linear) * 255
    return np.interp(np.arange(256), encoded, linear)


@pytest.fixture(scope="module")
def film_jpeg_brackets(tmp_path_factory):
    out = tmp_path_factory.mktemp("film-jpeg")
    generate(out, SynthSettings(scenes=4, seed=3, height=240, width=360, profile="film-jpeg", jobs=1))
    return out


def test_film_jpeg_response_is_within_30_percent_of_the_camera_curve_on_average(film_jpeg_brackets):
    meta = json.loads((film_jpeg_brackets / "synth.json").read_text())
    errors = []
    for scene in meta["scenes"]:
        folder = film_jpeg_brackets / scene["folder"]
        frames = [cv2.imread(str(folder / f"input_{i}.jpg"))[:, :, ::-1].astype(np.float32) / 255 for i in (1, 2, 3)]
        response = calibrate(frames, scene["exposures"])
        assert response is not None
        true = _true_inverse(scene["capture"])
        codes = np.arange(int(scene["capture"]["black"] * 255) + 8, 251)  # above the noise-blurred toe
        found = response.curve[:, 1].astype(np.float64)
        errors.append(float(np.sqrt(np.mean(np.log(found[codes] / true[codes]) ** 2))))
    assert float(np.mean(errors)) < 0.3 and max(errors) < 0.6, errors


def test_two_frame_bracket_with_unseen_dark_codes_gives_a_finite_rising_curve(static_scene):
    """A 1/400 + 1/25 pair whose short frame never shows some dark codes: the toe read from the
    long frame used to pass NaN down from an unseen code to every code below it (22 codes NaN
    here), and the classic merge then returned an invalid image."""
    _, frames = static_scene
    response = calibrate([frames[0] / 255.0, frames[2] / 255.0], [1 / 400, 1 / 25])
    assert response is not None
    curve = response.curve[:, 0]
    assert np.isfinite(response.curve).all()
    assert (np.diff(curve) >= 0).all()
    codes = np.arange(20, 251)
    assert np.sqrt(np.mean(np.log(curve[codes] / (codes / 255.0) ** 2.2) ** 2)) < 0.6  # here 0.39
