"""The shuffle's fan-in, per (gather, scatter file) pair: what one gather task pays for each scatter file it
reads, whatever the bytes. docs/scale.md section 4 projects the run's file opens from it.

Writes ``--files`` scatter-like files in a temporary folder, in the scatter's format (``rewrite/scatter.py``):
an Arrow IPC file of small record batches (``line``, ``_pos``) grouped by bucket, and its ``.buckets.npy``
index of (bucket, batch, start, end) rows sorted by bucket; ``--buckets`` buckets a file, ``--rows`` rows a
batch. A gather of width W then does what ``rewrite/gather.py`` does for each of W files: memory-maps the
index, finds its buckets by binary search, opens the IPC file and reads its buckets' batches; and, first,
what ``task_outputs.check_inputs`` does for each file's task (reads its JSON marker, stats the files it
names: the ``check`` column). Each (W, file size) is timed ``--repeat`` times, page cache warm (the files
just read) and cold (each file dropped from the page cache first with ``posix_fadvise(DONTNEED)``); the
table gives the median microseconds a (gather, file) pair, without and with the marker check.

    python scripts/bench_fanin.py --repeat 5
    python scripts/bench_fanin.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from reorder_cli.util.npy import save_npy


def write_files(folder: Path, files: int, buckets: int, rows: int, row_bytes: int) -> None:
    """``files`` scatter-like files: a batch of ``rows`` rows (``row_bytes`` each) for every bucket, written in
    a shuffled bucket order as a scatter writes them, and the index sorted by bucket."""
    rng = np.random.default_rng(0)
    line = b"x" * (row_bytes - 1) + b"\n"
    lines = pa.array([line] * rows, pa.large_binary())
    for f in range(files):  # a loop over files
        order = rng.permutation(buckets)
        path = folder / f"{f:05d}.arrow"
        spans = []
        with pa.OSFile(str(path), "wb") as sink:
            schema = pa.schema([("line", pa.large_binary()), ("_pos", pa.int64())])
            with pa.ipc.new_file(sink, schema) as writer:
                for b in order:  # a loop over batches
                    start = sink.tell()
                    pos = pa.array(np.arange(rows, dtype=np.int64) + int(b) * rows)
                    writer.write_batch(pa.record_batch([lines, pos], schema=schema))
                    spans.append((start, sink.tell()))
        by_bucket = np.argsort(order, kind="stable")
        spans_at = np.asarray(spans, dtype=np.int64)[by_bucket]
        index = folder / f"{f:05d}.buckets.npy"
        save_npy(index, np.column_stack([order[by_bucket], by_bucket, spans_at]).astype(np.int64))
        files = {f"scatter/{p.name}": p.stat().st_size for p in (path, index)}
        (folder / f"{f:05d}.marker.json").write_text(json.dumps({"rows": buckets * rows, "files": files}))


def check(folder: Path, width: int, first: int) -> None:
    """What ``task_outputs.check_inputs`` does for files [first, first + width): each task's marker read and
    parsed, each file it names stat'ed and compared with its recorded size."""
    for f in range(first, first + width):  # a loop over files
        marker = json.loads((folder / f"{f:05d}.marker.json").read_bytes())
        for name, size in marker["files"].items():
            if (folder / name.partition("/")[2]).stat().st_size != size:
                raise SystemExit(f"{name}: size changed")


def gather(folder: Path, width: int, first: int, want: tuple[int, int], checked: bool = False) -> int:
    """One gather: files [first, first + width), the batches of buckets [want[0], want[1]) of each, as
    ``gather.Scattered`` reads them (index by binary search on a memory map, then the IPC file); rows read.
    ``checked``: the markers checked first, as ``task_outputs.check_inputs`` does."""
    if checked:
        check(folder, width, first)
    got = 0
    for f in range(first, first + width):  # a loop over files
        rows = np.load(folder / f"{f:05d}.buckets.npy", mmap_mode="r").reshape(-1, 4)
        lo, hi = np.searchsorted(rows[:, 0], want)
        mine = np.array(rows[lo:hi])
        del rows
        reader = pa.ipc.open_file(pa.OSFile(str(folder / f"{f:05d}.arrow")))
        for i in mine[:, 1]:  # a loop over the file's batches of the shard
            got += reader.get_batch(int(i)).num_rows
    return got


def drop_cache(folder: Path) -> None:
    """Evict the folder's files from the page cache (clean pages: ``posix_fadvise``, no root needed)."""
    for path in folder.iterdir():  # a loop over files
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=4096, help="scatter files written (the widest gather)")
    parser.add_argument("--widths", default="16,64,256,1024,4096")
    parser.add_argument("--buckets", default="64,1024", help="buckets a file: one file size each")
    parser.add_argument("--rows", type=int, default=4, help="rows a record batch")
    parser.add_argument("--row-bytes", type=int, default=1000)
    parser.add_argument("--shard-buckets", type=int, default=2, help="buckets a gather reads of each file")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to write the files (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    results = []
    for buckets in (int(b) for b in args.buckets.split(",")):  # a loop over file sizes
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            folder = Path(tmp)
            write_files(folder, args.files, buckets, args.rows, args.row_bytes)
            os.sync()
            size = sum(p.stat().st_size for p in folder.glob("*.arrow")) // args.files
            for width, cache, checked in ((w, c, k) for w in widths for c in ("warm", "cold")
                                          for k in (False, True)):  # a loop over cases, then runs
                times = []
                for r in range(args.repeat):
                    first = (r * width) % max(1, args.files - width + 1)
                    lo = (r * 7) % (buckets - args.shard_buckets + 1)  # a different shard each run
                    want = (lo, lo + args.shard_buckets)
                    if cache == "cold":
                        drop_cache(folder)
                    else:
                        gather(folder, width, first, want, checked)
                    t0 = time.perf_counter()
                    got = gather(folder, width, first, want, checked)
                    times.append(time.perf_counter() - t0)
                    assert got == width * args.shard_buckets * args.rows, got
                med = statistics.median(times)
                results.append({"file_bytes": size, "buckets": buckets, "width": width, "cache": cache,
                                "marker_check": checked,
                                "gather_s": med, "pair_us": med / width * 1e6,
                                "min_pair_us": min(times) / width * 1e6})
    if args.json:
        print(json.dumps({"load": os.getloadavg(), "repeat": args.repeat, "results": results}, indent=1))
        return
    print(f"load average {os.getloadavg()[0]:.2f}; median of {args.repeat} runs; a gather reads "
          f"{args.shard_buckets} batches of {args.rows} rows from each file")
    print(f"{'file bytes':>11} {'W':>5} {'cache':>5} {'check':>5} {'gather s':>9} {'us a pair':>10} {'min us':>7}")
    for r in results:
        print(f"{r['file_bytes']:>11,} {r['width']:>5} {r['cache']:>5} {'yes' if r['marker_check'] else 'no':>5} "
              f"{r['gather_s']:>9.4f} {r['pair_us']:>10.1f} {r['min_pair_us']:>7.1f}")


if __name__ == "__main__":
    main()
