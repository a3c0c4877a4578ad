"""Turn the user's input arguments (files, folders, globs) into an ordered file list.

Order is the "input order" of docs/orderings.md: arguments in the order given; a folder or a
glob expands to its matching files sorted by path.

A URL argument (``s3://``, ``gs://``, any fsspec protocol) is listed in its store the same way: one
object, every object under a folder (a prefix), or a glob's matches, with their sizes.

Discovery neither hangs nor guesses: a folder (or a ``**`` glob) is walked following
links, but each directory once, so a symlink loop ends the walk (with a warning naming
the link); an empty argument is an error, not the current folder; files inside a folder
that are skipped for their extension are named (a warning, and the caller's ``skipped``
list); and one file reached under two names (a hard link or a symlink) is refused.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reorder_cli.errors import ReorderError
from reorder_cli.formats import unchanged
from reorder_cli.util import store
from reorder_cli.util.store import URL

SUFFIXES = {
    ".jsonl": ("jsonl", None),
    ".jsonl.gz": ("jsonl", "gzip"),
    ".jsonl.zst": ("jsonl", "zstd"),
    ".parquet": ("parquet", None),
}
KNOWN = ".jsonl, .jsonl.gz, .jsonl.zst or .parquet"
#: Names of skipped files shown in the warning (all of them are counted).
SHOWN_SKIPPED = 5


@dataclass(frozen=True)
class InputFile:
    path: Path | URL  # a URL for an object in a store (util/store.py)
    format: str  # "jsonl" or "parquet"
    compression: str | None  # for jsonl: None, "gzip" or "zstd"
    size: int
    #: What the file system or store said of it at discovery (:mod:`reorder_cli.formats.unchanged`): the
    #: tasks that read it and the publish check it is still the same input.
    stamp: dict[str, Any] | None = field(default=None, compare=False)


def classify(path: Path | URL) -> tuple[str, str | None] | None:
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    return None


def _supported(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and classify(path) is not None


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """Every file under ``root`` (links followed, each directory once, ``.reorder`` folders
    left out), and the directory links skipped because their target was already visited."""
    files: list[Path] = []
    revisits: list[Path] = []
    st = root.stat()
    seen = {(st.st_dev, st.st_ino)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):  # a loop over directories
        keep = []
        for name in sorted(dirnames):
            if name == ".reorder":
                continue
            sub = Path(dirpath) / name
            try:
                s = sub.stat()
            except OSError:
                continue  # vanished or unreadable: os.walk would skip it too
            if (s.st_dev, s.st_ino) in seen:
                revisits.append(sub)
                continue
            seen.add((s.st_dev, s.st_ino))
            keep.append(name)
        dirnames[:] = keep
        files += [Path(dirpath) / f for f in filenames]
    return files, revisits


def _glob_match(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Glob's rules on path components: ``**`` spans any number of folders, a wildcard
    never matches a leading dot unless the pattern has one."""
    if not pattern:
        return not parts
    head = pattern[0]
    if head == "**":
        return any(_glob_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1)
                   if not any(p.startswith(".") for p in parts[:i]))
    if not parts or not fnmatch.fnmatchcase(parts[0], head):
        return False
    return (not parts[0].startswith(".") or head.startswith(".")) and _glob_match(parts[1:], pattern[1:])


def _recursive_glob(arg: str) -> tuple[list[Path], list[Path]]:
    """The files a ``**`` pattern matches, walking its fixed prefix with :func:`_walk`."""
    parts = Path(arg).parts
    fixed = next(i for i, p in enumerate(parts) if any(ch in p for ch in "*?["))
    base = Path(*parts[:fixed]) if fixed else Path(".")
    if not base.is_dir():
        return [], []
    found, revisits = _walk(base)
    return [p for p in found if _glob_match(p.relative_to(base).parts, parts[fixed:])], revisits


def _expand(arg: str, skipped: list[str]) -> list[Path]:
    if not arg.strip():
        raise ReorderError("an input argument is empty (an unset shell variable?); name a file, folder or glob")
    path = Path(arg)
    revisits: list[Path] = []
    if any(ch in arg for ch in "*?[") and not path.exists():  # an existing name is taken literally
        if "**" in path.parts:
            matches, revisits = _recursive_glob(arg)
        else:
            matches = [Path(p) for p in glob.glob(arg)]
        found = sorted(p for p in matches if p.is_file())
        if not any(_supported(p) for p in found):
            raise ReorderError(f"{arg}: the pattern matches no {KNOWN} file")
    elif path.is_dir():
        found, revisits = _walk(path)
        found = sorted(found)
        if not any(_supported(p) for p in found):
            raise ReorderError(f"{arg}: the folder holds no {KNOWN} file")
    elif not path.exists():
        raise ReorderError(f"{arg}: no such file or folder")
    elif classify(path) is None:
        raise ReorderError(f"{arg}: unknown extension; expected {KNOWN}")
    else:
        return [path]
    if revisits:
        warnings.warn(f"{arg}: skipped {len(revisits)} folder link(s) leading to a folder already read (a symlink "
                      f"loop or a second name), e.g. {revisits[0]}; each folder is read once", stacklevel=3)
    skipped += [str(p) for p in found if not p.name.startswith(".") and p.is_file() and classify(p) is None]
    return [p for p in found if _supported(p)]


def _expand_url(arg: str, skipped: list[str]) -> list[URL]:
    """The objects a URL names: one object, every object under a folder (a prefix), or a glob's matches
    (``**`` spans folders); sorted by URL, hidden names left out as on a local disk."""
    found, kind = store.listing(arg)
    if kind == "file":
        if classify(found[0]) is None:
            raise ReorderError(f"{arg}: unknown extension; expected {KNOWN}")
        return found
    if not any(classify(u) is not None for u in found):
        what = "the pattern matches" if kind == "glob" else "the folder holds"
        raise ReorderError(f"{arg}: {what} no {KNOWN} object")
    skipped += [str(u) for u in found if classify(u) is None]
    return [u for u in found if classify(u) is not None]


def _discover_url(arg: str, skipped: list[str], seen: dict) -> list[InputFile]:
    files = []
    for url in _expand_url(arg, skipped):
        if url.url in seen:
            raise ReorderError(f"{url}: given twice (also via {seen[url.url]}); each input row must appear once")
        seen[url.url] = url
        fmt, compression = classify(url)  # type: ignore[misc]
        files.append(InputFile(url, fmt, compression, url.size or 0, unchanged.of_url(url)))
    return files


def discover(args: list[str], skipped: list[str] | None = None) -> list[InputFile]:
    """The input files in input order. An argument that is a URL (``s3://bucket/prefix/**/*.parquet``)
    is listed in its store (:mod:`reorder_cli.util.store`); ``file://`` is a local path.

    A file named twice, or reached under two names (same device and inode), is an error
    (it would duplicate rows). Files inside folders or globs skipped for their extension
    are warned about and appended to ``skipped``.
    """
    if not args:
        raise ReorderError("no input given")
    skipped = [] if skipped is None else skipped
    files: list[InputFile] = []
    seen: dict = {}  # (device, inode) of a local file, the URL of an object
    for arg in args:
        if store.is_url(arg):
            files += _discover_url(arg, skipped, seen)
            continue
        for path in _expand(str(store.local(arg)) if arg.lower().startswith("file://") else arg, skipped):
            st = path.stat()
            key = (st.st_dev, st.st_ino)
            if key in seen:
                other = seen[key]
                if other.absolute() == path.absolute():
                    raise ReorderError(f"{path}: given twice (also via {other}); each input row must appear once")
                raise ReorderError(f"{path}: the same file as {other} (a hard link or symlink to it); each input row "
                                   "must appear once, so give only one of them")
            seen[key] = path
            fmt, compression = classify(path)  # type: ignore[misc]
            files.append(InputFile(path, fmt, compression, st.st_size, unchanged.of_stat(st)))
    if skipped:
        shown = ", ".join(skipped[:SHOWN_SKIPPED]) + (f" and {len(skipped) - SHOWN_SKIPPED} more"
                                                       if len(skipped) > SHOWN_SKIPPED else "")
        warnings.warn(f"skipped {len(skipped)} file(s) of an unknown extension (only {KNOWN} are read): {shown}",
                      stacklevel=2)
    return files
