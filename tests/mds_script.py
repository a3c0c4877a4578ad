"""Run under torchrun by test_mds.py: MosaicML streaming's ``StreamingDataset`` over an MDS export, read by a
DataLoader of 2 workers on each rank; each rank logs its batches' positions (AuditLog), and rank 0 writes the
global batches gathered over the ranks (gloo).

    torchrun --nproc_per_node 2 tests/mds_script.py EXPORT LOG MODE B WORKDIR

MODE: ``recipe`` (``ordered_streaming_dataset``), ``shuffle`` (``shuffle=True``, the rest as the recipe),
``nodes`` (``num_canonical_nodes=2``, what the library's default, unset, becomes on two physical nodes; the
rest as the recipe). The library's defaults cannot run here at all: under torch.distributed it refuses an
unset ``batch_size``.
"""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from reorder_cli.loader.audit_log import AuditLog
from reorder_cli.loader.mds import POSITION, log_step, ordered_streaming_dataset
from tests.mds_helpers import import_streaming


def collate(samples: list[dict]) -> list[dict]:
    return samples  # the samples as they are (token arrays differ in length)


def dataset(export: str, mode: str, b: int):
    if mode == "recipe":
        return ordered_streaming_dataset(export, b, positions=True)
    import_streaming()
    from reorder_cli.loader.mds import PositionedStreamingDataset

    settings = {"shuffle": {"shuffle": True, "num_canonical_nodes": 1, "batch_size": b},
                "nodes": {"num_canonical_nodes": 2, "batch_size": b}}[mode]
    return PositionedStreamingDataset(local=export, **settings)


def main(export: str, log: str, mode: str, b: str, workdir: str) -> None:
    b = int(b)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    import_streaming()
    ds = dataset(export, mode, b)
    loader = torch.utils.data.DataLoader(ds, batch_size=b, num_workers=2, collate_fn=collate)
    audit = AuditLog(log, rank=rank)
    mine = []
    for step, batch in enumerate(loader):
        log_step(audit, step, batch)
        mine.append([{"position": int(s[POSITION]), "text": s["text"], "tokens": s["tokens"].tolist()}
                     for s in batch])
    audit.close()
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    if rank == 0:
        steps = max(len(g) for g in gathered)
        batches = [[s for g in gathered if t < len(g) for s in g[t]] for t in range(steps)]
        Path(workdir, "global.json").write_text(json.dumps(batches))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(*sys.argv[1:])
