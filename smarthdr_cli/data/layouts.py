"""Dataset layouts: Kalantari 2017, Hu et al. 2020 and the user's own folders, read as `Scene`s.

One rule covers all three, because they share a shape: a *scene folder* holds the frames of one
bracket (RAW, JPEG, PNG or TIFF, directly in the folder), an optional exposure file and an
optional ground-truth radiance file (.hdr/.exr). A *dataset folder* holds scene folders.

- Kalantari: `Training/NNN/` or `Test/NNN/` with three 16-bit TIFFs (file-name order short..long),
  `exposure.txt` (one EV per line) and `HDRImg.hdr`. Pass `Training` or `Test`, not their parent.
- Hu et al. 2020: three exposures (EV -2/0/+2) and a GT aligned with the middle frame. Its exact
  file names are not known here, so the reader is tolerant: any three frames, any single .hdr/.exr,
  `exposure.txt` or a single other .txt with one EV per line, else EXIF exposure times.
- User folders: the same; a labeled folder's scenes carry a GT, an unlabeled folder's do not.
- A photo library (unlabeled only, `discover_unlabeled`): no scene folders at all, but nested
  camera folders whose brackets are found as `smarthdr batch` finds them (`discover.discover`).

Frames are read by the very code `merge` uses (`reading.read_bracket`), with its validation and
its errors; datasets are not aligned by default, because learning to deghost is the network's job.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from smarthdr_cli.bracket import GAMMA
from smarthdr_cli.errors import BracketError, InputError, SmartHDRError
from smarthdr_cli.io.hdr import is_hdr, read_hdr
from smarthdr_cli.io.ldr import is_ldr
from smarthdr_cli.io.raw import is_raw
from smarthdr_cli.reading import EXPOSURE_FILE, ReadOptions, frame_files, read_bracket
from smarthdr_cli.response import ResponseChoice

GT_NAMES = ("HDRImg",)  # preferred ground-truth stem when a scene folder holds several HDR files
Labels = Literal["any", "required", "forbidden"]
# Ground truth further than this factor from the linearised reference frame is rescaled (see `fit_gt_scale`).
GT_SCALE_TOLERANCE = 1.25


@dataclass(frozen=True)
class SceneSource:
    """Where one scene lives on disk; cheap to build, nothing decoded yet."""

    name: str
    folder: Path
    frames: tuple[Path, ...]
    gt: Path | None
    exposure_file: Path | None
    # A bracket found in a photo library: when it cannot be read it is skipped with a note (a
    # library has broken files), where a broken scene folder of a dataset stops the run.
    optional: bool = False

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file whose content defines the scene (the cache key hashes them)."""
        extra = tuple(p for p in (self.gt, self.exposure_file) if p is not None)
        return self.frames + extra


@dataclass
class Scene:
    """Three frames in the gamma-2.2 LDR domain (short, reference, long) and an optional GT.

    `gt` is linear radiance in the frames' units (exposures normalised so the shortest is 1: the
    Kalantari convention). Pseudo labels and their masks are the teacher's, kept beside the
    cached scene (`train.pseudo_label.PseudoLabeledScene`), not in it.
    """

    name: str
    frames: list[np.ndarray]
    exposures: np.ndarray
    gt: np.ndarray | None = None
    gt_scale: float = 1.0
    notes: list[str] = field(default_factory=list)
    bits: int = 8  # the source frames' quantisation: what `classic`'s noise floor assumes
    warped: tuple[bool, ...] = ()  # which frames alignment resampled (Bracket.warped)

    @property
    def shape(self) -> tuple[int, int]:
        return self.frames[0].shape[0], self.frames[0].shape[1]


@dataclass(frozen=True)
class ReadSettings:
    """How scenes are read: the `merge` options that apply to datasets, as a run's config and the
    scene cache's key hold them (`--response`, `--align` of train, evaluate and pseudo-label)."""

    response: str = "auto"
    align: str = "none"
    fit_gt: bool = True

    def key(self) -> dict[str, object]:
        return asdict(self)

    def options(self) -> ReadOptions:
        """The bracket reader's options; values are refused as the reader meets them (as merge's
        reader always did for datasets), not up front."""
        return ReadOptions(response=ResponseChoice(self.response, "--response"), align=self.align)  # type: ignore[arg-type]


def _gt_file(folder: Path) -> Path | None:
    found = sorted(p for p in folder.iterdir() if p.is_file() and is_hdr(p))
    if len(found) <= 1:
        return found[0] if found else None
    preferred = [p for p in found if p.stem in GT_NAMES]
    if len(preferred) == 1:
        return preferred[0]
    raise InputError(f"{folder}: several HDR files ({', '.join(p.name for p in found)}); keep one ground truth or name it HDRImg.hdr")


def _exposure_file(folder: Path) -> Path | None:
    standard = folder / EXPOSURE_FILE
    if standard.is_file():
        return standard
    texts = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".txt")
    return texts[0] if len(texts) == 1 else None


def _is_scene_folder(folder: Path) -> bool:
    return len(frame_files(folder)) >= 2


def scene_source(folder: Path, name: str | None = None) -> SceneSource:
    """The scene in `folder`, or an InputError saying what is missing."""
    frames = frame_files(folder)
    if len(frames) < 3:
        raise InputError(f"{folder}: a training scene needs 3 frames (short, reference, long), found {len(frames)}")
    return SceneSource(name or folder.name, folder, tuple(frames), _gt_file(folder), _exposure_file(folder))


def discover_scenes(root: Path, labels: Labels = "any") -> list[SceneSource]:
    """Every scene under `root` (a scene folder, or a folder of scene folders), sorted by name.

    `labels="required"` (a labeled set, a test set) refuses scenes without ground truth;
    `labels="forbidden"` does not reject a ground truth (an unlabeled set may keep GTs for later
    checks: `discover_unlabeled` hands them back apart, for scoring only) but makes the sources
    carry none, so they can never leak into training nor into the scene cache's key.
    """
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (pass a dataset folder or a scene folder)")
    if _is_scene_folder(root):
        sources = [scene_source(root)]
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
        scene_folders = [p for p in folders if _is_scene_folder(p)]
        if not scene_folders:
            nested = [p.name for p in folders if any(_is_scene_folder(q) for q in p.iterdir() if q.is_dir())]
            if nested:
                raise InputError(f"{root}: holds several sets ({', '.join(nested)}); pass one of them, e.g. {root / nested[0]}")
            raise InputError(f"{root}: no scene folders (each scene is a folder with its bracket's frames)")
        sources = [scene_source(p) for p in scene_folders]
    if labels == "required":
        missing = [s.name for s in sources if s.gt is None]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise InputError(f"{root}: {len(missing)} scene(s) have no ground-truth .hdr/.exr: {shown}")
    if labels == "forbidden":
        sources = [SceneSource(s.name, s.folder, s.frames, None, s.exposure_file) for s in sources]
    return sources


def fit_gt_scale(gt: np.ndarray, reference: np.ndarray, exposure: float, gamma: float = GAMMA) -> float:
    """The factor that brings `gt` to the units of the linearised reference frame, or 1.

    The network predicts radiance in the frames' units (x^gamma / t, eq. 1), so a ground truth
    merged elsewhere in other units would teach it a wrong brightness. The median ratio over
    well-exposed reference pixels is robust to the few pixels where objects moved.
    """
    linear = reference.astype(np.float32) ** gamma / exposure
    usable = (reference > 0.1).all(axis=2) & (reference < 0.9).all(axis=2) & (gt > 0).all(axis=2)
    if usable.sum() < 100:
        return 1.0
    ratio = float(np.median(linear[usable] / gt[usable]))
    return ratio if not (1 / GT_SCALE_TOLERANCE <= ratio <= GT_SCALE_TOLERANCE) else 1.0


def read_ground_truth(path: Path, reference: np.ndarray, exposure: float, fit: bool = True) -> np.ndarray:
    """A scene's ground truth (H, W, 3 float32) in the units of its reference frame, as
    `read_scene` reads it (`fit_gt_scale`); for scoring a GT that the scene's source does not carry."""
    gt = read_hdr(path).astype(np.float32)
    if gt.shape[:2] != reference.shape[:2]:
        raise InputError(f"{path}: ground truth is {gt.shape[1]}x{gt.shape[0]}, frames are {reference.shape[1]}x{reference.shape[0]}")
    scale = fit_gt_scale(gt, np.asarray(reference, dtype=np.float32), exposure) if fit else 1.0
    return gt * np.float32(scale) if scale != 1.0 else gt


def read_scene(source: SceneSource, settings: ReadSettings = ReadSettings(), note: Callable[[str], None] | None = None) -> Scene:
    """Decode one scene with `merge`'s reading code; errors name the scene folder."""
    try:
        bracket = read_bracket(list(source.frames), settings.options(), note or (lambda _: None), exposure_file=source.exposure_file).bracket
    except SmartHDRError as exc:
        raise type(exc)(f"scene {source.name}: {exc}") from None
    if len(bracket) != 3 or bracket.reference != 1:
        raise BracketError(f"scene {source.name}: training needs 3 frames with the middle exposure as reference")
    scene = Scene(source.name, [np.asarray(i, dtype=np.float32) for i in bracket.images], bracket.exposures.astype(np.float32), bits=bracket.bits, warped=bracket.warped)
    if source.gt is not None:
        gt = read_hdr(source.gt).astype(np.float32)
        if gt.shape[:2] != scene.shape:
            raise InputError(
                f"scene {source.name}: ground truth {source.gt.name} is {gt.shape[1]}x{gt.shape[0]}, "
                f"frames are {scene.shape[1]}x{scene.shape[0]}"
            )
        if settings.fit_gt:
            scale = fit_gt_scale(gt, scene.frames[1], float(scene.exposures[1]))
            if scale != 1.0:
                gt = gt * np.float32(scale)
                scene.gt_scale = scale
                scene.notes.append(f"ground truth rescaled by {scale:.4g} to the frames' units")
        scene.gt = gt
    return scene


# --- unlabeled sets: scene folders, or a photographer's library of brackets --------------------

LIBRARY_MIN_FRAMES = 3  # the network takes three frames; 2-frame brackets cannot train it
UnlabeledForm = Literal["scenes", "library"]


@dataclass
class UnlabeledSet:
    """The unlabeled scenes of a run and how they were found: `form` says which layout was
    recognised, `found` how many usable scenes there were before `--unlabeled-limit` chose."""

    sources: list[SceneSource]
    form: UnlabeledForm
    found: int
    notes: list[str] = field(default_factory=list)
    # Ground-truth files found in the chosen scene folders (name -> path; never for a library).
    # The sources carry none: training never reads these; `train` only scores the teacher's pseudo
    # labels and the student on a few of them (teacher vs student PSNR-mu, issue 15).
    ground_truth: dict[str, Path] = field(default_factory=dict)


def _holds_frames(folder: Path) -> bool:
    """Whether any JPEG/PNG/TIFF/RAW file lies under `folder` (hidden folders skipped); stops at the first."""
    for parent, subfolders, files in os.walk(folder):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        if any(not name.startswith(".") and (is_ldr(Path(parent) / name) or is_raw(Path(parent) / name)) for name in files):
            return True
    return False


def _library_reason(root: Path, sources: list[SceneSource]) -> str | None:
    """Why scene folders found by `discover_scenes` are really a photo library, or None.

    A scene folder is one bracket and a dataset folder holds only scene folders. A photo library
    is neither: some folder holds photos only in subfolders, a folder holds frames *and*
    subfolders of frames, or the EXIF capture times of a folder's frames group them into several
    brackets (read from the headers only, and only for folders without an exposure file that hold
    more than 3 frames; frames without EXIF times cannot tell, so such folders stay scenes)."""
    from smarthdr_cli.discover import group_by_time, read_shot

    folders = [root] if _is_scene_folder(root) else [p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    for folder in folders:  # a dataset's folders are scene folders, and those hold no folders of photos
        if not _is_scene_folder(folder):
            if _holds_frames(folder):
                return f"{folder} holds photos in subfolders"
            continue
        nested = next((p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".") and _holds_frames(p)), None)
        if nested is not None:
            return f"{folder} holds frames and subfolders of frames ({nested.name})"
    for source in sources:
        if source.exposure_file is not None or len(source.frames) <= 3:
            continue
        shots = []
        for path in source.frames:
            try:
                shots.append(read_shot(path, source.folder))
            except SmartHDRError:
                continue  # a broken file says nothing about the grouping
        timed = [s for s in shots if s.capture_time is not None and s.exposure is not None]
        if len([g for g in group_by_time(timed, 2.0) if len(g) >= 2]) > 1:
            return f"{source.folder} holds several brackets by their EXIF times"
    return None


def evenly_spread(count: int, limit: int | None) -> list[int]:
    """`limit` indices spread evenly over range(count) (all of them without a limit): a cap that
    samples the whole library, not its first folder, and picks the same brackets every time."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted({int(round(i * (count - 1) / max(limit - 1, 1))) for i in range(limit)})


def library_sources(root: Path, gap: float = 2.0) -> tuple[list[SceneSource], list[str]]:
    """Every bracket of 3+ frames under `root`, grouped as `smarthdr batch` groups them (EXIF
    capture time and exposure, `discover.discover`), as unlabeled scenes sorted by name; and notes
    on what was left out. A RAW+JPEG pair of one bracket counts once (the RAW, as batch merges it)."""
    from smarthdr_cli.discover import discover, reference_shot

    found = discover([root], gap)
    notes = [
        f"{root}: {len(found.brackets)} brackets by EXIF capture time and exposure (as `smarthdr batch` groups them), "
        f"{len(found.singles)} single shots, {len(found.unreadable)} unreadable files"
    ]
    short = [b for b in found.brackets if len(b) < LIBRARY_MIN_FRAMES]
    if short:
        notes.append(f"{len(short)} bracket(s) of 2 frames left out (training takes 3 frames), e.g. {short[0][0].path}")
    by_name: dict[str, SceneSource] = {}
    raw: dict[str, bool] = {}
    for shots in (b for b in found.brackets if len(b) >= LIBRARY_MIN_FRAMES):
        reference = reference_shot(shots)
        name = reference.path.relative_to(root).with_suffix("").as_posix()
        source = SceneSource(name, reference.path.parent, tuple(sorted(s.path for s in shots)), None, None)
        if name in by_name:
            if raw[name] or not reference.raw:
                notes.append(f"bracket {source.frames[0]} left out: bracket {by_name[name].frames[0]} has the same reference name")
                continue
            notes.append(f"bracket {by_name[name].frames[0]} left out: its RAW twin is used")
        by_name[name], raw[name] = source, reference.raw
    return [by_name[name] for name in sorted(by_name)], notes


def discover_unlabeled(root: Path, limit: int | None = None, gap: float = 2.0) -> UnlabeledSet:
    """The unlabeled scenes under `root`: scene folders (as `discover_scenes` finds them) or, when
    `root` is not such a layout, the brackets of a photo library; at most `limit` of them,
    evenly spread over the sorted list. The sources never carry a ground truth: a scene folder's
    GT is allowed, handed back apart in `ground_truth` (for scoring only, never for training)."""
    reason: str | None
    try:
        labeled = discover_scenes(root, "any")
        sources = [replace(s, gt=None) for s in labeled]  # what "forbidden" makes: no GT can leak into training
    except InputError as exc:
        if not root.is_dir():
            raise
        sources, reason = [], str(exc)
    else:
        reason = _library_reason(root, sources)
    if reason is None:
        chosen = [sources[i] for i in evenly_spread(len(sources), limit)]
        notes = [f"{root}: scene folders ({len(sources)} scenes" + (f", {len(chosen)} used: --unlabeled-limit {limit})" if len(chosen) < len(sources) else ")")]
        names = {s.name for s in chosen}
        ground_truth = {s.name: s.gt for s in labeled if s.gt is not None and s.name in names}
        if ground_truth:
            notes.append(f"{len(ground_truth)} of them hold a ground truth: never trained on, only used to score teacher vs student")
        return UnlabeledSet(chosen, "scenes", len(sources), notes, ground_truth)
    library, notes = library_sources(root, gap)
    notes.insert(0, f"{root}: read as a photo library, not scene folders ({reason})")
    if not library:
        raise InputError(
            f"{root}: not scene folders ({reason}), and no brackets of {LIBRARY_MIN_FRAMES}+ frames with EXIF capture and exposure times "
            "as a photo library"
        )
    chosen = [library[i] for i in evenly_spread(len(library), limit)]
    used = f"{len(chosen)} used (--unlabeled-limit {limit}, evenly spread over the sorted list)" if len(chosen) < len(library) else "all used"
    notes.append(f"{len(library)} brackets of {LIBRARY_MIN_FRAMES}+ frames, {used}; brackets that cannot be read are skipped")
    return UnlabeledSet([replace(s, optional=True) for s in chosen], "library", len(library), notes)
