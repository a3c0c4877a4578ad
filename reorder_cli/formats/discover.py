"""Turn the user's input arguments (files, folders, globs) into an ordered file list.

Order is the "input order" of ORDERINGS.md: arguments in the order given; a folder or a
glob expands to its matching files sorted by path.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from reorder_cli.errors import ReorderError

SUFFIXES = {
    ".jsonl": ("jsonl", None),
    ".jsonl.gz": ("jsonl", "gzip"),
    ".jsonl.zst": ("jsonl", "zstd"),
    ".parquet": ("parquet", None),
}


@dataclass(frozen=True)
class InputFile:
    path: Path
    format: str  # "jsonl" or "parquet"
    compression: str | None  # for jsonl: None, "gzip" or "zstd"
    size: int


def classify(path: Path) -> tuple[str, str | None] | None:
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    return None


def _supported(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and classify(path) is not None


def _expand(arg: str) -> list[Path]:
    path = Path(arg)
    if any(ch in arg for ch in "*?[") and not path.exists():  # an existing name is taken literally
        matches = sorted(Path(p) for p in glob.glob(arg, recursive=True))
        files = [p for p in matches if _supported(p)]
        if not files:
            raise ReorderError(f"{arg}: the pattern matches no .jsonl, .jsonl.gz, .jsonl.zst or .parquet file")
        return files
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if _supported(p) and ".reorder" not in p.parts)
        if not files:
            raise ReorderError(f"{arg}: the folder holds no .jsonl, .jsonl.gz, .jsonl.zst or .parquet file")
        return files
    if not path.exists():
        raise ReorderError(f"{arg}: no such file or folder")
    if classify(path) is None:
        raise ReorderError(f"{arg}: unknown extension; expected .jsonl, .jsonl.gz, .jsonl.zst or .parquet")
    return [path]


def discover(args: list[str]) -> list[InputFile]:
    """The input files in input order; a file named twice is an error (it would duplicate rows)."""
    if not args:
        raise ReorderError("no input given")
    files: list[InputFile] = []
    seen: dict[Path, str] = {}
    for arg in args:
        for path in _expand(arg):
            key = path.resolve()
            if key in seen:
                raise ReorderError(f"{path}: given twice (also via {seen[key]}); each input row must appear once")
            seen[key] = arg
            fmt, compression = classify(path)  # type: ignore[misc]
            files.append(InputFile(path, fmt, compression, path.stat().st_size))
    return files
