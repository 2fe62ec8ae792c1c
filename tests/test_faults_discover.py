"""Issue 14, discovery faults: brackets mixed across folders, empty and text files taken for shots."""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from conftest import exif_jpeg
from smarthdr_cli.app import app
from smarthdr_cli.discover import Shot, discover, group_by_count

START = datetime(2024, 5, 1, 12, 0, 0)
COPIES = 5


@pytest.fixture(scope="module")
def frames(static_scene) -> list[np.ndarray]:
    return [f[:32, :48] for f in static_scene[1]]


def _bracket(folder: Path, frames: list[np.ndarray]) -> list[Path]:
    """A camera's 3-shot bracket: one second between shots, EV -2/0/+2."""
    return [
        exif_jpeg(folder / f"IMG_{i}.jpg", frame, (1, t), (START + timedelta(seconds=i)).strftime("%Y:%m:%d %H:%M:%S"))
        for i, (frame, t) in enumerate(zip(frames, (400, 100, 25)))
    ]


def _copies(library: Path, frames: list[np.ndarray]) -> list[Path]:
    """The same bracket copied into COPIES subfolders: identical capture times in every folder."""
    source = _bracket(library / "copy0", frames)
    for n in range(1, COPIES):
        (library / f"copy{n}").mkdir()
        for path in source:
            shutil.copy2(path, library / f"copy{n}" / path.name)
    return sorted(library.iterdir())


def test_copies_of_one_bracket_in_several_folders_stay_apart(tmp_path, frames):
    folders = _copies(tmp_path / "lib", frames)
    found = discover([tmp_path / "lib"])
    assert not found.singles and not found.unreadable
    assert sorted(len(b) for b in found.brackets) == [3] * COPIES
    assert sorted({s.path.parent for s in b} == {b[0].path.parent} for b in found.brackets) == [True] * COPIES
    assert sorted(b[0].path.parent for b in found.brackets) == folders


def test_batch_plan_keeps_each_folder_its_own_bracket(runner, tmp_path, frames):
    library, out = tmp_path / "lib", tmp_path / "out"
    out.mkdir()
    _copies(library, frames)
    result = runner.invoke(app, ["batch", str(library), "-o", str(out), "--backend", "classic", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["status"] for line in lines] == ["planned"] * COPIES
    for line in lines:
        assert len(line["bracket"]) == 3 and len({Path(f).parent for f in line["bracket"]}) == 1
        assert Path(line["output"]).parent.name == Path(line["bracket"][0]).parent.name


def test_fixed_bracket_size_counts_within_each_folder():
    shots = [Shot(Path(folder) / f"f{i}.jpg", Path("."), "A", (4, 4), None, None, False) for folder, n in (("a", 2), ("b", 4)) for i in range(n)]
    groups = [[str(s.path) for s in group] for group in group_by_count(shots, 3)]
    assert sorted(groups) == [["a/f0.jpg", "a/f1.jpg"], ["b/f0.jpg", "b/f1.jpg", "b/f2.jpg"], ["b/f3.jpg"]]


def test_empty_and_text_files_are_unreadable_not_single(runner, tmp_path, frames):
    library, out = tmp_path / "lib", tmp_path / "out"
    out.mkdir()
    _bracket(library / "shoot", frames)
    (library / "empty.jpg").write_bytes(b"")
    (library / "empty.nef").write_bytes(b"")
    (library / "notes.jpg").write_text("a text file with an image name\n")

    found = discover([library])
    reasons = {path.name: reason for path, reason in found.unreadable}
    assert sorted(reasons) == ["empty.jpg", "empty.nef", "notes.jpg"]
    assert "empty file" in reasons["empty.jpg"] and "empty file" in reasons["empty.nef"]
    assert "not a JPEG/PNG/TIFF/RAW image" in reasons["notes.jpg"]
    assert not found.singles and [len(b) for b in found.brackets] == [3]

    result = runner.invoke(app, ["batch", str(library), "-o", str(out), "--backend", "classic", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    lines = {Path(line.get("file", "")).name: line for line in map(json.loads, result.stdout.splitlines()) if "file" in line}
    assert {name: line["status"] for name, line in lines.items()} == dict.fromkeys(["empty.jpg", "empty.nef", "notes.jpg"], "unreadable")
    assert all("\n" not in line["reason"] for line in lines.values())
