"""The GFHDR network (Liu et al., ECCV 2022) with the uncertainty judge of the seed paper.

Importing the package costs nothing: torch-free code reads `model.config` (the CLI's defaults,
`train.config`), and `smarthdr merge --backend classic` must not load torch. `GFHDR` (torch) is
imported where it is first used (PEP 562).
"""
from __future__ import annotations

from typing import Any

from smarthdr_cli.model.config import GFHDRConfig

__all__ = ["GFHDR", "GFHDRConfig"]


def __getattr__(name: str) -> Any:
    if name == "GFHDR":
        from smarthdr_cli.model.gfhdr import GFHDR

        return GFHDR
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
