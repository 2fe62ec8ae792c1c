"""Safe output files: checked before any work, written to a temp file and renamed into place.

A crash, a full disk or Ctrl-C never leaves a half-written file under the user's chosen name, and
an existing file is only replaced when the user asked for it.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from smarthdr_cli.errors import OutputError


def check_output_path(path: Path, overwrite: bool) -> None:
    """Fail early (before a long merge) when `path` cannot or must not be written."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (pass --overwrite to replace it)")
    if not folder.is_dir():
        raise OutputError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: output folder {folder} is not writable")


def usual_mode(path: Path) -> None:
    """Give `path` the permissions of a freshly created file (0666 less the umask).

    `tempfile.mkstemp` creates 0600 files; renamed into place they would hide a merge result
    from the user's group and from web servers. The umask is read from /proc (Linux) without
    changing it; elsewhere os.umask is set and restored.
    """
    umask = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    if umask is None:
        umask = os.umask(0o022)
        os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed to `path`, else removed."""
    check_output_path(path, overwrite)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + path.suffix, dir=folder)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create a file in {folder} ({exc.strerror})") from None
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        if not overwrite and path.exists():
            raise OutputError(f"{path}: appeared while writing (pass --overwrite to replace it)")
        usual_mode(temp)
        os.replace(temp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


@contextlib.contextmanager
def atomic_folder(folder: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary folder beside `folder`; on success it becomes `folder`, else it goes.

    Readers of a dataset or a cache then see a folder complete or not at all. With `overwrite`
    an existing `folder` is moved aside, replaced and removed; the temporary names end in
    `.partial`, so a crash leaves only folders that are recognisably unfinished.
    """
    if folder.exists() and not overwrite:
        raise OutputError(f"{folder}: already exists (pass --overwrite to replace it)")
    tag = f"{os.getpid()}.{secrets.token_hex(4)}"
    temp = folder.parent / f".{folder.name}.{tag}.partial"
    try:
        temp.mkdir()
        yield temp
        if folder.exists():
            old = folder.parent / f".{folder.name}.{tag}.old.partial"
            folder.rename(old)
            temp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            temp.rename(folder)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)
