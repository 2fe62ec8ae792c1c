from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from smarthdr_cli.errors import InputError
from smarthdr_cli.io.capture import capture_info
from smarthdr_cli.io.exif import orientation_turns, read_exif
from smarthdr_cli.io.ldr import read_ldr


def test_ldr_bit_depths(tmp_path: Path):
    image8 = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    iio.imwrite(tmp_path / "a.png", image8)
    pixels, bits = read_ldr(tmp_path / "a.png")
    assert bits == 8 and np.allclose(pixels * 255, image8)
    image16 = (np.arange(4 * 5 * 3, dtype=np.uint16) * 1000).reshape(4, 5, 3)
    iio.imwrite(tmp_path / "a.tif", image16)
    pixels, bits = read_ldr(tmp_path / "a.tif")
    assert bits == 16 and np.allclose(pixels * 65535, image16)
    import cv2

    cv2.imwrite(str(tmp_path / "rgb16.png"), np.ascontiguousarray(image16[:, :, ::-1]))  # 16-bit RGB PNG
    pixels, bits = read_ldr(tmp_path / "rgb16.png")
    assert bits == 16 and np.allclose(pixels * 65535, image16)
    iio.imwrite(tmp_path / "grey.png", image8[:, :, 0])
    pixels, _ = read_ldr(tmp_path / "grey.png")
    assert pixels.shape == (4, 5, 3)


def test_ldr_refuses_garbage(tmp_path: Path):
    (tmp_path / "x.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(InputError, match="x.jpg"):
        read_ldr(tmp_path / "x.jpg")
    iio.imwrite(tmp_path / "f.tif", np.ones((4, 4, 3), np.float32))
    with pytest.raises(InputError, match="floating-point"):
        read_ldr(tmp_path / "f.tif")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_table_matches_exif(orientation):
    """Apply the table to an image 'as stored' for each EXIF orientation and get the upright one."""
    upright = np.arange(6).reshape(2, 3)
    stored = {
        1: upright, 2: upright[:, ::-1], 3: upright[::-1, ::-1], 4: upright[::-1],
        5: upright.T, 6: np.rot90(upright, 1), 7: np.rot90(upright.T, 2), 8: np.rot90(upright, -1),
    }[orientation]
    turns, mirror = orientation_turns(orientation)
    shown = stored[:, ::-1] if mirror else stored
    assert np.array_equal(np.rot90(shown, turns), upright)


def test_exif_of_real_cameras(shared_data: Path):
    frob = [read_exif(shared_data / "brackets" / "frobisher" / f"IMG_260{i}.jpg") for i in range(3)]
    assert [f.exposure_time for f in frob] == pytest.approx([1 / 8, 1.0, 8.0])
    assert frob[0].iso == 100 and frob[0].f_number == pytest.approx(8.0)
    assert frob[0].camera == "Canon EOS 5D Mark II"
    exif = shared_data / "exif"
    assert read_exif(exif / "canon-ixus.jpg").exposure_time == pytest.approx(1 / 350)
    assert read_exif(exif / "kodak-dc240.jpg").exposure_time == pytest.approx(1 / 30)
    assert read_exif(exif / "nikon-e950.jpg").exposure_time == pytest.approx(1 / 77)
    # sony-d700 has only the APEX ShutterSpeedValue (5): t = 2^-5 s.
    assert read_exif(exif / "sony-d700.jpg").exposure_time == pytest.approx(1 / 32)
    # fujifilm-dx10 has no ExposureTime either, but an APEX ShutterSpeedValue of 33/5.
    assert read_exif(exif / "fujifilm-dx10.jpg").exposure_time == pytest.approx(2 ** -6.6)
    assert read_exif(exif / "olympus-d320l.jpg").exposure_time is None


def test_raw_metadata_falls_back_to_libraw(shared_data: Path):
    crw = capture_info(shared_data / "raw" / "RAW_CANON_D30_SRGB.CRW")
    kdc = capture_info(shared_data / "raw" / "RAW_KODAK_DC50.KDC")
    assert crw.source == "libraw" and crw.exposure_time == pytest.approx(0.00496, rel=1e-2)
    assert kdc.exposure_time == pytest.approx(0.00435, rel=1e-2)
    arw = capture_info(shared_data / "malformed" / "exifpy_sony_a7iii_stripped.ARW")
    assert arw.source == "exif" and arw.exposure_time == pytest.approx(1 / 400)
    z9 = capture_info(shared_data / "malformed" / "exifpy_nikon_z9_htz_cropped.dng")
    assert z9.exposure_time == pytest.approx(30.0)


def test_jpeg_read_directly_and_a_png_named_jpg_still_read(tmp_path: Path):
    """JPEGs are decoded by Pillow itself; a file named .jpg that holds another format goes
    through imageio as before, by its content."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "real.jpg", pixels, quality=95)
    image, bits = read_ldr(tmp_path / "real.jpg")
    assert bits == 8 and image.shape == (40, 60, 3) and image.dtype == np.float32
    assert np.array_equal(np.round(image * 255).astype(np.uint8), iio.imread(tmp_path / "real.jpg"))
    iio.imwrite(tmp_path / "png.png", pixels)
    (tmp_path / "misnamed.jpg").write_bytes((tmp_path / "png.png").read_bytes())
    image, bits = read_ldr(tmp_path / "misnamed.jpg")
    assert bits == 8 and np.array_equal(np.round(image * 255).astype(np.uint8), pixels)
    grey = rng.integers(0, 256, (30, 20), dtype=np.uint8)
    iio.imwrite(tmp_path / "grey.jpg", grey, quality=95)
    assert read_ldr(tmp_path / "grey.jpg")[0].shape == (30, 20, 3)


def test_jpeg_pixels_are_pillows_and_a_cut_file_is_refused(tmp_path: Path):
    """Colour and grey JPEGs (decoded by OpenCV) come out as Pillow decodes them, EXIF
    orientation not applied (the reader does that); a file cut short is one clear error."""
    from PIL import Image

    rng = np.random.default_rng(2)
    smooth = np.cumsum(rng.integers(-3, 4, (96, 128, 3)), axis=1) + 128  # photo-like, chroma-subsampled
    colour = Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the decoder must not turn the pixels itself
    colour.save(tmp_path / "colour.jpg", quality=90, exif=exif.tobytes())
    colour.convert("L").save(tmp_path / "grey.jpg", quality=90)
    for name in ("colour.jpg", "grey.jpg"):
        with Image.open(tmp_path / name) as image:
            expected = np.asarray(image.convert("RGB"))
        pixels, _ = read_ldr(tmp_path / name)
        assert pixels.shape == (96, 128, 3)
        assert np.array_equal(np.round(pixels * 255).astype(np.uint8), expected), name
    data = (tmp_path / "colour.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.jpg: cannot decode image \(.*\)$") as caught:
        read_ldr(tmp_path / "cut.jpg")
    assert "\n" not in str(caught.value)


def test_codes_are_the_8_bit_values_and_16_bit_frames_stay_floats(tmp_path: Path):
    image8 = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    iio.imwrite(tmp_path / "a.png", image8)
    codes, bits = read_ldr(tmp_path / "a.png", codes=True)
    assert bits == 8 and codes.dtype == np.uint8 and np.array_equal(codes, image8)
    assert np.array_equal(read_ldr(tmp_path / "a.png")[0], np.divide(image8, np.float32(255.0), dtype=np.float32))
    iio.imwrite(tmp_path / "b.tif", image8.astype(np.uint16) * 257)
    values, bits = read_ldr(tmp_path / "b.tif", codes=True)
    assert bits == 16 and values.dtype == np.float32
