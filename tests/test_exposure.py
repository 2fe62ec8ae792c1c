from pathlib import Path

import pytest

from smarthdr_cli import exposure
from smarthdr_cli.errors import ExposureError
from smarthdr_cli.io.exif import CaptureInfo


def test_parse_exposures_accepts_fractions_and_decimals():
    assert exposure.parse_exposures("1/100, 1/25,0.16", 3) == pytest.approx([0.01, 0.04, 0.16])


@pytest.mark.parametrize("text", ["1/100,1/25", "1/100,abc,1", "1/0,1,2", "-1,1,2", "nan,1,2"])
def test_parse_exposures_rejects_bad_values(text):
    with pytest.raises(ExposureError):
        exposure.parse_exposures(text, 3)


def test_parse_ev_is_powers_of_two():
    assert exposure.parse_ev("-2,0,2", 3) == pytest.approx([0.25, 1.0, 4.0])
    with pytest.raises(ExposureError):
        exposure.parse_ev("-2,0", 3)


def test_exposure_file(tmp_path: Path):
    path = tmp_path / "exposure.txt"
    path.write_text("0\n2\n4\n")
    assert exposure.read_exposure_file(path, 3) == pytest.approx([1.0, 4.0, 16.0])
    path.write_text("0\n2\n")
    with pytest.raises(ExposureError, match="2 exposure values for 3 frames"):
        exposure.read_exposure_file(path, 3)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ExposureError):
        exposure.read_exposure_file(path, 3)


def test_iso_and_aperture_fold_into_effective_exposure():
    infos = [
        CaptureInfo(exposure_time=1 / 100, iso=100, f_number=8.0),
        CaptureInfo(exposure_time=1 / 100, iso=400, f_number=8.0),  # two stops brighter by ISO
        CaptureInfo(exposure_time=1 / 100, iso=100, f_number=4.0),  # two stops brighter by aperture
    ]
    times, folded = exposure.effective_exposures(infos, [Path("a"), Path("b"), Path("c")])
    assert folded
    assert times == pytest.approx([0.01, 0.04, 0.04 * 1.0])  # f/4 vs f/8: 4x the light
    same = [CaptureInfo(exposure_time=t, iso=100, f_number=8.0) for t in (0.01, 0.04, 0.16)]
    times, folded = exposure.effective_exposures(same, [Path("a"), Path("b"), Path("c")])
    assert not folded and times == pytest.approx([0.01, 0.04, 0.16])


def test_missing_exposure_names_the_flags():
    with pytest.raises(ExposureError) as info:
        exposure.effective_exposures([CaptureInfo(exposure_time=0.1), CaptureInfo()], [Path("a.jpg"), Path("b.jpg")])
    assert "b.jpg" in str(info.value) and "--exposures" in str(info.value) and "--ev" in str(info.value)


def test_normalise_and_distinct():
    assert exposure.normalise([0.5, 0.125, 2.0]) == pytest.approx([4.0, 1.0, 16.0])
    exposure.check_distinct([1.0, 4.0], ["a", "b"])
    with pytest.raises(ExposureError, match="same exposure"):
        exposure.check_distinct([1.0, 1.05, 4.0], ["a", "b", "c"])
