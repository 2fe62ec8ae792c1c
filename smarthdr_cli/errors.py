"""Typed errors raised where a problem is found and turned into one line at the CLI boundary.

Every `SmartHDRError` is the user's to fix (bad file, bad flag, unwritable output) and exits
with code 2; anything else is our bug and exits with code 1.
"""
from __future__ import annotations


class SmartHDRError(Exception):
    """A problem with the user's input or environment; the message is shown as is."""

    exit_code = 2


class InputError(SmartHDRError):
    """A file is missing, unreadable, corrupt or of an unsupported kind."""


class ExposureError(SmartHDRError):
    """Exposure times are missing, malformed or inconsistent."""


class BracketError(SmartHDRError):
    """The frames do not form a usable bracket (sizes, count, duplicates, content)."""


class OutputError(SmartHDRError):
    """An output cannot be written (exists, folder missing, no permission, disk full)."""


class BackendError(SmartHDRError):
    """A backend is unknown, unavailable or refused the bracket."""
