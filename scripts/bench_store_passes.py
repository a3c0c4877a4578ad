"""The bytes the split and the publishing process read from a store (issue 22), with the output and the work
folder on one S3 API (a local moto server), every task run as on a node of its own (a fresh mirror each).

    python scripts/bench_store_passes.py /tmp/store_passes/new --rows 10000
    python scripts/bench_store_passes.py /tmp/store_passes/old --rows 10000 --old

``--old`` forces the paths before issue 22: no server-side copy (each shard made elsewhere downloaded,
uploaded, read back) and the split's old file table (every keys column). Prints one JSON line: the
shards' bytes, ``store_bytes_read`` of publish and split (run_log.json), and a digest of the shards
(the same either way). Run from the repository's root (it uses the tests' moto server).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

OLD_SPLIT = ("keys/sample-*", "keys/scores-*", "keys/sizes-*", "keys/tokens-*", "keys/invalid-*", "keys/records-*",
             "keys/schema-*")
STAGES = ("keys", "split", "sort", "place", "layout", "scatter", "gather")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rows", type=int, default=10000, help="rows a file (3 files, ~350 bytes a row)")
    parser.add_argument("--old", action="store_true", help="the paths before issue 22")
    args = parser.parse_args()

    import s3fs

    from reorder_cli import config as run_config
    from reorder_cli import pipeline, work_store
    from reorder_cli.util import store
    from reorder_cli.workdir import SCRATCH_ENV
    from tests.conftest import invoke, write_parquet
    from tests.s3_server import S3Server
    from tests.test_s3 import WORDS

    tmp = args.folder
    srv = S3Server()
    try:
        for name, value in (("AWS_ACCESS_KEY_ID", srv.key), ("AWS_SECRET_ACCESS_KEY", srv.secret),
                            ("AWS_ENDPOINT_URL", srv.endpoint), ("AWS_DEFAULT_REGION", "us-east-1")):
            os.environ[name] = value
        store.configure({})
        s3fs.S3FileSystem.clear_instance_cache()
        rng = random.Random(5)
        files = []
        for k in range(3):  # a loop over files
            rows = [{"id": f"r{k}-{i}", "score": rng.random(), "text": "".join(rng.choices(WORDS, k=300))}
                    for i in range(args.rows)]
            files.append(write_parquet(tmp / "in" / f"w{k}.parquet", rows, row_group_size=2000))
        cfg_path = tmp / "cfg.yaml"
        cfg_path.write_text("score_field: score\nseed: 42\nformat: parquet\n")
        bucket = srv.bucket(f"m-{uuid.uuid4().hex[:10]}")
        work_dir, out = f"s3://{bucket}/w", f"s3://{bucket}/out"
        sets = ["shard_size=4MB", "rewrite=out-of-core", "memory_limit=1GB", f"work_dir={work_dir}"]
        if args.old:
            store.same_store = lambda a, b: False
            work_store.NEEDS["split"] = OLD_SPLIT
        os.environ[SCRATCH_ENV] = str(tmp / "driver")
        cfg = run_config.load(cfg_path, sets, method="str", inputs=[str(f) for f in files], output=out)
        assert pipeline.prepare(cfg).status == "prepared"
        for stage in STAGES:  # every task, each in a fresh mirror
            report = json.loads(invoke("status", out, "--json", "--work-dir", work_dir).stdout)["data"]["stages"]
            for i in range(report[stage]["tasks"]):
                os.environ[SCRATCH_ENV] = str(tmp / f"node-{stage}-{i}")
                ran = invoke("task", out, stage, i, "--work-dir", work_dir)
                assert ran.exit_code == 0, (stage, i, ran.output)
        os.environ[SCRATCH_ENV] = str(tmp / "driver")
        ran = invoke("run", cfg_path, "--method", "str", *sum((["--input", str(f)] for f in files), []),
                     "--output", out, "-q", *sum((["--set", s] for s in sets), []))
        assert ran.exit_code == 0, ran.output
        log = json.loads(srv.s3.get_object(Bucket=bucket, Key="out/.run_log.json")["Body"].read())
        doc = json.loads(srv.s3.get_object(Bucket=bucket, Key="out/.manifest.json")["Body"].read())
        digest = hashlib.sha256()
        for s in doc["shards"]:  # a loop over shards
            digest.update(srv.s3.get_object(Bucket=bucket, Key=f"out/{s['file']}")["Body"].read())
        print(json.dumps({"paths": "old" if args.old else "new", "rows": 3 * args.rows, "shards": len(doc["shards"]),
                          "shard_bytes": sum(s["bytes"] for s in doc["shards"]),
                          "publish_read": log["store_bytes_read"]["publish"],
                          "split_read": log["store_bytes_read"]["split"], "shards_sha256": digest.hexdigest()[:16]}))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
