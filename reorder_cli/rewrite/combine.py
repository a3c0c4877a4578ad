"""Combine: between scatter and gather, the shuffle's fan-in cut by K. One task merges the files of K
consecutive scatter tasks into one file of the same format (``rewrite/scatter.py``):

    combine/NNNNN.arrow         one record batch a bucket (the rows of the K files), in bucket order
    combine/NNNNN.buckets.npy   (bucket, record batch, start, end), sorted by bucket: a gather's buckets are
                                one run of bytes of each combine file
    combine/NNNNN.schema.arrow  (JSONL inputs, Parquet output) the K scatter tasks' schemas merged

so that a gather opens S / K files, not S (docs/scale.md section 4). For a Parquet output with a known schema
the rows are stored as the gather will write them (JSONL lines parsed, a Parquet input's columns cast: what
the gather did per scatter file), else as lines. A task reads its K files a run of consecutive buckets at a
time (:data:`SELECT_ROWS` index rows, of many shards: from a store, each window of ``bucket_bytes`` is one
range request a file, not one a shard), each index opened once (kept memory-mapped), each data file once;
memory: about one bucket. The gather sorts every bucket by position, so the output's bytes are the same
whatever K.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from reorder_cli.errors import ReorderError
from reorder_cli.plan.stored import StoredPlan
from reorder_cli.rewrite import gather, scatter
from reorder_cli.util import atomic
from reorder_cli.util.npy import save_npy
from reorder_cli.workdir import WorkDir

#: The index rows (buckets x files) a combine task looks up at once: its runs of buckets hold about
#: ``SELECT_ROWS / K`` buckets (32 MB of index rows in memory).
SELECT_ROWS = 1 << 20


def run(stored: StoredPlan, work: WorkDir, task: int, settings: dict) -> dict:
    """Merge the files of the scatter tasks of combine task ``task``; returns its record (rows, bytes read,
    bytes written, files opened)."""
    fmt = settings["format"]
    options = pa.ipc.IpcWriteOptions(compression=None if settings.get("work_compression", "none") == "none"
                                     else settings["work_compression"])
    work.combine.mkdir(parents=True, exist_ok=True)
    files = gather.scatter_sources(stored, work, stored.combined(task))
    kind = gather.combined_kind(stored)
    if kind == "lines" and any(f.kind != "lines" for f in files):
        raise ReorderError(f"combine task {task}: a Parquet input's rows with no output schema to cast them to")
    if fmt == "parquet" and stored.schema is None:  # JSONL inputs: the schema the gathers will parse into
        merged = scatter.merge_schemas([scatter.read_schema(f.schema) for f in files])
        atomic.write_bytes(work.combine_schema(task), merged.serialize().to_pybytes() if merged is not None else b"")
    nothing = np.zeros(0, dtype=np.int64)
    scattered = gather.Scattered(stored, work, nothing, files, keep_maps=True)
    out = scatter.IpcOut(work.combine_data(task), options)
    index, rows = [], 0
    try:
        per = max(1, SELECT_ROWS // max(1, len(files)))
        for first in range(0, len(stored.buckets), per):  # a loop over runs of buckets, then over buckets
            buckets = np.arange(first, min(len(stored.buckets), first + per))
            scattered.select(buckets)
            for k in buckets:
                found = scattered.bucket(int(k))
                parts = [table if kind == "lines" else
                         gather.as_output(stored, files[t], found[t], fmt, stored.schema)
                         for t in sorted(found) if found[t]
                         for table in [pa.Table.from_batches(found[t])]]
                if not parts:
                    continue
                batch = pa.concat_tables(parts).combine_chunks().to_batches()[0]
                index.append((int(k), len(index), *out.write(batch)))
                rows += batch.num_rows
    except BaseException:
        out.abort()
        raise
    wrote = out.commit()
    save_npy(work.combine_buckets(task), np.asarray(index, dtype=np.int64).reshape(-1, gather.INDEX_COLUMNS))
    return {"rows": rows, "bytes_in": scattered.nbytes, "bytes": out.final.stat().st_size if wrote else 0,
            "files_opened": scattered.opened, "requests": scattered.requests,
            "scatter_tasks": [files[0].task, files[-1].task + 1] if files else []}
