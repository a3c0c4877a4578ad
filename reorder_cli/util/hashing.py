"""File digests: the full sha256 of a file, and a cheap fingerprint of its size and ends."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from reorder_cli.util import store

_FINGERPRINT_SPAN = 1 << 20
_READ = 8 << 20


#: sha256 of local files this process read whole, by (path, size, mtime_ns, inode, device).
_KNOWN: dict[tuple, str] = {}


def file_sha256(path: Path | store.URL) -> str:
    """sha256 of a file, or of an object read back from its store. A local file is read once a process
    while its size, modification time and inode stay the same (a resumed publish checks a shard
    already in the output folder more than once)."""
    key = None
    if not isinstance(path, store.URL):
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
        if key in _KNOWN:
            return _KNOWN[key]
    digest = hashlib.sha256()
    with store.open_read(path) as fh:
        while chunk := fh.read(_READ):
            digest.update(chunk)
    if key is not None:
        _KNOWN[key] = digest.hexdigest()
    return digest.hexdigest()


def fingerprint(path: Path | store.URL) -> str:
    """sha256 of the file size, its first MiB and its last MiB: cheap, and changes when a
    file is replaced, truncated, appended to or rewritten (a Parquet footer is at the end).
    An object in a store: its size and ETag (or generation, or modification time), as the store
    reports them (:func:`store.fingerprint`)."""
    if isinstance(path, store.URL):
        return store.fingerprint(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(_FINGERPRINT_SPAN))
        if size > _FINGERPRINT_SPAN:
            fh.seek(max(_FINGERPRINT_SPAN, size - _FINGERPRINT_SPAN))
            digest.update(fh.read())
    return "sha256-ends:" + digest.hexdigest()
