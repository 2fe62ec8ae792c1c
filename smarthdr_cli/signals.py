"""Signals as exceptions, so that whatever stops a command unwinds it and its temporaries go.

Ctrl-C already raises KeyboardInterrupt; SIGTERM (`timeout`, Slurm, `kill`) killed the process
on the spot and left `.partial` files. Installed by the console script only: a library that
imports smarthdr keeps its own signal handling.
"""
from __future__ import annotations

import os
import signal
import sys
from types import FrameType

_received: int | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C; exit status 143 (128 + 15) as if the signal had killed us."""


def _raise(signum: int, _frame: FrameType | None) -> None:
    global _received
    _received = signum
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def install() -> None:
    signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGTERM, _raise)


def received() -> int | None:
    """The signal that arrived, if any: an import interrupted by one fails as an ImportError."""
    return _received


def interrupted_by(exc: BaseException) -> bool:
    """Whether `exc` is, or was caused by, a signal (e.g. ImportError: initialization failed)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    return _received is not None


def exit_status(exc: BaseException | None = None) -> int:
    terminated = isinstance(exc, Terminated) or _received == signal.SIGTERM
    return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


def silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
