"""Sizes: parsed from the config (``256MB``, ``1.5GiB``) and printed for people (``1.2 GB``); durations
(``90``, ``30m``, ``2h``) parsed from the command line."""

from __future__ import annotations

import math
import re
from typing import Any

from reorder_cli.errors import ReorderError

_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "KIB": 2**10, "M": 10**6, "MB": 10**6, "MIB": 2**20,
          "G": 10**9, "GB": 10**9, "GIB": 2**30, "T": 10**12, "TB": 10**12, "TIB": 2**40}


#: The largest size a key takes (int64's largest value, about 9.2 EB).
MAX_SIZE = 2**63 - 1


def parse_size(value: Any, key: str = "size") -> int:
    """``256MB`` / ``1.5GiB`` / ``1000000`` -> bytes (int). 0 means "no limit"."""
    size = _parse_size(value, key)
    if size > MAX_SIZE:
        raise ReorderError(f"config key '{key}': {value!r} is over the largest size, {MAX_SIZE:,} bytes")
    return size


def _parse_size(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise ReorderError(f"config key '{key}': expected a size like 256MB, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ReorderError(f"config key '{key}': expected a size like 256MB, got {value!r}")
        if value < 0:
            raise ReorderError(f"config key '{key}': must be >= 0, got {value!r}")
        return int(value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
    if not match or match.group(2).upper() not in _UNITS:
        raise ReorderError(f"config key '{key}': expected a size like 256MB or 1GiB, got {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def fmt_bytes(n: float) -> str:
    """``1234567`` -> ``1.2 MB`` (decimal units)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def fmt_mb(n: int) -> str:
    """``600000000`` -> ``600 MB``: whole MB (kB below 1 MB), as a budget message names a size that
    can be pasted back as ``--memory-limit``."""
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str, option: str) -> float:
    """``90`` / ``90s`` / ``30m`` / ``2h`` / ``1d`` -> seconds (> 0)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*", str(value).lower())
    if not match or float(match.group(1)) <= 0:
        raise ReorderError(f"{option}: expected a duration like 90, 30m or 2h, got {value!r}")
    return float(match.group(1)) * _SECONDS[match.group(2)]
