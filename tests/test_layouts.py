"""Dataset readers (Kalantari, Hu-like, user folders) and the on-disk scene cache."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import exif_jpeg
from smarthdr_cli.camera import render_bracket
from smarthdr_cli.data import layouts, patches
from smarthdr_cli.data.grid import grid_origins
from smarthdr_cli.data.layouts import ReadSettings, discover_scenes, read_scene
from smarthdr_cli.data.synth.fixed_scene import procedural_radiance
from smarthdr_cli.errors import InputError, SmartHDRError
from smarthdr_cli.io.hdr import write_hdr

EXPOSURES = [1.0, 4.0, 16.0]


def kalantari_scene(folder: Path, seed: int, *, gt_name: str = "HDRImg.hdr", names=("a.tif", "b.tif", "c.tif"), evs="0\n2\n4\n", gt_factor: float = 1.0) -> np.ndarray:
    """A Kalantari-style scene: three 16-bit TIFFs (names sort short..long), exposure.txt, GT."""
    folder.mkdir(parents=True, exist_ok=True)
    radiance = procedural_radiance(48, 64, seed=seed)
    for name, frame in zip(names, render_bracket(radiance, EXPOSURES, bits=16, seed=seed)):
        cv2.imwrite(str(folder / name), frame[:, :, ::-1])
    if evs is not None:
        (folder / "exposure.txt").write_text(evs)
    if gt_name:
        write_hdr(folder / gt_name, radiance * gt_factor)
    return radiance


def test_kalantari_layout(tmp_path: Path) -> None:
    truths = [kalantari_scene(tmp_path / "Training" / f"00{i}", seed=i) for i in (1, 2)]
    kalantari_scene(tmp_path / "Test" / "001", seed=9)
    with pytest.raises(InputError, match="several sets"):
        discover_scenes(tmp_path)
    sources = discover_scenes(tmp_path / "Training", "required")
    assert [s.name for s in sources] == ["001", "002"]
    scene = read_scene(sources[1])
    assert np.allclose(scene.exposures, EXPOSURES)
    assert len(scene.frames) == 3 and scene.frames[0].dtype == np.float32
    assert scene.gt is not None and scene.gt_scale == 1.0
    # RGBE keeps about 1% of each value
    assert np.allclose(scene.gt, truths[1], rtol=0.02, atol=1e-6)
    # the reference frame is the middle exposure, brighter than the short one
    assert scene.frames[1].mean() > scene.frames[0].mean()


def test_tolerant_layout_and_single_scene_folder(tmp_path: Path) -> None:
    folder = tmp_path / "scene"
    kalantari_scene(folder, seed=3, gt_name="ref_hdr_aligned.exr", names=("ldr_1.tif", "ldr_2.tif", "ldr_3.tif"), evs=None)
    (folder / "input_exp.txt").write_text("-2\n0\n2\n")
    sources = discover_scenes(folder, "required")
    assert len(sources) == 1 and sources[0].gt is not None and sources[0].exposure_file is not None
    assert np.allclose(read_scene(sources[0]).exposures, EXPOSURES)


def test_user_folder_with_exif_times(tmp_path: Path) -> None:
    radiance = procedural_radiance(48, 64, seed=4)
    folder = tmp_path / "labeled" / "trip"
    for index, (frame, shutter) in enumerate(zip(render_bracket(radiance, EXPOSURES, seed=4), (100, 25, 6))):
        exif_jpeg(folder / f"IMG_{index}.jpg", frame, exposure=(1, shutter))
    write_hdr(folder / "merged.exr", radiance)
    scene = read_scene(discover_scenes(tmp_path / "labeled", "required")[0])
    assert np.allclose(scene.exposures, [1.0, 4.0, 100 / 6], rtol=1e-6)


def test_labels_required_and_forbidden(tmp_path: Path) -> None:
    kalantari_scene(tmp_path / "001", seed=1)
    kalantari_scene(tmp_path / "002", seed=2, gt_name="")
    with pytest.raises(InputError, match="1 scene\\(s\\) have no ground-truth .* 002"):
        discover_scenes(tmp_path, "required")
    sources = discover_scenes(tmp_path, "forbidden")
    assert [s.gt for s in sources] == [None, None]


def test_ambiguous_ground_truth(tmp_path: Path) -> None:
    folder = tmp_path / "001"
    kalantari_scene(folder, seed=1, gt_name="one.hdr")
    write_hdr(folder / "two.exr", np.ones((48, 64, 3), np.float32))
    with pytest.raises(InputError, match="several HDR files"):
        discover_scenes(tmp_path)
    write_hdr(folder / "HDRImg.hdr", np.ones((48, 64, 3), np.float32))
    assert discover_scenes(tmp_path)[0].gt == folder / "HDRImg.hdr"


def test_ground_truth_in_other_units_is_rescaled(tmp_path: Path) -> None:
    truth = kalantari_scene(tmp_path / "001", seed=5, gt_factor=8.0)
    scene = read_scene(discover_scenes(tmp_path)[0])
    assert scene.gt_scale == pytest.approx(1 / 8, rel=0.05)
    assert np.allclose(scene.gt, truth, rtol=0.06, atol=1e-4)
    assert "rescaled" in scene.notes[0]
    kept = read_scene(discover_scenes(tmp_path)[0], ReadSettings(fit_gt=False))
    assert kept.gt_scale == 1.0 and np.allclose(kept.gt, truth * 8, rtol=0.02, atol=1e-5)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "c.tif").unlink(), "needs 3 frames"),
        (lambda f: write_hdr(f / "HDRImg.hdr", np.ones((10, 10, 3), np.float32), overwrite=True), "ground truth HDRImg.hdr is 10x10"),
        (lambda f: (f / "exposure.txt").write_text("0\n2\n"), "scene 001: .*2 exposure values for 3 frames"),
        (lambda f: (f / "b.tif").write_bytes(b"not a tiff"), "scene 001: .*b.tif"),
    ],
)
def test_bad_scenes_give_one_clear_error(tmp_path: Path, damage, message: str) -> None:
    kalantari_scene(tmp_path / "001", seed=1)
    damage(tmp_path / "001")
    with pytest.raises(SmartHDRError, match=message):
        read_scene(discover_scenes(tmp_path)[0])


def test_missing_or_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        discover_scenes(tmp_path / "nope")
    with pytest.raises(InputError, match="no scene folders"):
        discover_scenes(tmp_path)


def test_cache_decodes_once_and_follows_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kalantari_scene(tmp_path / "data" / "001", seed=1)
    sources = discover_scenes(tmp_path / "data")
    cache = tmp_path / "cache"
    first = patches.prepare_scenes(sources, cache)[0]
    decoded = read_scene(sources[0])
    assert isinstance(first.frames, np.memmap)
    sample = first.crop(8, 16, 32)
    assert sample["frames"].shape == (3, 3, 32, 32) and sample["gt"].shape == (3, 32, 32)
    expected = decoded.frames[2][8:40, 16:48].transpose(2, 0, 1)
    assert np.abs(sample["frames"][2].numpy() - expected).max() <= 0.5 / 65535 + 1e-7
    assert np.allclose(sample["gt"].numpy(), decoded.gt[8:40, 16:48].transpose(2, 0, 1))

    def no_decoding(*_args, **_kwargs):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(patches, "read_scene", no_decoding)
    patches.prepare_scenes(sources, cache)  # served from the cache
    (tmp_path / "data" / "001" / "exposure.txt").write_text("0\n3\n6\n")
    with pytest.raises(AssertionError, match="decoded again"):
        patches.prepare_scenes(sources, cache)  # new content -> new key
    monkeypatch.setattr(patches, "read_scene", layouts.read_scene)
    changed = patches.prepare_scenes(sources, cache)[0]
    assert np.allclose(changed.exposures, [1, 8, 64])
    assert patches.cache_key(sources[0], ReadSettings()) != patches.cache_key(sources[0], ReadSettings(response="gamma"))


def test_cache_entry_published_by_another_run_while_decoding_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two trainings on one cache (the ablation's jobs, two shells): the second to finish keeps the
    first one's entry, which the first has memory-mapped, instead of moving it aside (the first
    then found frames.npy missing and crashed)."""
    kalantari_scene(tmp_path / "data" / "001", seed=1)
    sources = discover_scenes(tmp_path / "data")
    cache = tmp_path / "cache"
    folder = cache / patches.cache_key(sources[0], ReadSettings())

    def decoded_while_the_other_run_publishes(source, settings):
        monkeypatch.setattr(patches, "read_scene", layouts.read_scene)
        other = patches.prepare_scenes(sources, cache)[0]  # the other run: publishes and maps the entry
        seen["frames"] = other.frames
        seen["inode"] = (folder / "frames.npy").stat().st_ino
        return layouts.read_scene(source, settings)

    seen: dict = {}
    monkeypatch.setattr(patches, "read_scene", decoded_while_the_other_run_publishes)
    mine = patches.prepare_scenes(sources, cache)[0]
    assert (folder / "frames.npy").stat().st_ino == seen["inode"]  # the other run's entry stayed where it was
    assert np.array_equal(mine.frames, seen["frames"])
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]  # and this run's copy is gone

    (folder / "meta.json").unlink()  # a folder without meta.json is no entry: it is replaced
    monkeypatch.setattr(patches, "read_scene", layouts.read_scene)
    patches.prepare_scenes(sources, cache)
    assert (folder / "meta.json").is_file() and (folder / "frames.npy").stat().st_ino != seen["inode"]


def test_patch_index_respects_kept_patches() -> None:
    shapes = [(64, 96), (64, 64)]
    full = patches.patch_index(shapes, 32, 16)
    counts = [len(grid_origins(h, w, 32, 16)) for h, w in shapes]
    assert len(full) == sum(counts)
    keep = [np.zeros(counts[0], bool), np.arange(counts[1]) % 2 == 0]
    kept = patches.patch_index(shapes, 32, 16, keep)
    assert set(kept[:, 0]) == {1} and len(kept) == (counts[1] + 1) // 2
