"""smarthdr: merge exposure brackets into ghost-free HDR images."""
from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("smarthdr")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
