"""Token pieces and exports at publish: the pieces (staged beside the shards) moved into ``OUT/tokens/``,
and the export (``EXPORTS[name].assemble``) built into a folder of the work folder, then moved into place
as ``OUT/<name>/`` before the manifest is written. Local output and work folders only (config.py refuses
a tokenizer or export with either on an object store)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from reorder_cli.config import RunConfig, did_you_mean
from reorder_cli.errors import ReorderError
from reorder_cli.export import EXPORTS, ExportInput
from reorder_cli.tokens import piece, tokenizer
from reorder_cli.tokens.sections import FOLDER
from reorder_cli.util import atomic, faults
from reorder_cli.workdir import WorkDir

#: Where the work folder stages an export before it is moved into place.
STAGED = "export"


def check(cfg: RunConfig) -> None:
    """Refuse, before anything is written, an export that is not registered, an export that needs tokens
    without a tokenizer, and token settings that cannot be made (BOS/EOS unknown, a bad tokenizer)."""
    if cfg.export is not None:
        if cfg.export not in EXPORTS:
            raise ReorderError(f"config key 'export': unknown export {cfg.export!r}{did_you_mean(cfg.export, EXPORTS)} "
                               f"(known: {', '.join(sorted(EXPORTS)) or 'none installed'})")
        if EXPORTS[cfg.export].NEEDS_TOKENS and not cfg.tokens:
            raise ReorderError(f"config key 'export': {cfg.export} is made of token ids; set tokenizer: PATH (a local "
                               "tokenizer.json)")
    if cfg.tokens:
        tokenizer.resolve(cfg.tokens)


def folders() -> set[str]:
    """The folders of an output reorder writes besides its shards: the token pieces', every export's."""
    return {FOLDER, *EXPORTS}


def _piece_folder(work: WorkDir, out: Path, record: dict[str, Any]) -> Path:
    """Where shard ``record``'s token piece is now: staged (checked by size, as the work folder checks a
    task's files), or already published by an interrupted publish (checked by sha256, as a row shard is)."""
    if piece.piece_differs(work.shards, record["tokens"], digest=False) is None:
        return work.shards
    if piece.piece_differs(out / FOLDER, record["tokens"]) is None:
        return out / FOLDER
    raise ReorderError(f"{work.root}: the token piece {record['tokens']['file']} is missing or altered; re-run with "
                       "--restart")


def stage_export(cfg: RunConfig, work: WorkDir, out: Path, shards: list[dict]) -> dict | None:
    """Assemble the run's export into the work folder (``STAGED/<name>``); returns its manifest entry
    (None: no export)."""
    if cfg.export is None:
        return None
    staged = work.root / STAGED
    shutil.rmtree(staged, ignore_errors=True)
    dest = staged / cfg.export
    dest.mkdir(parents=True)
    token_files = lengths = dtype = None
    if cfg.tokens:
        where = [_piece_folder(work, out, s) for s in shards]
        token_files = [f / s["tokens"]["file"] for f, s in zip(where, shards, strict=True)]
        lengths = [f / s["tokens"]["lengths"] for f, s in zip(where, shards, strict=True)]
        dtype = np.dtype(tokenizer.resolve(cfg.tokens)["dtype"])
    rows = [work.shards / s["file"] if (work.shards / s["file"]).exists() else out / s["file"] for s in shards]
    src = ExportInput(shards=rows, row_format=cfg.format, token_files=token_files, lengths=lengths, dtype=dtype,
                      settings={"tokens": cfg.tokens, "export": cfg.export})
    try:
        return EXPORTS[cfg.export].assemble(src, dest)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def place(out: Path, work: WorkDir, shards: list[dict], export: str | None,
          move: Callable[[Path, Path], None]) -> None:
    """Move the token pieces into ``OUT/tokens/`` and the staged export into ``OUT/<export>/``; remove the
    pieces and exports of an earlier output that this run does not have. ``move``: a file's rename (a copy
    across file systems)."""
    pieces = [s["tokens"] for s in shards if "tokens" in s]
    target = out / FOLDER
    keep = {n for p in pieces for n in (p["file"], p["lengths"])}
    if target.is_dir():
        for p in target.iterdir():  # an earlier output's pieces
            if p.name not in keep:
                p.unlink()
    if pieces:
        target.mkdir(exist_ok=True)
    for p in pieces:  # a loop over shards
        staged = [work.shards / name for name in (p["file"], p["lengths"])]
        # as a row shard: a staged piece is this run's (its size checked); one found already published (an
        # interrupted publish) is checked by its sha256
        digest = not all(path.exists() for path in staged)
        for path in staged:
            if path.exists():
                move(path, target / path.name)
        faults.pause("publish-tokens")
        if (why := piece.piece_differs(target, p, digest=digest)) is not None:
            raise ReorderError(f"{target / p['file']}: not the token piece this run made ({why}); "
                               "re-run with --restart")
    if pieces:
        atomic.sync(target)
    elif target.is_dir():
        target.rmdir()
    for name in EXPORTS:
        if name != export and (out / name).is_dir():
            shutil.rmtree(out / name)
    staged = work.root / STAGED / export if export else None
    if staged is not None and staged.is_dir():
        old = out / f".{export}.old"
        shutil.rmtree(old, ignore_errors=True)
        if (out / export).exists():
            (out / export).replace(old)
        _move_folder(staged, out / export)
        shutil.rmtree(old, ignore_errors=True)
        atomic.sync(out)


def _move_folder(staged: Path, target: Path) -> None:
    """Rename folder ``staged`` to ``target``; across file systems, copy it beside the target first."""
    try:
        os.replace(staged, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = atomic.temporary(target)
        try:
            shutil.copytree(staged, tmp)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(staged)
