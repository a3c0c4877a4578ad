"""Atomic, durable writes: the one scheme every file of a run is written by.

A file is written under :func:`temporary` (a name beside it, unique to the host, the process and the
call, so two processes running the same task, on one host or two sharing a filesystem, never write the
same file), then :func:`commit` makes it durable and visible: its bytes are synced to disk, it is
renamed over its final name, and its folder is synced (the rename itself survives a crash). A reader
therefore sees a complete file or none, and a task's marker, written after its files were committed,
never outlives them; a write that fails leaves no temporary behind.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"
_HOST = re.sub(r"[^A-Za-z0-9_-]+", "_", socket.gethostname())[:40] or "host"


def temporary(path: Path) -> Path:
    """A temporary name beside ``path``, unique to this host, process and call."""
    return path.with_name(f"{path.name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")


def sync(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's) bytes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable(path: str | os.PathLike) -> None:
    """Make a complete file durable: its bytes, then its folder's entry for it."""
    sync(path)
    sync(Path(path).parent)


def commit(tmp: Path, path: Path) -> None:
    """Put the complete temporary ``tmp`` in place as ``path``, durably: ``tmp`` synced, renamed, the
    folder synced."""
    sync(tmp)
    os.replace(tmp, path)
    sync(path.parent)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success :func:`commit` it as ``path``, on failure remove it."""
    tmp = temporary(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def open_atomic(path: Path, mode: str = "wb") -> Iterator[IO]:
    """A file opened for writing that appears as ``path`` only once it was closed and made durable."""
    with replacing(path) as tmp:
        encoding = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=encoding) as fh:
            yield fh


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
