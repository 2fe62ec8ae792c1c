"""Keep third-party diagnostics off the user's terminal: C libraries' fd-level output and Python warnings.

libpng, libtiff and OpenCV's decoders (through OpenCV's logger), OpenEXR (which writes to both
stderr and stdout) and LibRaw print their complaints about a broken file themselves, on the
process's file descriptors, past `sys.stderr`. The CLI's contract is at most one line on stderr
for a failure and nothing from third parties on success, so the readers run those libraries
inside `captured_output()`: fds 1 and 2 point at a temporary file for the duration, and what was
written there can be folded into the reader's own one-line error (`first_line`).

Some extension modules print through Python's `sys.stdout` instead (OpenEXR's bindings), which
need not be fd 1 (pytest's capture, an embedding application), so `sys.stdout` and `sys.stderr`
write to the redirected descriptors for the duration, too; Python warnings are recorded, not shown.

Redirecting a process-wide descriptor is shared state: nested and concurrent (threaded) captures
share one redirection, counted, so that the first one in saves the real descriptors and the last
one out restores them; text written while several captures overlap goes to each of them. Whatever
another thread prints meanwhile (a progress bar's refresh) is held back with it: reads are short.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from typing import IO, Any, Iterator

# The most of the captured text kept for an error message: a damaged file can make a library print
# thousands of lines, and only the first few say anything.
_KEEP = 1 << 16


@dataclass
class Captured:
    """What the third-party code wrote while captured; `text` is complete once the block has ended."""

    text: str = ""
    warnings: list[str] = field(default_factory=list)

    def reason(self, *drop: str) -> str:
        """The first informative line of what was captured (warnings after fd output), or ''."""
        return first_line(self.text, *drop) or first_line("\n".join(self.warnings), *drop)


class _Redirect:
    """One shared redirection of some file descriptors onto a temporary file, counted."""

    def __init__(self, fds: tuple[int, ...]) -> None:
        self.fds = fds
        self.lock = threading.Lock()
        self.depth = 0
        self.saved: dict[int, int | None] = {}
        self.sink: IO[bytes] | None = None
        self.streams: tuple[Any, Any] | None = None

    def enter(self) -> int:
        """Redirect (first user only); the sink's offset where this user's text starts, or -1."""
        with self.lock:
            if self.depth == 0:
                if not self._start():
                    return -1
            self.depth += 1
            assert self.sink is not None
            return os.fstat(self.sink.fileno()).st_size

    def leave(self, start: int) -> str:
        """This user's captured text; the real descriptors are back when the last user leaves."""
        if start < 0:
            return ""
        with self.lock:
            _flush()
            sink = self.sink
            assert sink is not None
            text = ""
            try:
                sink.flush()
                if hasattr(os, "pread"):  # leaves the offset that the redirected fds share alone
                    data = os.pread(sink.fileno(), _KEEP, start)
                else:
                    sink.seek(start)
                    data = sink.read(_KEEP)
                    sink.seek(0, os.SEEK_END)
                text = data.decode("utf-8", "replace")
            except (OSError, ValueError):
                pass
            self.depth -= 1
            if self.depth == 0:
                self._stop()
            return text

    def _start(self) -> bool:
        _flush()
        try:
            sink = tempfile.TemporaryFile()
        except OSError:
            return False  # no temp space: better the library's noise than no reader at all
        saved: dict[int, int | None] = {}
        try:
            for fd in self.fds:
                try:
                    saved[fd] = os.dup(fd)
                except OSError:  # the descriptor is closed: open it on the sink, close it again after
                    saved[fd] = None
                os.dup2(sink.fileno(), fd)
        except OSError:
            self.saved = saved
            self.sink = sink
            self._stop()
            return False
        self.saved, self.sink = saved, sink
        # Extension modules also print through Python's sys.stdout (OpenEXR's bindings do), which
        # need not be fd 1 (pytest's capture, an embedding application): those writes go to the fds.
        self.streams = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _FdWriter(1), _FdWriter(2)
        return True

    def _stop(self) -> None:
        _flush()
        if self.streams is not None:
            if isinstance(sys.stdout, _FdWriter):
                sys.stdout = self.streams[0]
            if isinstance(sys.stderr, _FdWriter):
                sys.stderr = self.streams[1]
            self.streams = None
        for fd, copy in self.saved.items():
            try:
                if copy is None:
                    os.close(fd)
                else:
                    os.dup2(copy, fd)
                    os.close(copy)
            except OSError:
                pass
        self.saved = {}
        if self.sink is not None:
            self.sink.close()
            self.sink = None


class _FdWriter(io.TextIOBase):
    """sys.stdout/sys.stderr while captured: text straight to the (redirected) file descriptor."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "replace")
        with contextlib.suppress(OSError):
            while data:
                data = data[os.write(self.fd, data) :]
        return len(text)

    def fileno(self) -> int:
        return self.fd


def _flush() -> None:
    """Buffered output goes where it was meant to before a descriptor changes: Python's streams and
    C stdio's (std::cout, through which OpenEXR prints, is fully buffered when stdout is no terminal)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    libc = _libc()
    if libc is not None:
        try:
            libc.fflush(None)
        except (OSError, AttributeError, ValueError):
            pass


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """The C library whose stdio buffers the extension modules share, or None (e.g. Windows' many CRTs)."""
    if os.name != "posix":
        return None
    try:
        import ctypes

        return ctypes.CDLL(None)
    except (ImportError, OSError):
        return None


_REDIRECT = _Redirect((1, 2))


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    """Run the block with fds 1 and 2 (C-level stdout and stderr) and Python warnings captured.

    The descriptors are restored in all cases (exceptions and KeyboardInterrupt included) before
    anything propagates, so the caller's own error line reaches the terminal. Where fds cannot be
    redirected (no temporary file), the block runs uncaptured.
    """
    captured = Captured()
    start = _REDIRECT.enter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield captured
            finally:
                captured.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
    finally:
        captured.text = _REDIRECT.leave(start)


# OpenCV's log prefix: "[ WARN:0@0.019] global grfmt_png.cpp:793 readFromStreamOrBuffer ".
_OPENCV_PREFIX = re.compile(r"^\[\s*(?:WARN|ERROR|INFO|DEBUG|FATAL)[^\]]*\]\s*(?:global\s+)?(?:\S+:\d+\s+)?(?:\S+\s+)?")
_OPENCV_WRAPPER = re.compile(
    r"OpenCV\([^)]*\)\s+\S+:\d+:\s*error:\s*\(-?\d+:[^)]*\)\s*"  # "OpenCV(5.0.0) file.cpp:88: error: (-2:...) "
    r"|\w+_?\('[^']*'\):\s*"  # "imdecode_('/tmp/__opencv_temp.x'): "
    r"|\s+in function '[^']*'"
)


def first_line(text: str, *drop: str) -> str:
    """The first informative line of `text`, at most 160 characters, without OpenCV's log prefix and
    error wrapper and without the strings in `drop` (the file's name, which the caller's message
    already starts with; quoted, it becomes "the file")."""
    for line in text.replace("\r", "\n").splitlines():
        line = _OPENCV_PREFIX.sub("", line.strip())
        line = _OPENCV_WRAPPER.sub("", line)
        for name in drop:
            if name and name in line:
                if line.startswith(name):  # "/a/b.exr: (EXR_ERR_...) ..."
                    line = line[len(name) :]
                line = re.sub("[`'\"]*" + re.escape(name) + "[`'\"]*", "the file", line)
        line = " ".join(line.split()).strip(" :-")
        if line and any(ch.isalnum() for ch in line):
            return line if len(line) <= 160 else line[:157] + "..."
    return ""
