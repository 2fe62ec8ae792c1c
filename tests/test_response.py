from pathlib import Path

import numpy as np
import pytest

from smarthdr_cli.camera import render_bracket, s_curve
from smarthdr_cli.data.synth.fixed_scene import procedural_radiance
from smarthdr_cli.errors import InputError
from smarthdr_cli.response import calibrate, gamma_response, load_response


def _exposure_ratios(response, frames, times):
    """Median ratio of linearised values between frames, over pixels well exposed in both."""
    lin = [response.linearise(f) for f in frames]
    ratios = []
    for i, j in [(0, 1), (1, 2), (0, 2)]:
        ok = (frames[i] > 0.1) & (frames[i] < 0.9) & (frames[j] > 0.1) & (frames[j] < 0.9)
        if ok.sum() < 1000:
            continue
        ratios.append((float(np.median(lin[j][ok] / lin[i][ok])), times[j] / times[i]))
    return ratios


@pytest.mark.parametrize("bits", [8, 16])
def test_calibration_recovers_exposure_ratios_of_an_s_curve_camera(bits):
    radiance = procedural_radiance(240, 320, seed=11)
    times = [1.0, 4.0, 16.0]
    top = (1 << bits) - 1
    frames = [f.astype(np.float32) / top for f in render_bracket(radiance, times, curve=s_curve, bits=bits, seed=1)]
    response = calibrate(frames, times)
    assert response is not None
    ratios = _exposure_ratios(response, frames, times)
    assert len(ratios) >= 2
    for found, true in ratios:
        assert found == pytest.approx(true, rel=0.05)
    # The naive gamma-2.2 assumption is far off on the same frames: the test can fail.
    assert any(abs(found / true - 1) > 0.3 for found, true in _exposure_ratios(gamma_response(), frames, times))


def test_calibrated_frames_satisfy_eq1_in_gamma_domain():
    radiance = procedural_radiance(200, 300, seed=2)
    times = [1.0, 4.0, 16.0]
    frames = [f.astype(np.float32) / 255 for f in render_bracket(radiance, times, curve=s_curve)]
    response = calibrate(frames, times)
    encoded = [response.to_gamma_domain(f) for f in frames]
    ok = (frames[0] > 0.15) & (frames[0] < 0.85) & (frames[1] > 0.15) & (frames[1] < 0.85)
    ratio = np.median((encoded[1][ok] ** 2.2 / 4.0) / (encoded[0][ok] ** 2.2 / 1.0))
    assert ratio == pytest.approx(1.0, rel=0.05)
    assert response.to_gamma_domain(np.ones((1, 1, 3), np.float32)).min() == pytest.approx(1.0)


def test_frames_as_codes_calibrate_and_linearise_as_their_float_values():
    """The reader keeps 8-bit frames as codes until linearised: the same response and the same
    values as the frames read as floats (code / 255)."""
    radiance = procedural_radiance(200, 300, seed=4)
    times = [1.0, 4.0, 16.0]
    codes = [np.ascontiguousarray(f) for f in render_bracket(radiance, times, curve=s_curve, seed=4)]
    values = [np.divide(c, np.float32(255.0), dtype=np.float32) for c in codes]
    from_codes, from_values = calibrate(codes, times), calibrate(values, times)
    assert from_codes is not None and from_values is not None
    assert np.array_equal(from_codes.curve, from_values.curve) and from_codes.black == from_values.black
    for c, v in zip(codes, values):
        expected = from_values.to_gamma_domain(v, bits=8)
        assert np.array_equal(from_values.to_gamma_domain(c, bits=8), expected)
        assert not np.array_equal(expected, v)  # the curve is no identity: the comparison can fail


def test_calibration_gives_up_on_featureless_brackets():
    flat = [np.full((50, 50, 3), v, np.float32) for v in (0.2, 0.4, 0.6)]
    assert calibrate(flat, [1.0, 4.0, 16.0]) is None


def test_response_file(tmp_path: Path):
    path = tmp_path / "curve.txt"
    path.write_text("\n".join(str((i / 255) ** 2.0) for i in range(256)))
    response = load_response(path)
    assert response.linearise(np.full((1, 1, 3), 0.5, np.float32)) == pytest.approx(0.25, abs=1e-3)
    path.write_text("1 2\n" * 256)
    with pytest.raises(InputError, match="256 lines"):
        load_response(path)
    path.write_text("\n".join(str(-i) for i in range(256)))
    with pytest.raises(InputError):
        load_response(path)
