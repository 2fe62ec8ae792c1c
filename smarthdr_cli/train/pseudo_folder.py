"""`smarthdr pseudo-label`: the teacher's step as files a person can inspect and `train --pseudo` reads.

Folder layout (one subfolder per unlabeled scene, `summary.json` written last, so a folder
without it is an interrupted run and is refused):

    OUT/summary.json              settings, weights, kept fraction per scene and overall,
                                  each scene's source folder, frames and patch decisions (eq. 11)
    OUT/<scene>/pseudo.exr        pseudo HDR GT (linear, the frames' units)
    OUT/<scene>/uncertainty.exr   the judge's sigma (RGB), whichever scorer made the masks
    OUT/<scene>/preview.jpg       the pseudo GT tone-mapped (mu-law), to compare with the masks
    OUT/<scene>/patch_mask.png    white where a kept patch covers the pixel (eq. 11)
    OUT/<scene>/pixel_mask.png    white where the pixel is kept (eq. 12)

`--unlabeled` is read as `train --unlabeled` reads it (`data/layouts.discover_unlabeled`): scene
folders, or the brackets of a photo library, whose scenes are named by their reference frame's
path in the library (OUT/2024/05-01/IMG_0012/...).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import imageio.v3 as iio
import numpy as np
import torch

from smarthdr_cli import __version__
from smarthdr_cli.data.grid import grid_origins
from smarthdr_cli.data.layouts import ReadSettings, SceneSource, discover_unlabeled, scene_source
from smarthdr_cli.data.patches import default_cache_dir, prepare_scenes
from smarthdr_cli.errors import InputError, OutputError
from smarthdr_cli.io.hdr import read_hdr, write_hdr
from smarthdr_cli.io.ldr import read_ldr
from smarthdr_cli.io.output import atomic_folder, atomic_output, write_file
from smarthdr_cli.io.provenance import write_preview
from smarthdr_cli.model.weights import load_weights
from smarthdr_cli.train.dataset import PseudoLabels
from smarthdr_cli.train.masking import MaskSettings, SceneMask
from smarthdr_cli.train.pseudo_label import PseudoLabeledScene, label_scenes, summary

SUMMARY = "summary.json"


def _coverage_image(mask: SceneMask, size: int, shape: tuple[int, int]) -> np.ndarray:
    image = np.zeros(shape, dtype=np.uint8)
    for top, left in mask.origins[mask.patch_keep]:
        image[top : top + size, left : left + size] = 255
    return image


def _write_scene(folder: Path, item: PseudoLabeledScene, size: int) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)  # a library bracket's name holds its folders
    with atomic_folder(folder, overwrite=True) as temp:
        hdr = np.asarray(item.labels.hdr, dtype=np.float32)
        write_hdr(temp / "pseudo.exr", hdr, float32=True)
        write_hdr(temp / "uncertainty.exr", np.asarray(item.uncertainty, dtype=np.float32))
        write_preview(temp / "preview.jpg", hdr, "mu", overwrite=False)
        # encoded in memory: PIL's PNG writer ignores a short write on a full disk (io.output.write_file)
        write_file(temp / "patch_mask.png", iio.imwrite("<bytes>", _coverage_image(item.mask, size, hdr.shape[:2]), extension=".png"))
        write_file(temp / "pixel_mask.png", iio.imwrite("<bytes>", item.mask.pixel.astype(np.uint8) * 255, extension=".png"))


def _check_outside(out: Path, sources: list[SceneSource], library: Path | None = None) -> None:
    """OUT/<scene> folders are replaced whole: none may be an input scene (`-o` the unlabeled
    folder itself), and OUT may not lie inside one, whatever --overwrite says; nor, for a photo
    `library`, anywhere in it (the labels would land among the photos)."""
    target = out.resolve()
    if library is not None and (library.resolve() == target or library.resolve() in target.parents):
        raise OutputError(f"{out}: lies inside the photo library {library}; choose an output folder outside it")
    for source in sources:
        folder = source.folder.resolve()
        if folder == target or folder in target.parents or (target / source.name) == folder:
            raise OutputError(f"{out}: would write over or into the unlabeled scene {source.folder}; choose an output folder outside the input scenes")


def run_pseudo_label(
    unlabeled: Path,
    weights: Path,
    out: Path,
    settings: MaskSettings,
    *,
    scorer: str = "judge",
    read: ReadSettings = ReadSettings(),
    cache_dir: Path | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    limit: int | None = None,
    gap: float = 2.0,
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Pseudo-label every scene of `unlabeled` (scene folders or a photo library, at most `limit`
    of them; `gap` groups a library's brackets) with the network in `weights`; returns the summary."""
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputError(f"{out}: already holds files (pass --overwrite to replace them)")
    found = discover_unlabeled(unlabeled, limit, gap)
    if note:
        for line in found.notes:
            note(line)
    names = [s.name for s in found.sources]
    if len(set(names)) != len(names):
        raise InputError(f"{unlabeled}: scene names repeat")
    _check_outside(out, found.sources, unlabeled if found.form == "library" else None)
    torch_device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    model, card = load_weights(weights, torch_device)
    scenes = prepare_scenes(found.sources, cache_dir or default_cache_dir(), read, note=note)  # a library's unreadable brackets are left out
    if not scenes:
        raise InputError(f"{unlabeled}: none of the {len(found.sources)} brackets could be read")
    sources = {s.name: s for s in found.sources}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create ({exc.strerror or exc})") from None
    (out / SUMMARY).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix=".work-", dir=out) as work:
        pseudo_labeled = label_scenes(model, scenes, Path(work), settings, scorer=scorer, device=torch_device, weak_aug=False, progress=progress)
        for item in pseudo_labeled:
            _write_scene(out / item.name, item, settings.size)
        data = summary(pseudo_labeled, settings)
    data.update({"smarthdr_version": __version__, "weights": str(weights), "weights_sha256": card.get("sha256"), "scorer": scorer, "form": found.form})
    for entry, item in zip(data["scenes"], pseudo_labeled):  # type: ignore[arg-type]
        source = sources[item.name]
        entry["source"] = str(source.folder.resolve())
        entry["frames"] = [str(p.resolve()) for p in source.frames]  # a library bracket is not a whole folder
        entry["exposure_file"] = str(source.exposure_file.resolve()) if source.exposure_file else None
        entry["patch_keep"] = "".join("1" if k else "0" for k in item.mask.patch_keep)
    with atomic_output(out / SUMMARY, overwrite=True) as temp:
        temp.write_text(json.dumps(data, indent=1) + "\n")
    return data


def _source(entry: dict[str, Any]) -> SceneSource:
    """A summary entry's scene: its frames as listed (folders written before "frames": the folder's)."""
    if "frames" not in entry:
        return scene_source(Path(entry["source"]), entry["name"])
    exposure = Path(entry["exposure_file"]) if entry.get("exposure_file") else None
    return SceneSource(entry["name"], Path(entry["source"]), tuple(Path(f) for f in entry["frames"]), None, exposure)


def read_pseudo_folder(folder: Path, cache_dir: Path, config: Any) -> list[PseudoLabeledScene]:
    """The scenes and fixed pseudo labels of a `pseudo-label` folder, for `train --pseudo`."""
    path = folder / SUMMARY
    if not path.is_file():
        raise InputError(f"{folder}: no {SUMMARY} (not a finished `smarthdr pseudo-label` output)")
    data = json.loads(path.read_text())
    mask = data.get("mask", {})
    if mask.get("size") != config.patch or mask.get("stride") != config.stride:
        raise InputError(
            f"{folder}: patches were masked on a {mask.get('size')} px / stride {mask.get('stride')} grid; "
            f"train with --patch {mask.get('size')} --stride {mask.get('stride')} or pseudo-label again"
        )
    settings = MaskSettings(size=config.patch, stride=config.stride)
    read = ReadSettings(response=config.response, align=config.align)
    sources = [_source(entry) for entry in data["scenes"]]
    scenes = prepare_scenes(sources, cache_dir, read)
    result = []
    for entry, scene in zip(data["scenes"], scenes):
        hdr = read_hdr(folder / entry["name"] / "pseudo.exr").astype(np.float16)
        pixel = read_ldr(folder / entry["name"] / "pixel_mask.png")[0][..., 0] > 0.5
        sigma = read_hdr(folder / entry["name"] / "uncertainty.exr").astype(np.float16)
        if hdr.shape[:2] != scene.shape or pixel.shape != scene.shape:
            raise InputError(f"{folder / entry['name']}: pseudo label size differs from the scene's frames")
        origins = grid_origins(*scene.shape, settings.size, settings.stride)
        keep = np.array([c == "1" for c in entry["patch_keep"]], dtype=bool)
        if len(keep) != len(origins):
            raise InputError(f"{path}: patch decisions of {entry['name']} do not match its size")
        scene_mask = SceneMask(origins, keep, pixel, float(entry["kept_fraction"]))
        result.append(PseudoLabeledScene(scene, PseudoLabels(hdr, pixel), scene_mask, sigma))
    return result
