"""Sizes as users write them (`--max-memory 2G`), parsed without importing torch: a classic
merge should not pay the network's import time for an option it does not use."""
from __future__ import annotations

import math

from smarthdr_cli.errors import InputError


def parse_memory(text: str) -> float:
    """'2G', '1.5GB', '512M', '800k' or a plain number of bytes."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (cleaned[:-1], cleaned[-1]) if cleaned[-1:] in units else (cleaned, "")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise InputError(f"--max-memory {text!r}: use a size such as 2G, 512M or 800000000") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"--max-memory {text!r}: must be a positive size")
    return value
