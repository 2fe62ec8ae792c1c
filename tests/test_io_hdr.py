from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from smarthdr_cli.errors import InputError, OutputError
from smarthdr_cli.io.hdr import read_hdr, write_hdr


def test_exr_round_trip_half_and_float(tmp_path: Path):
    rng = np.random.default_rng(1)
    image = (rng.random((7, 9, 3)) * 50).astype(np.float32)
    write_hdr(tmp_path / "h.exr", image, attributes={"smarthdr:backend": "classic", "smarthdr:exposureTimes": [1.0, 4.0]})
    back = read_hdr(tmp_path / "h.exr")
    assert np.allclose(back, image, rtol=1e-3)
    header = OpenEXR.File(str(tmp_path / "h.exr")).header()
    assert header["smarthdr:backend"] == "classic"
    assert header["smarthdr:exposureTimes"] == pytest.approx([1.0, 4.0])
    assert header["compression"] == OpenEXR.PIZ_COMPRESSION  # lossless, faster and smaller than ZIP on photographs
    assert OpenEXR.File(str(tmp_path / "h.exr")).channels()["RGB"].pixels.dtype == np.float16
    write_hdr(tmp_path / "f.exr", image, float32=True)
    assert np.array_equal(read_hdr(tmp_path / "f.exr"), image)


def test_radiance_known_values_and_tolerant_header(tmp_path: Path):
    # Values exactly representable in RGBE (mantissa/256 * 2^e with a shared exponent).
    image = np.array([[[1.0, 0.5, 0.25], [2.0, 1.0, 0.0]], [[0.125, 0.125, 0.125], [8.0, 4.0, 2.0]]], np.float32)
    write_hdr(tmp_path / "k.hdr", image)
    assert np.array_equal(read_hdr(tmp_path / "k.hdr"), image)
    data = (tmp_path / "k.hdr").read_bytes()
    (tmp_path / "view.hdr").write_bytes(b"VIEW= -vtv -vp 0 0 0\n" + data)  # header line before #?RADIANCE
    assert np.array_equal(read_hdr(tmp_path / "view.hdr"), image)


def test_radiance_relative_precision(tmp_path: Path):
    rng = np.random.default_rng(2)
    image = (rng.random((16, 20, 3)) * 100 + 1).astype(np.float32)
    write_hdr(tmp_path / "r.hdr", image)
    back = read_hdr(tmp_path / "r.hdr")
    # RGBE shares one exponent per pixel: error relative to the pixel's largest channel < 1%.
    assert np.max(np.abs(back - image) / image.max(axis=2, keepdims=True)) < 0.01


def test_write_refuses_existing_and_leaves_no_temp(tmp_path: Path):
    image = np.ones((4, 4, 3), np.float32)
    write_hdr(tmp_path / "a.exr", image)
    with pytest.raises(OutputError, match="--overwrite"):
        write_hdr(tmp_path / "a.exr", image * 2)
    assert np.allclose(read_hdr(tmp_path / "a.exr"), 1.0)
    write_hdr(tmp_path / "a.exr", image * 2, overwrite=True)
    assert np.allclose(read_hdr(tmp_path / "a.exr"), 2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.exr"]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch):
    import smarthdr_cli.io.hdr as hdr

    def boom(temp, *args):
        temp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hdr, "_write_exr", boom)
    with pytest.raises(OutputError, match="No space left"):
        write_hdr(tmp_path / "full.exr", np.ones((4, 4, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_corrupt_files_give_input_errors(tmp_path: Path):
    (tmp_path / "bad.exr").write_bytes(b"v/1\x01" + b"\x00" * 40)
    (tmp_path / "bad.hdr").write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 10 +X 10\n\x02\x02")
    for name in ("bad.exr", "bad.hdr", "missing.exr"):
        with pytest.raises(InputError):
            read_hdr(tmp_path / name)


def test_shared_hdr_files(shared_data: Path):
    for path in sorted((shared_data / "hdr").glob("*.exr")):
        image = read_hdr(path)
        assert image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 100
        assert np.isfinite(image).all() and image.max() > 1.0 > image.min() >= 0.0
    # Luminance/chroma files become RGB whose luminance matches the stored Y channel.
    path = shared_data / "hdr" / "LuminanceChroma_CrissyField.exr"
    luma = OpenEXR.File(str(path), separate_channels=True).channels()["Y"].pixels.astype(np.float32)
    rgb = read_hdr(path)
    assert np.allclose(rgb @ np.array([0.2126, 0.7152, 0.0722]), luma, atol=0.02 * luma.max())
    corrupt = shared_data / "malformed" / "memorial_CRLF_corrupted.hdr"
    with pytest.raises(InputError) as info:
        read_hdr(corrupt)
    assert "\n" not in str(info.value)


def test_shared_training_hdrs_read(shared_data: Path):
    for path in sorted((shared_data / "hdr-train").glob("*.hdr"))[:4]:
        image = read_hdr(path)
        assert image.shape == (512, 1024, 3) and image.max() > 10


def test_outputs_get_the_usual_permissions(tmp_path):
    """Temp files are 0600 (mkstemp); the renamed result follows the umask like any new file."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        write_hdr(tmp_path / "out.exr", np.ones((4, 4, 3), np.float32))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.exr").stat().st_mode) == 0o644
