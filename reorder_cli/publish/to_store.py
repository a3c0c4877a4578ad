"""Publishing to an object store, which has no rename: the output folder is a URL, the work folder is on
a local or shared disk (the ``work_dir`` key).

The gather tasks stage the finished shards in the work folder, as for a local output. Publishing then:

1. removes the manifest under the output (before anything else: an output never shows a manifest whose
   shards are not all there), the run log, and every shard-named object this run does not write;
2. uploads each shard to its final name (:func:`store.upload`: a failed upload is aborted, never
   completed), after deleting whatever object had that name: an object's existence proves nothing;
3. reads each upload back and compares its size and sha256 with the shard's record; only then writes
   the marker ``done/upload-NNNNN.json`` (with the object's size and ETag);
4. writes the manifest last, once, in one request: the only proof that the output is complete; then
   deletes the staged copies (kept until then, so that any shard can be uploaded again).

A publish that was killed or failed resumes with the same command: a shard whose upload marker matches
the object now under its name (same size and ETag) is not uploaded again; any other is.
"""

from __future__ import annotations

import threading
from pathlib import Path

from reorder_cli.errors import ReorderError
from reorder_cli.formats.writers import is_shard_name
from reorder_cli.publish import manifest
from reorder_cli.util import faults, store
from reorder_cli.util.hashing import file_sha256
from reorder_cli.util.parallel import run_parallel
from reorder_cli.workdir import WorkDir


def check(out: store.URL, overwrite: bool, publishing: bool) -> None:
    """The output's bucket is reachable (one line naming the URL when it is missing or the credentials are
    refused), and holds nothing under the output but what this run may replace."""
    present = store.names(out)
    if not present:
        return
    if not overwrite and not publishing:
        raise ReorderError(f"{out}: the output already holds objects; pass --overwrite to replace them")
    foreign = [n for n in present if not (is_shard_name(n) or n in manifest.BOOKKEEPING)]
    if foreign:
        raise ReorderError(f"{out}: --overwrite replaces only objects reorder wrote, but the output also holds "
                           f"{foreign[0]!r}")


def publish(out: store.URL, work: WorkDir, shards: list[dict], doc: manifest.Manifest, workers: int) -> None:
    """Upload the staged shards, each read back and checked, then write the manifest; safe to repeat."""
    work.mark_publishing()
    present = store.names(out)
    for name in (*manifest.MANIFEST_NAMES, *manifest.RUN_LOG_NAMES):
        if name in present:
            store.remove(out / name)
    new = {s["file"] for s in shards}
    for name in present:
        if is_shard_name(name) and name not in new:
            store.remove(out / name)
    failed = threading.Event()  # once an upload failed, no other starts

    def one(j: int) -> None:
        if failed.is_set():
            return
        try:
            _upload(out, work, j, shards[j])
        except BaseException:
            failed.set()
            raise

    run_parallel(one, list(range(len(shards))), workers)
    store.write_bytes(out / manifest.MANIFEST_NAME, doc.dumps().encode("utf-8"))
    for s in shards:  # published: the staged copies were kept until now, in case an object was replaced
        Path(work.shards / s["file"]).unlink(missing_ok=True)


def _upload(out: store.URL, work: WorkDir, index: int, shard: dict) -> None:
    target, staged = out / shard["file"], work.shards / shard["file"]
    done = work.finished("upload", index)
    if done is not None and done["sha256"] == shard["sha256"] and done["version"] == store.object_version(target):
        return  # uploaded, read back intact, and the same object is still there
    if not staged.exists():
        raise ReorderError(f"{work.root}: shard {shard['file']} is no longer staged and its upload is not under "
                           f"{target}; re-run with --restart")
    store.remove(target)  # whatever has this name is not trusted: not from this upload
    store.upload(staged, target, lambda written: faults.fail("upload", index))
    size, digest = store.size(target), file_sha256(target)
    if size != shard["bytes"] or digest != shard["sha256"]:
        store.remove(target)
        raise ReorderError(f"{target}: the uploaded object differs from the staged shard ({size:,} bytes, the shard "
                           f"has {shard['bytes']:,}; or its sha256 differs); removed; re-run the same command")
    work.finish("upload", index, {"file": shard["file"], "sha256": digest, "version": store.object_version(target)})
    faults.pause("upload")


def write_run_log(out: store.URL, text: str) -> None:
    store.write_bytes(out / manifest.RUN_LOG_NAME, text.encode("utf-8"))
