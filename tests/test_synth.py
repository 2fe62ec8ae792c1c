"""The synthetic bracket engine: determinism, layout, camera model, motion, splits, sources, classic."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from smarthdr_cli.camera import expose, s_curve
from smarthdr_cli.data.synth import SynthSettings, generate, layout, parse_split, photos
from smarthdr_cli.data.synth.camera_motion import camera_warp
from smarthdr_cli.data.synth.layout import FRAME_NAMES, GT_NAME, JPEG_FRAME_NAMES, MOTION_NAME, write_scene
from smarthdr_cli.data.synth.options import check_settings
from smarthdr_cli.data.synth.profiles import UNEVEN_EV_SETS
from smarthdr_cli.data.synth.scene import synth_scene
from smarthdr_cli.errors import InputError, OutputError
from smarthdr_cli.exposure import read_exposure_file
from smarthdr_cli.io.hdr import read_hdr, write_hdr
from smarthdr_cli.io.ldr import read_ldr
from smarthdr_cli.merge import MergeSettings, run_merge
from smarthdr_cli.metrics import psnr_mu
from smarthdr_cli.reading import ReadOptions, read_bracket, resolve_inputs

STILL = {"objects": (0, 0), "camera_shift": 0.0, "camera_rotation": 0.0}
QUIET = {"noise": 0.0, "shot_gain": 0.0}


def small(**changes) -> SynthSettings:
    return SynthSettings(**{"height": 96, "width": 128, **changes})


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def linear(frame: np.ndarray) -> np.ndarray:
    """A frame's codes back to linear signal (gamma 2.2 camera)."""
    return (frame.astype(np.float64) / np.iinfo(frame.dtype).max) ** 2.2


# --------------------------------------------------------------------------- determinism


def test_same_settings_give_identical_scenes():
    first, second = synth_scene(small(), 3), synth_scene(small(), 3)
    assert all(np.array_equal(a, b) for a, b in zip(first.frames, second.frames))
    assert np.array_equal(first.gt, second.gt) and np.array_equal(first.motion, second.motion)
    assert first.params == second.params
    assert not np.array_equal(first.frames[1], synth_scene(small(), 4).frames[1])
    assert not np.array_equal(first.frames[1], synth_scene(small(seed=1), 3).frames[1])


def test_scene_depends_only_on_seed_and_index(tmp_path):
    generate(tmp_path / "three", small(scenes=3))
    generate(tmp_path / "again", small(scenes=3))
    generate(tmp_path / "five", small(scenes=5))
    generate(tmp_path / "split", small(split={"labeled": 1, "unlabeled": 2, "test": 2}))
    three, five, split = files_of(tmp_path / "three"), files_of(tmp_path / "five"), files_of(tmp_path / "split")
    assert three == files_of(tmp_path / "again")  # byte for byte, synth.json included
    for index in range(3):
        for name in [*FRAME_NAMES, GT_NAME, MOTION_NAME, "exposure.txt"]:
            assert three[f"000{index}/{name}"] == five[f"000{index}/{name}"]
    assert three["0002/input_3.tif"] == split["unlabeled/0002/input_3.tif"]
    assert three["0001/input_1.tif"] == split["unlabeled/0001/input_1.tif"]
    assert five["0004/" + GT_NAME] == split["test/0004/" + GT_NAME]


def test_noise_and_objects_do_not_change_the_rest_of_the_scene():
    """One random stream per part: turning noise or objects off leaves the background as it was."""
    plain = synth_scene(small(**STILL, **QUIET), 5)
    noisy = synth_scene(small(**STILL), 5)
    moving = synth_scene(small(**QUIET), 5)
    assert np.array_equal(plain.radiance[1], noisy.radiance[1])
    assert np.array_equal(plain.gt[~moving.motion], moving.gt[~moving.motion])
    assert plain.ev == noisy.ev == moving.ev


# --------------------------------------------------------------------------- files


def test_scene_folder_round_trip(tmp_path):
    scene = synth_scene(small(), 0)
    folder = tmp_path / "0000"
    write_scene(scene, folder, with_gt=True)

    files, exposure_file = resolve_inputs([folder])
    assert [f.name for f in files] == list(FRAME_NAMES) and exposure_file == folder / "exposure.txt"
    times = read_exposure_file(exposure_file, 3)
    assert times == pytest.approx([2.0 ** (ev - scene.ev[0]) for ev in scene.ev])
    assert times == pytest.approx(list(scene.exposures)) and scene.exposures[0] == 1.0

    bracket = read_bracket([folder], ReadOptions(align="none")).bracket
    assert bracket.reference == 1 and bracket.bits == 16
    assert np.allclose(bracket.exposures, scene.exposures)
    for image, frame in zip(bracket.images, scene.frames):
        assert np.array_equal(image, frame.astype(np.float32) / 65535.0)

    gt = read_hdr(folder / GT_NAME)  # RGBE: 8-bit mantissa shared by the three channels
    assert gt.shape == scene.gt.shape
    assert np.all(np.abs(gt - scene.gt) <= 0.01 * scene.gt.max(axis=2, keepdims=True) + 1e-12)
    mask = cv2.imread(str(folder / MOTION_NAME), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, scene.motion) and scene.motion.any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0000"]  # no temporary folder left

    with pytest.raises(OutputError, match="already exists"):
        write_scene(scene, folder, with_gt=True)
    write_scene(scene, tmp_path / "unlabeled", with_gt=False)
    assert not (tmp_path / "unlabeled" / GT_NAME).exists() and (tmp_path / "unlabeled" / "input_3.tif").is_file()


def test_eight_bit_frames(tmp_path):
    scene = synth_scene(small(bits=8), 1)
    assert all(frame.dtype == np.uint8 for frame in scene.frames)
    write_scene(scene, tmp_path / "s", with_gt=False)
    pixels, bits = read_ldr(tmp_path / "s" / "input_2.tif")
    assert bits == 8 and np.array_equal(pixels, scene.frames[1].astype(np.float32) / 255.0)


def test_a_failed_scene_leaves_nothing_behind(tmp_path, monkeypatch):
    written = []

    def failing(path: Path, frame: np.ndarray) -> None:
        if written:
            raise OSError(28, "No space left on device")
        written.append(path)
        path.write_bytes(b"partial")

    monkeypatch.setattr(layout, "_write_frame", failing)
    with pytest.raises(OutputError, match="No space left"):
        write_scene(synth_scene(small(), 0), tmp_path / "0000", with_gt=True)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- camera model


def test_static_frames_agree_with_the_ground_truth():
    scene = synth_scene(small(**STILL, **QUIET), 2)
    assert scene.gt.dtype == np.float32 and 0.0 <= scene.gt.min() and scene.gt.max() <= 1.0
    assert not scene.motion.any()
    for frame, t in zip(scene.frames, scene.exposures):
        value = frame.astype(np.float64) / 65535.0
        mid = (value > 0.1) & (value < 0.9)
        assert mid.mean() > 0.01
        assert np.allclose(linear(frame)[mid] / t, scene.gt[mid], rtol=2e-3)


def test_noise_follows_the_poisson_gaussian_model():
    quiet = synth_scene(small(**STILL, **QUIET), 1)
    noisy = synth_scene(small(**STILL, noise=0.002, shot_gain=4e-4), 1)
    read, shot = noisy.params["noise"]["read"], noisy.params["noise"]["shot_gain"]
    assert 0.001 <= read <= 0.004 and read / shot == pytest.approx(5.0)  # per-scene ISO factor 2^U(-1, 1)
    checked = 0
    for index, t in enumerate(quiet.exposures):
        assert np.array_equal(quiet.frames[index], expose(quiet.radiance[index], t, bits=16))  # no noise at all
        signal = quiet.radiance[index].astype(np.float64) * t
        usable = (signal > 0.01) & (signal < 0.8)
        if usable.sum() < 1000:
            continue
        z = (linear(noisy.frames[index]) - signal)[usable] / np.sqrt(read**2 + shot * signal[usable])
        assert abs(z.mean()) < 0.05 and 0.93 < z.std() < 1.07
        checked += 1
    assert checked >= 2


def test_long_frame_clips_and_short_frame_keeps_more():
    for index in range(4):
        scene = synth_scene(small(), index)
        clipped = [(frame == 65535).any(axis=2).mean() for frame in scene.frames]
        assert clipped[2] > 0.001 and clipped[0] <= clipped[1] <= clipped[2]
        assert scene.gt.max() <= 1.0


def test_s_curve_response():
    scene = synth_scene(small(**STILL, **QUIET, response="s-curve"), 2)
    for frame, radiance, t in zip(scene.frames, scene.radiance, scene.exposures):
        assert np.array_equal(frame, expose(radiance, t, curve=s_curve, bits=16))


# --------------------------------------------------------------------------- motion


def test_objects_move_inside_the_mask_only():
    scene = synth_scene(small(objects=(2, 3), camera_shift=0.0, camera_rotation=0.0, **QUIET), 6)
    mask = scene.motion
    assert 0.01 < mask.mean() < 0.8 and len(scene.params["objects"]) in (2, 3)
    reference = scene.radiance[1]
    assert np.array_equal(scene.gt, np.minimum(reference, 1.0))
    for index in (0, 2):
        assert np.array_equal(scene.radiance[index][~mask], reference[~mask])
        expected = expose(reference, scene.exposures[index], bits=16)  # the reference's content at this exposure
        assert np.array_equal(scene.frames[index][~mask], expected[~mask])
        differs = np.abs(scene.radiance[index] - reference).max(axis=2) > 0.01 * reference.max(axis=2)
        assert differs[mask].mean() > 0.3


def test_camera_motion_moves_non_reference_frames_only():
    scene = synth_scene(small(objects=(0, 0), camera_shift=3.0, camera_rotation=0.5), 7)
    moves = scene.params["camera"]
    assert moves[1] == {"shift": [0.0, 0.0], "rotation": 0.0}
    for index in (0, 2):
        shift, rotation = moves[index]["shift"], moves[index]["rotation"]
        assert max(abs(v) for v in shift) <= 3.0 and abs(rotation) <= 0.5 and shift != [0.0, 0.0]
        moved = camera_warp(scene.radiance[1], shift, rotation)  # shift, rotation rounded in params
        assert np.allclose(scene.radiance[index], moved, rtol=1e-3, atol=1e-5 * float(moved.max()))
    assert not scene.motion.any()  # global motion is not marked


# --------------------------------------------------------------------------- a merge recovers the truth


def test_classic_recovers_a_static_synthetic_scene(tmp_path):
    """Measured: 55.5 and 49.2 dB (the reference frame alone: 46.0 and 41.6 dB)."""
    settings = SynthSettings(height=192, width=288, **STILL)
    for index in range(2):
        folder = tmp_path / f"{index:04d}"
        scene = synth_scene(settings, index)
        write_scene(scene, folder, with_gt=True)
        output = tmp_path / f"{index}.exr"
        run_merge([folder], MergeSettings(output=output, backend="classic", align="none"))
        truth = read_hdr(folder / GT_NAME)
        score = psnr_mu(read_hdr(output), truth)
        alone = psnr_mu(linear(scene.frames[1]) / scene.exposures[1], truth)
        assert score > 46.0 and score > alone + 5.0, (index, score, alone)


# --------------------------------------------------------------------------- datasets and settings


def test_split_layout_and_summary(tmp_path):
    out = tmp_path / "data"
    seen = []
    summary = generate(out, small(split=parse_split("labeled=2,unlabeled=1,test=1")), progress=lambda d, n: seen.append((d, n)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert sorted(p.name for p in out.iterdir()) == ["labeled", "synth.json", "test", "unlabeled"]
    assert [p.name for p in sorted((out / "labeled").iterdir())] == ["0000", "0001"]
    assert [p.name for p in (out / "unlabeled").iterdir()] == ["0002"]
    assert [p.name for p in (out / "test").iterdir()] == ["0003"]
    assert (out / "labeled/0001" / GT_NAME).is_file() and (out / "test/0003" / GT_NAME).is_file()
    assert not (out / "unlabeled/0002" / GT_NAME).exists()
    assert json.loads((out / "synth.json").read_text()) == summary
    assert summary["settings"]["split"] == {"labeled": 2, "unlabeled": 1, "test": 1}
    assert [s["folder"] for s in summary["scenes"]] == ["labeled/0000", "labeled/0001", "unlabeled/0002", "test/0003"]
    assert [s["ground_truth"] for s in summary["scenes"]] == [True, True, False, True]
    assert summary["seed"] == 0 and summary["smarthdr_version"]
    assert {"ev", "exposures", "scene", "camera", "objects", "noise"} <= set(summary["scenes"][0])


def test_worker_processes_write_the_same_dataset(tmp_path):
    generate(tmp_path / "serial", small(scenes=3))
    generate(tmp_path / "parallel", small(scenes=3, jobs=2))
    assert files_of(tmp_path / "serial") == files_of(tmp_path / "parallel")


def test_parse_split():
    assert parse_split("labeled=5,unlabeled=69,test=15") == {"labeled": 5, "unlabeled": 69, "test": 15}
    assert list(parse_split(" test = 2 , labeled=1")) == ["test", "labeled"]


@pytest.mark.parametrize(
    "text", ["labeled=5,train=2", "labeled", "labeled=", "labeled=-1", "labeled=x", "labeled=1,labeled=2", "test=0", ""]
)
def test_bad_split_text_is_refused(text):
    with pytest.raises(InputError, match="--split"):
        parse_split(text)


def test_output_folder_rules(tmp_path):
    out = tmp_path / "data"
    generate(out, small(scenes=3))
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        generate(out, small(scenes=2))
    generate(out, small(scenes=2, seed=9, overwrite=True))  # replaces the previous dataset, keeps other files
    assert sorted(p.name for p in out.iterdir()) == ["0000", "0001", "notes.txt", "synth.json"]
    assert json.loads((out / "synth.json").read_text())["seed"] == 9
    with pytest.raises(OutputError, match="does not exist"):
        generate(tmp_path / "missing" / "data", small(scenes=1))


def test_overwrite_never_replaces_folders_synth_did_not_write(tmp_path):
    """A photo folder whose brackets happen to be called 0000, 0001: --overwrite must refuse
    before anything is removed, the user's folder intact."""
    out = tmp_path / "photos"
    (out / "0001").mkdir(parents=True)
    (out / "0001" / "IMG_1.jpg").write_bytes(b"my photo")
    with pytest.raises(OutputError, match="not written by synth"):
        generate(out, small(scenes=3, overwrite=True))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["0001", "0001/IMG_1.jpg"]
    assert (out / "0001" / "IMG_1.jpg").read_bytes() == b"my photo"


@pytest.mark.parametrize(
    "changes",
    [
        {"height": 32},
        {"width": 63},
        {"bits": 12},
        {"response": "linear"},
        {"ev_sets": ((0.0, 0.0, 2.0),)},
        {"ev_sets": ((-2.0, 0.0),)},
        {"ev_sets": ()},
        {"objects": (3, 1)},
        {"noise": -0.1},
        {"seed": -1},
        {"scenes": 0},
        {"scenes": 3, "split": {"labeled": 1, "test": 1}},
        {"hdr_source": Path("/nonexistent/hdr")},
    ],
)
def test_bad_settings_are_refused(changes, tmp_path):
    with pytest.raises(InputError):
        generate(tmp_path / "out", small(**changes))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- real HDR sources


@pytest.fixture
def hdr_folder(tmp_path) -> Path:
    """A tiny equirectangular .hdr (2:1) and a small .exr photograph, with a wide dynamic range."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "sources"
    folder.mkdir()
    rows = np.linspace(0.0, 1.0, 64, dtype=np.float32)[:, None, None]
    panorama = np.exp2(-8.0 + 10.0 * rng.random((64, 128, 3), dtype=np.float32) * rows).astype(np.float32)
    write_hdr(folder / "pano.hdr", panorama)
    write_hdr(folder / "photo.exr", np.exp2(-6.0 + 8.0 * rng.random((80, 100, 3), dtype=np.float32)))
    return folder


def test_hdr_source_scenes(tmp_path, hdr_folder):
    photos._load_source.cache_clear()
    summary = generate(tmp_path / "out", small(scenes=6, hdr_source=hdr_folder))
    chosen = [s["scene"]["file"] for s in summary["scenes"]]
    assert set(chosen) == {"pano.hdr", "photo.exr"} and all(s["scene"]["kind"] == "hdr" for s in summary["scenes"])
    assert photos._load_source.cache_info().misses == 2  # each file decoded once
    for entry in summary["scenes"]:
        left, top, width, height = entry["scene"]["crop"]
        if entry["scene"]["file"] == "pano.hdr":
            assert top + height <= 32  # inside the middle band: rows 16..48 of 64
        assert width / height == pytest.approx(128 / 96, rel=0.05)
    scene = synth_scene(small(hdr_source=hdr_folder), 0)
    assert scene.gt.shape == (96, 128, 3) and scene.gt.max() <= 1.0
    luminance = scene.radiance[1] @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    assert np.percentile(luminance, 99.9) > 0.1  # exposed for the bracket, not left in source units


def test_broken_hdr_source_fails_before_writing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no .exr or .hdr"):
        generate(tmp_path / "out", small(scenes=1, hdr_source=empty))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.hdr").write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 4 +X 4\n" + b"\x00" * 7)
    with pytest.raises(InputError, match="bad.hdr"):
        generate(tmp_path / "out", small(scenes=2, hdr_source=broken))
    assert not (tmp_path / "out").exists()


def test_shared_hdr_training_panoramas(tmp_path, shared_data):
    source = shared_data / "hdr-train"
    if not source.is_dir():
        pytest.skip("../shared/data/hdr-train is not present")
    summary = generate(tmp_path / "out", small(scenes=2, hdr_source=source))
    for entry in summary["scenes"]:
        assert (source / entry["scene"]["file"]).is_file()
        folder = tmp_path / "out" / entry["folder"]
        assert sorted(p.name for p in folder.iterdir()) == sorted([*FRAME_NAMES, GT_NAME, MOTION_NAME, "exposure.txt"])
        assert 0.0 < read_hdr(folder / GT_NAME).max() <= 1.0


# --------------------------------------------------------------------------- profiles: how scenes are shot


def profiled(profile: str, **changes) -> SynthSettings:
    return SynthSettings(**{"height": 96, "width": 144, "profile": profile, **changes})


def saturated(frame: np.ndarray, every_channel: bool = False) -> float:
    clipped = frame >= 0.98 * np.iinfo(frame.dtype).max
    return float((clipped.all(axis=2) if every_channel else clipped.any(axis=2)).mean())


@pytest.fixture
def photograph(tmp_path) -> Path:
    """A smooth, photograph-like radiance map over about 12 stops (channels move together)."""
    from smarthdr_cli.data.synth.primitives import value_noise

    rng = np.random.default_rng(1)
    stops = -10.0 + 12.0 * np.clip(0.7 * value_noise(rng, 120, 180, 30) + 0.3 * value_noise(rng, 120, 180, 6), 0, 1)
    image = np.exp2(stops)[:, :, None] * np.array([1.0, 0.9, 0.8], np.float32)
    write_hdr(tmp_path / "photo.exr", image.astype(np.float32))
    return tmp_path / "photo.exr"


@pytest.mark.parametrize("profile", ["dim", "bright", "clipped"])
def test_exposure_placement_classes(profile, photograph):
    photos._load_source.cache_clear()
    for index in range(4):
        scene = synth_scene(profiled(profile, hdr_source=photograph), index)
        short, reference, long = (saturated(frame) for frame in scene.frames)
        assert scene.params["capture"]["name"] == profile
        assert saturated(scene.frames[2], every_channel=True) < 0.97  # merge refuses an all-white frame
        if profile == "dim":  # the reference frame nowhere saturated, the short one deep in shadow
            assert reference <= 0.002 and short == 0.0
            assert float(np.percentile(scene.gt, 99.9)) < 0.1
        elif profile == "bright":  # highlights clip in the short frame too
            assert short > 0.0 and scene.params["scene"]["key"] >= 2.5
        else:  # large regions clipped in every frame
            assert short > 0.01 and scene.params["clipped_in_gt"] > 0.01 and scene.params["scene"]["key"] >= 5.0  # 8-40, less where the long frame would clip entirely


def test_camera_motion_class_is_hand_held_with_perspective():
    for index in range(3):
        scene = synth_scene(profiled("camera-motion", **QUIET), index)
        capture = scene.params["capture"]
        assert capture["camera_shift"] == pytest.approx(0.03 * 144) and capture["camera_rotation"] == 1.5
        for frame in (0, 2):
            move = scene.params["camera"][frame]
            assert max(abs(v) for v in move["shift"]) <= 0.03 * 144 and abs(move["rotation"]) <= 1.5
            assert move["perspective"] and max(abs(v) for v in move["perspective"]) <= 0.01
            moved = camera_warp(scene.radiance[1], move["shift"], move["rotation"], move["perspective"])
            agree = np.abs(scene.radiance[frame] - moved).max(axis=2) <= 1e-3 * np.abs(moved).max(axis=2) + 1e-6
            assert agree.mean() > 0.5  # everywhere but where objects moved (params are rounded: not exact)


def test_perspective_moves_the_corners_by_about_the_given_fraction():
    image = np.zeros((100, 200, 3), np.float32)
    image[2:4, 2:4] = 1.0  # a dot near the top-left corner
    moved = camera_warp(image, [0.0, 0.0], 0.0, [0.02, 0.0])
    before = np.argwhere(image[:, :, 0] > 0.5).mean(axis=0)
    after = np.argwhere(moved[:, :, 0] > 0.25).mean(axis=0)
    assert 0.5 < float(np.hypot(*(after - before))) < 6.0  # 2% of the short side is 2 px; the corner moves a few px
    assert np.array_equal(camera_warp(image, [0.0, 0.0], 0.0, [0.0, 0.0]), camera_warp(image, [0.0, 0.0], 0.0))


def test_tone_jpeg_class_writes_camera_jpegs_with_lifted_blacks(tmp_path):
    settings = profiled("tone-jpeg", scenes=3)
    summary = generate(tmp_path / "out", settings)
    responses = []
    for entry, index in zip(summary["scenes"], range(3)):
        capture = entry["capture"]
        assert capture["response"] in ("s-curve", "film") and capture["bits"] == 8 and 70 <= capture["jpeg_quality"] <= 95
        assert 0.02 <= capture["black"] <= 0.075
        folder = tmp_path / "out" / entry["folder"]
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted([*JPEG_FRAME_NAMES, GT_NAME, MOTION_NAME, "exposure.txt"])
        scene = synth_scene(settings, index)
        for name, frame in zip(JPEG_FRAME_NAMES, scene.frames):
            assert np.array_equal(cv2.imread(str(folder / name))[:, :, ::-1], frame)  # what is on disk is what was made
        # the darkest codes sit at the black offset, not at 0 (JPEG ringing aside)
        assert np.percentile(scene.frames[0], 1) >= 255 * capture["black"] - 6
        # merge calibrates a JPEG bracket even in a Kalantari folder with exposure.txt
        frames, exposure_file = resolve_inputs([folder])
        report = read_bracket(frames, ReadOptions(), exposure_file=exposure_file)
        assert exposure_file is not None
        responses.append(report.response)
    # measured: scene 0 too flat to constrain a curve (merge says so and assumes gamma), 1 and 2 calibrated
    assert responses.count("calibrated") >= 2 and set(responses) <= {"calibrated", "gamma 2.2"}


def test_film_jpeg_camera_is_film_jpeg_noisy_and_hand_held():
    """The second camera of the domain-shift experiment: every scene film-curve JPEG, lifted
    blacks, 2-8x the tone-jpeg class's lowest noise, hand-held as camera-motion."""
    for index in range(4):
        scene = synth_scene(profiled("film-jpeg"), index)
        capture = scene.params["capture"]
        assert capture["name"] == "film-jpeg" and capture["response"] == "film" and capture["bits"] == 8
        assert 70 <= capture["jpeg_quality"] <= 95 and 0.02 <= capture["black"] <= 0.075
        assert capture["camera_shift"] == pytest.approx(0.03 * 144) and capture["camera_rotation"] == 1.5
        assert 2.0 <= scene.params["noise"]["iso_factor"] <= 8.0
        assert np.percentile(scene.frames[0], 1) >= 255 * capture["black"] - 6


def test_film_curve_lifts_shadows_more_than_gamma():
    from smarthdr_cli.camera import film_curve, gamma_curve, with_black

    linear = np.array([0.0, 0.001, 0.01, 0.1, 1.0])
    film = film_curve(linear)
    assert film[0] == 0.0 and film[-1] == pytest.approx(1.0) and np.all(np.diff(film) > 0)
    gamma = gamma_curve(linear)
    assert film[3] > gamma[3] + 0.1  # midtones lifted, highlights compressed: not a gamma curve
    assert film[1] < gamma[1]  # a toe in the deep shadows
    lifted = with_black(film_curve, 0.05)(linear)
    assert lifted[0] == pytest.approx(0.05) and lifted[-1] == pytest.approx(1.0)


def test_mixed_profile_covers_every_factor():
    settings = profiled("mixed", procedural_share=0.0)
    captures = [synth_scene(settings, index).params["capture"] for index in range(40)]
    names = {c["name"] for c in captures}
    assert {"mixed:standard", "mixed:dim", "mixed:bright", "mixed:clipped"} <= names
    assert {tuple(c["ev"]) for c in captures} & set(UNEVEN_EV_SETS)
    assert {c["response"] for c in captures} == {"gamma", "s-curve", "film"} and {c["bits"] for c in captures} == {8, 16}
    assert any(c["jpeg_quality"] for c in captures) and any(c["perspective"] > 0.005 for c in captures)
    assert max(c["objects"][1] for c in captures) == 6 and min(c["objects"][0] for c in captures) == 0


def test_procedural_share_mixes_photographs_and_procedural_scenes(hdr_folder):
    photos._load_source.cache_clear()
    settings = profiled("mixed", hdr_source=hdr_folder, procedural_share=0.5)
    kinds = [synth_scene(settings, index).params["scene"]["kind"] for index in range(12)]
    assert set(kinds) == {"hdr", "procedural"}
    with pytest.raises(InputError, match="--procedural-share needs --hdr-source"):
        check_settings(profiled("mixed", procedural_share=0.5))


def test_custom_profile_is_the_first_versions_engine():
    """The capture flags keep their meaning: a custom scene carries no drawn capture."""
    scene = synth_scene(small(), 2)
    assert "capture" not in scene.params and scene.params["response"] == "gamma" and scene.params["bits"] == 16


def test_profile_flags_conflict_on_the_command_line(tmp_path, runner):
    from smarthdr_cli.app import app

    result = runner.invoke(app, ["synth", str(tmp_path / "o"), "--profile", "dim", "--bits", "8", "--scenes", "1"])
    assert result.exit_code == 2 and "--bits: --profile dim draws it per scene" in result.output
    result = runner.invoke(app, ["synth", str(tmp_path / "o"), "--profile", "nope", "--scenes", "1"])
    assert result.exit_code == 2 and "--profile nope" in result.output
    result = runner.invoke(app, ["synth", str(tmp_path / "o"), "--profile", "clipped", "--scenes", "2", "--height", "64", "--width", "96", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "synth.json").read_text())["settings"]["profile"] == "clipped"
