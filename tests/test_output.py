"""Folders written all at once: complete or absent, never half-made, replaced only when asked."""
from __future__ import annotations

from pathlib import Path

import pytest

from smarthdr_cli.errors import OutputError
from smarthdr_cli.io.output import atomic_folder


def test_folder_appears_complete_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "scene"
    with pytest.raises(RuntimeError):
        with atomic_folder(target, overwrite=False) as temp:
            (temp / "a.txt").write_text("half")
            raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(target, overwrite=False) as temp:
        (temp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(OutputError, match="--overwrite"):
        with atomic_folder(target, overwrite=False):
            pass
    with atomic_folder(target, overwrite=True) as temp:
        (temp / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["scene"]  # no temporary folders left behind


def test_first_wins_keeps_a_folder_another_writer_completed(tmp_path: Path) -> None:
    target = tmp_path / "entry"
    with atomic_folder(target, overwrite=False, first_wins=True) as temp:
        (temp / "mine.txt").write_text("mine")
        target.mkdir()  # another process published the same entry meanwhile
        (target / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in target.iterdir()) == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]
    with atomic_folder(target, overwrite=False, first_wins=True) as temp:  # there before: no error, kept
        (temp / "mine.txt").write_text("mine")
    assert sorted(p.name for p in target.iterdir()) == ["theirs.txt"]
