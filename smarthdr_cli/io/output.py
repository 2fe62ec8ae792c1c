"""Safe output files: checked before any work, written to a temp file and renamed into place.

A crash, a full disk or Ctrl-C never leaves a half-written file under the user's chosen name, and
an existing file is only replaced when the user asked for it.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

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


def check_not_inputs(outputs: Sequence[Path], inputs: Sequence[Path]) -> None:
    """No output may be one of the files read, whatever the flags (--overwrite replaces outputs
    only): not by name, nor through a symlink or a hard link to it."""
    names = {p.resolve() for p in inputs}
    identities = set()
    for path in inputs:
        with contextlib.suppress(OSError):
            status = path.stat()
            identities.add((status.st_dev, status.st_ino))
    for output in outputs:
        same = output.resolve() in names
        if not same:
            with contextlib.suppress(OSError):
                status = output.stat()
                same = (status.st_dev, status.st_ino) in identities
        if same:
            raise OutputError(f"{output}: is one of the input files; choose another output name")


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


def write_file(path: Path, data: bytes) -> None:
    """Write all of `data` to `path` and flush it to the disk, or raise OSError.

    Encoders that write to a file descriptor themselves (PIL's JPEG and PNG savers) ignore a
    short write(), so a nearly full disk left a truncated preview and no error. Encoding to
    memory and writing here checks every byte and the size on disk.
    """
    total = len(data)
    view = memoryview(data)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)
    try:
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.ENOSPC, "no space left on device")
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    size = path.stat().st_size
    if size != total:
        raise OSError(errno.EIO, f"wrote {size} of {total} bytes")


def _sync(path: Path) -> None:
    """fsync a file a library wrote: a delayed-allocation failure (full disk, quota) surfaces here."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _temp_prefix(name: str) -> str:
    return f".{name}.{os.getpid()}-"


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries a killed run of ours left beside `path`.

    Files are `.NAME.PID-xxxxxxxx.partial<suffix>` (atomic_outputs), folders
    `.NAME.PID.hhhhhhhh[.old].partial` (atomic_folder). One is stale when the process named in
    it is gone; a live process's (another merge writing the same name) is left alone.
    """
    folder = path.parent if str(path.parent) else Path(".")
    name = re.escape(path.name)
    patterns = (
        re.compile(rf"^\.{name}\.(\d+)-[a-z0-9_]{{8}}\.partial{re.escape(path.suffix)}$"),
        re.compile(rf"^\.{name}\.(\d+)\.[0-9a-f]{{8}}(\.old)?\.partial$"),
    )
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = patterns[0].match(entry.name) or patterns[1].match(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[Path], overwrite: bool) -> Iterator[list[Path]]:
    """Temporaries for outputs that belong together (an HDR and its preview): all are renamed
    into place at the end, after every one was written and synced, or none is kept.

    A full disk or Ctrl-C while the second file is written then leaves neither, so a rerun with
    `--skip-existing` never meets an HDR without its preview.
    """
    for path in paths:
        check_output_path(path, overwrite)
    temps: list[Path] = []
    placed: list[Path] = []
    current = ", ".join(str(p) for p in paths)  # the writer's failures concern the set
    try:
        for path in paths:
            remove_stale_temporaries(path)
            folder = path.parent if str(path.parent) else Path(".")
            try:
                handle, name = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".partial" + path.suffix, dir=folder)
            except OSError as exc:
                raise OutputError(f"{path}: cannot create a file in {folder} ({exc.strerror})") from None
            os.close(handle)
            temps.append(Path(name))
        yield temps
        for path, temp in zip(paths, temps):
            current = str(path)
            if not overwrite and path.exists():
                raise OutputError(f"{path}: appeared while writing (pass --overwrite to replace it)")
            _sync(temp)
            usual_mode(temp)
        for path, temp in zip(paths, temps):
            current = str(path)
            os.replace(temp, path)
            placed.append(path)
    except OSError as exc:
        for path in placed:  # keep the set whole: a rename that failed half-way takes the others back
            with contextlib.suppress(OSError):
                path.unlink()
        raise OutputError(f"{current}: cannot write ({exc.strerror or exc})") from None
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


@contextlib.contextmanager
def atomic_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed to `path`, else removed."""
    with atomic_outputs([path], overwrite) as temps:
        yield temps[0]


@contextlib.contextmanager
def atomic_folder(folder: Path, overwrite: bool, first_wins: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside `folder`; on success it becomes `folder`, else it goes.

    Readers of a dataset or a cache then see a folder complete or not at all. With `overwrite`
    an existing `folder` is moved aside, replaced and removed; the temporary names end in
    `.partial`, so a crash leaves only folders that are recognisably unfinished. With
    `first_wins` (content-keyed caches, where two writers of one name write the same thing), a
    `folder` that another process completed meanwhile is kept and this one dropped: a cache
    entry, once there, is never moved while another run reads it.
    """
    if folder.exists() and not overwrite and not first_wins:
        raise OutputError(f"{folder}: already exists (pass --overwrite to replace it)")
    remove_stale_temporaries(folder)
    tag = f"{os.getpid()}.{secrets.token_hex(4)}"
    temp = folder.parent / f".{folder.name}.{tag}.partial"
    try:
        temp.mkdir()
        yield temp
        if folder.exists() and first_wins:
            return
        if folder.exists():
            old = folder.parent / f".{folder.name}.{tag}.old.partial"
            folder.rename(old)
            temp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                temp.rename(folder)
            except OSError:
                if not (first_wins and folder.exists()):  # another writer got there between the test and the rename
                    raise
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)
