"""Atomic writes: the one scheme every file of a run is written by.

A file is written under :func:`temporary` (a name beside it, unique to the process and the
thread, so two processes running the same task never write the same file), flushed to disk,
then renamed over its final name. A reader therefore sees a complete file or none; a write
that fails leaves no temporary behind.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"


def temporary(path: Path) -> Path:
    """A temporary name beside ``path``, unique to this process and thread."""
    return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}{TMP_SUFFIX}")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it to ``path``, on failure remove it."""
    tmp = temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def open_atomic(path: Path, mode: str = "wb") -> Iterator[IO]:
    """A file opened for writing that appears as ``path`` only once it was closed and synced."""
    with replacing(path) as tmp:
        encoding = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def write_bytes(path: Path, data: bytes) -> None:
    with open_atomic(path, "wb") as fh:
        fh.write(data)


def write_text(path: Path, text: str) -> None:
    with open_atomic(path, "w") as fh:
        fh.write(text)


def json_bytes(data: Any) -> bytes:
    """A state file's bytes: keys in their order, so what is read back is what was written."""
    return json.dumps(data, indent=1).encode("utf-8")


def write_json(path: Path, data: Any) -> None:
    write_bytes(path, json_bytes(data))

