"""Publishing to an object store, which has no rename: the output folder is a URL; the work folder is on a
local or shared disk, or on a store (the ``work_dir`` key).

The gather tasks stage the finished shards in the work folder, as for a local output. Publishing then:

1. removes the manifest under the output (before anything else: an output never shows a manifest whose
   shards are not all there), the run log, and every shard-named object this run does not write;
2. puts each shard under its final name, after deleting whatever object had that name (an object's
   existence proves nothing):

   - a work folder on the output's store (:func:`store.same_store`): the store copies the staged object
     itself (:func:`store.copy`: no byte passes through this process), checked by its size and by the
     store's checksum of its bytes (:func:`store.content_tag`: S3's ETag, which the part-aligned copy
     keeps), which must be the staged object's. The staged object is the gather task's file, uploaded
     and checked by size before the task's marker (:mod:`reorder_cli.work_store`), whose sha256 the
     task recorded as it wrote it. A store whose checksums do not match (a KMS-encrypted S3 bucket) has
     the copy read back instead, as below: counted under ``store_bytes_read["publish"]``;
   - else each staged file is uploaded (:func:`store.upload`: a failed upload is aborted, never
     completed), then read back: its size and sha256 must be the shard's record;

   only then is the marker ``done/upload-NNNNN.json`` written (with the object's size and ETag);
3. writes the manifest last, once, in one request: the only proof that the output is complete; then
   deletes the staged copies (kept until then, so that any shard can be put again).

A publish that was killed or failed resumes with the same command: a shard whose upload marker matches
the object now under its name (same size and ETag) is not put again; any other is.
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
        return  # put, checked, and the same object is still there
    source = _staged_object(out, work, index, shard)
    if source is None and not staged.exists():
        raise ReorderError(f"{work.root}: shard {shard['file']} is no longer staged and its upload is not under "
                           f"{target}; re-run with --restart")
    store.remove(target)  # whatever has this name is not trusted: not from this upload
    if source is not None:
        faults.fail("upload", index)
        store.copy(source[0], target)
        same = source[1] is not None and store.content_tag(target) == (shard["bytes"], source[1])  # no byte read
        checked = "store checksum" if same else None
    else:
        store.upload(staged, target, lambda written: faults.fail("upload", index))
        checked = None
    if checked is None:  # read back: the bytes under the name are the shard's
        size, digest = store.size(target), file_sha256(target)
        if size != shard["bytes"] or digest != shard["sha256"]:
            store.remove(target)
            raise ReorderError(f"{target}: the object put there differs from the staged shard ({size:,} bytes, "
                               f"the shard has {shard['bytes']:,}; or its sha256 differs); removed; re-run the same "
                               "command")
        checked = "read back"
    work.finish("upload", index, {"file": shard["file"], "sha256": shard["sha256"], "checked": checked,
                                  "version": store.object_version(target)})
    faults.pause("upload")


def _staged_object(out: store.URL, work: WorkDir, index: int, shard: dict) -> tuple[store.URL, str | None] | None:
    """The shard's staged object, when the work folder is on the output's store (the store can copy it
    itself), and the checksum its gather task's marker recorded of it (``stored``: what the copy must
    have; None: the copy is read back). None: upload the local file. An object that is not the one its
    task uploaded is one line naming it, unless the local file is there to upload."""
    if not store.same_store(work.remote, out):
        return None
    source = work.remote / f"shards/{shard['file']}"
    found = store.content_tag(source)
    if found is None:
        return None
    recorded = ((work.finished("gather", index) or {}).get("stored") or {}).get(f"shards/{shard['file']}")
    if found[0] == shard["bytes"] and (recorded is None or found[1] == recorded):
        return source, recorded
    if (work.shards / shard["file"]).exists():
        return None
    raise ReorderError(f"{source}: not the shard its gather task uploaded ({found[0]:,} bytes, the task recorded "
                       f"{shard['bytes']:,}; or the store's checksum differs); re-run with --restart")


def write_run_log(out: store.URL, text: str) -> None:
    store.write_bytes(out / manifest.RUN_LOG_NAME, text.encode("utf-8"))
