"""The window contract under real torch.distributed (gloo, CPU processes launched with
torch.multiprocessing.spawn): every rank's ids are gathered at every micro-step and checked against
the manifest's order, for W = 2 and 3, num_workers 0 and 2, k = 1 and 2, and across a resume with a
different world size."""

from __future__ import annotations

import json

import pytest

from .test_loader import ids_in_order

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.trainer


def _child(rank: int, world: int, init_file: str, out: str, configs: list, result: str) -> None:
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    from reorder_cli.loader import OrderedDataset

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    results = []
    for b, k, workers, start, steps in configs:
        ds = OrderedDataset(out, micro_batch_size=b, grad_accum_steps=k, start_sample=start, columns=["id"])
        got = []
        for t, batch in enumerate(DataLoader(ds, batch_size=b, num_workers=workers)):
            if steps is not None and t >= steps * k:
                break
            every = [None] * world
            dist.all_gather_object(every, list(batch["id"]))
            got.append(every)
        results.append({"micro": got, "state": ds.state_dict(steps=len(got) // k)})
    if rank == 0:
        with open(result, "w") as fh:
            json.dump(results, fh)
    dist.barrier()
    dist.destroy_process_group()


def spawn(tmp_path, world: int, out, configs: list) -> list:
    import torch.multiprocessing as mp

    result = tmp_path / f"result-{world}.json"
    init = tmp_path / f"init-{world}"
    mp.spawn(_child, args=(world, str(init), str(out), configs, str(result)), nprocs=world, join=True)
    return json.loads(result.read_text())


def check(ids: list, run: dict, world: int, b: int, k: int, start: int, steps: int | None) -> None:
    g = world * b * k
    full = (len(ids) - start) // g
    micro = run["micro"]
    assert len(micro) == (full if steps is None else steps) * k
    for t, every in enumerate(micro):
        lo = start + t * world * b
        for r, part in enumerate(every):  # rank r: the contiguous block r of the global micro-batch
            assert part == ids[lo + r * b : lo + (r + 1) * b], (t, r)
        step_lo = start + t // k * g
        assert all(step_lo <= ids.index(i) < step_lo + g for part in every for i in part)
    assert run["state"] == {"samples_consumed": start + len(micro) // k * g}


@pytest.fixture
def out(tmp_path, config_file, parquet_corpus):
    from .conftest import reorder

    folder = tmp_path / "out"
    reorder(config_file, parquet_corpus.files, folder, method="str", sets=["shard_rows=150", "row_group_rows=40"])
    return folder


def test_ddp_gloo_windows_workers_and_resume_with_another_world_size(tmp_path, out):
    ids = ids_in_order(out)
    # W = 2: (b, k, num_workers, start sample, steps or None for all)
    two = [(3, 1, 0, 0, None), (3, 2, 2, 0, 8), (2, 2, 2, 0, 7)]
    got = spawn(tmp_path, 2, out, two)
    for cfg, run in zip(two, got, strict=True):
        check(ids, run, 2, cfg[0], cfg[1], cfg[3], cfg[4])
    resume_at = got[2]["state"]["samples_consumed"]
    assert resume_at == 7 * 2 * 2 * 2
    # W = 3, and the W = 2 run above resumed on 3 ranks with another b and k
    three = [(2, 1, 2, 0, 8), (4, 2, 0, 0, None), (3, 2, 2, resume_at, 6)]
    got3 = spawn(tmp_path, 3, out, three)
    for cfg, run in zip(three, got3, strict=True):
        check(ids, run, 3, cfg[0], cfg[1], cfg[3], cfg[4])
    before = [i for every in got[2]["micro"] for part in every for i in part]
    after = [i for every in got3[2]["micro"] for part in every for i in part]
    assert sorted(before, key=ids.index) == ids[:resume_at]
    assert sorted(after, key=ids.index) == ids[resume_at : resume_at + len(after)]
