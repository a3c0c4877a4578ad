"""``reorder audit``: logs of what a trainer consumed, against the order. Real outputs, real torch
DataLoaders for the positive case and for the negative controls (a shuffled loader, an
IterableDataset that ignores its workers, a contiguous block per rank)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reorder_cli.inspect.audit import audit
from reorder_cli.loader import Layout
from reorder_cli.loader.audit_log import AuditLog

from .conftest import invoke, one_line_error, reorder
from .loader_helpers import hf_trainer_steps
from .test_loader import ids_in_order


@pytest.fixture
def out(tmp_path, config_file, parquet_corpus):
    folder = tmp_path / "out"
    reorder(config_file, parquet_corpus.files, folder, method="str", sets=["shard_rows=150", "row_group_rows=50"])
    return folder


def write_log(path, steps: list[list], first_step: int = 0) -> None:
    log = AuditLog(path)
    for s, ids in enumerate(steps):
        log.log(s + first_step, ids)
    log.close()


def run_audit(out, *logs, extra=()):
    result = invoke("audit", out, *logs, "--json", *extra)
    return result.exit_code, (json.loads(result.stdout)["data"] if result.exit_code in (0, 1) else None)


def windows(ids: list, g: int) -> list[list]:
    return [ids[i : i + g] for i in range(0, len(ids) // g * g, g)]


def test_audit_holds_for_the_order_and_any_order_inside_a_window(out, tmp_path):
    ids = ids_in_order(out)
    steps = [list(reversed(w)) for w in windows(ids, 24)]  # the order inside a window is free
    write_log(tmp_path / "log.jsonl", steps, first_step=1)
    code, rep = run_audit(out, tmp_path / "log.jsonl")
    assert code == 0 and rep["held"] and rep["global_batch"] == 24 and rep["in_window"] == 1.0
    assert rep["first_bad_step"] is None and rep["never_seen"] == 0 and rep["seen_twice"] == 0
    # positions instead of ids, split per rank (two lines a step), and a resumed run
    log = AuditLog(tmp_path / "pos.jsonl")
    for s in range(5, 10):
        log.log(s, list(range(s * 24, s * 24 + 12)))
        log.log(s, list(range(s * 24 + 12, s * 24 + 24)))
    log.close()
    code, rep = run_audit(out, tmp_path / "pos.jsonl", extra=["--positions", "--start-sample", "120"])
    assert code == 0 and rep["ranks_per_step"] == 2 and rep["steps"] == 5
    plain = invoke("audit", out, tmp_path / "log.jsonl")
    assert plain.exit_code == 0 and "the order held" in plain.stdout


def test_audit_reports_displacement_duplicates_and_misses(out, tmp_path):
    ids = ids_in_order(out)
    steps = windows(ids, 10)[:20]
    steps[3][0], steps[7][5] = steps[7][5], steps[3][0]  # two samples 4 steps apart swapped
    steps[12][2] = steps[11][2]  # one sample consumed twice, one never
    write_log(tmp_path / "log.jsonl", steps)
    code, rep = run_audit(out, tmp_path / "log.jsonl")
    assert code == 1 and not rep["held"]
    assert rep["first_bad_step"] == 3 and rep["max_displacement"] == 4
    assert rep["seen_twice"] == 1 and rep["never_seen"] == 1 and rep["examples"]["never_seen"] == [122]
    assert rep["in_window"] == pytest.approx(197 / 200)
    write_log(tmp_path / "unknown.jsonl", [ids[:10], ids[10:19] + ["nope"]])
    code, rep = run_audit(out, tmp_path / "unknown.jsonl")
    assert code == 1 and rep["unknown"] == 1 and rep["examples"]["unknown"] == ["nope"]
    assert rep["first_bad_step"] == 1
    pytest.importorskip("matplotlib")
    png = tmp_path / "audit.png"
    assert invoke("audit", out, tmp_path / "log.jsonl", "--plot", png).exit_code == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_audit_tail_only_where_the_order_runs_out(out, tmp_path):
    """A last step shorter than G is the tail when its window passes the end of the order and it consumed the
    first positions of that window; G is inferred from the other steps."""
    ids = ids_in_order(out)  # 560 rows
    write_log(tmp_path / "tail.jsonl", [ids[500:540], ids[540:560]])  # resumed at 500, G = 40, a tail of 20
    code, rep = run_audit(out, tmp_path / "tail.jsonl", extra=["--start-sample", "500"])
    assert code == 0 and rep["held"] and rep["global_batch"] == 40 and rep["tail_samples"] == 20, rep
    write_log(tmp_path / "shifted.jsonl", [ids[500:540], ids[541:560]])  # the tail skipped its first row
    code, rep = run_audit(out, tmp_path / "shifted.jsonl", extra=["--start-sample", "500"])
    assert code == 1 and rep["never_seen"] == 1 and rep["examples"]["never_seen"] == [540], rep
    assert rep["first_bad_step"] == 1
    write_log(tmp_path / "middle.jsonl", [ids[0:40], ids[40:80], ids[80:100]])  # 460 rows still to go
    code, rep = run_audit(out, tmp_path / "middle.jsonl")
    assert code == 1 and rep["short_steps"] == 1 and rep["tail_samples"] == 0 and rep["first_bad_step"] == 2, rep


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 4), st.booleans())
def test_audit_of_the_hf_trainers_tail(out, tmp_path, world, b, k, recipe):
    """What the HF Trainer consumes (accelerate's sharding, its step arithmetic; tests/test_trainers.py runs the
    real one) holds, with or without the recipe's max_steps; a tail step with one wrong row does not."""
    pytest.importorskip("accelerate")
    n = len(ids_in_order(out))
    layout = Layout(n, b, k, world)
    steps = hf_trainer_steps(n, world, b, k, max_steps=layout.steps if recipe else -1)
    left = n // (world * b) % k * world * b  # rows of the Trainer's own last, partial step
    for name in ("hf.jsonl", "wrong.jsonl"):  # AuditLog appends; every example starts afresh
        (tmp_path / name).unlink(missing_ok=True)
    write_log(tmp_path / "hf.jsonl", steps)
    rep = audit(out, [tmp_path / "hf.jsonl"], positions=True)
    assert rep.held and rep.steps == len(steps), rep
    assert rep.tail_samples == (0 if recipe or len(steps) == 1 else left), rep
    wrong = [list(s) for s in steps]
    wrong[-1][0] = n - 1 if n - 1 not in wrong[-1] else wrong[-2][0]  # a row dropped at the end, or a twin
    write_log(tmp_path / "wrong.jsonl", wrong)
    rep = audit(out, [tmp_path / "wrong.jsonl"], positions=True)
    assert not rep.held and rep.first_bad_step == len(steps) - 1, rep


def test_audit_bad_log_is_one_line(out, tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"step": 0, "ids": []}\n{"step": 1}\n')
    assert "bad.jsonl: line 2" in one_line_error(invoke("audit", out, tmp_path / "bad.jsonl"))
    (tmp_path / "good.jsonl").write_text('{"step": 0, "ids": ["x"]}\n')  # the valid neighbour reads
    assert invoke("audit", out, tmp_path / "good.jsonl").exit_code == 1
    assert "no column 'nope'" in one_line_error(invoke("audit", out, tmp_path / "good.jsonl", "--id-field", "nope"))
    assert "cannot read" in one_line_error(invoke("audit", out, tmp_path / "missing.jsonl"))


# ------------------------------------------------------------------ real DataLoaders, W ranks in one process


def log_loaders(path, loaders: list, k: int) -> None:
    """Step s pools every rank's micro-batches s·k … s·k + k - 1 (what one optimizer step consumes)."""
    log = AuditLog(path)
    per_rank = [[list(batch["id"]) for batch in loader] for loader in loaders]
    steps = min(len(b) for b in per_rank) // k
    for s in range(steps):
        log.log(s, [i for b in per_rank for m in b[s * k : (s + 1) * k] for i in m])
    log.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_ordered_dataset_holds_and_naive_loaders_are_caught(out, tmp_path, workers):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, IterableDataset, Subset

    from reorder_cli.loader import OrderedDataset, OrderedMapDataset

    world, b, k = 2, 3, 2
    kw = {"batch_size": b, "num_workers": workers}
    good = [DataLoader(OrderedDataset(out, b, k, rank=r, world_size=world, columns=["id"]), **kw)
            for r in range(world)]
    log_loaders(tmp_path / "good.jsonl", good, k)
    code, rep = run_audit(out, tmp_path / "good.jsonl")
    assert code == 0 and rep["global_batch"] == world * b * k, rep

    full = OrderedMapDataset(out, columns=["id"])
    shuffled = [DataLoader(full, shuffle=True, generator=torch.Generator().manual_seed(r), **kw) for r in range(world)]
    log_loaders(tmp_path / "shuffled.jsonl", shuffled, k)
    code, rep = run_audit(out, tmp_path / "shuffled.jsonl")
    assert code == 1 and rep["in_window"] < 0.2 and rep["first_bad_step"] == 0

    n = len(full)
    blocks = [DataLoader(Subset(full, range(r * n // world, (r + 1) * n // world)), **kw) for r in range(world)]
    log_loaders(tmp_path / "contiguous.jsonl", blocks, k)
    code, rep = run_audit(out, tmp_path / "contiguous.jsonl")
    assert code == 1 and rep["max_displacement"] > 10 and rep["first_bad_step"] == 0

    class NotWorkerAware(IterableDataset):  # splits by rank, forgets the workers
        def __init__(self, rank):
            self.reader = OrderedDataset(out, b, k, rank=rank, world_size=world, columns=["id"])

        def __iter__(self):
            return self.reader._rows(0, 1)

    naive = [DataLoader(NotWorkerAware(r), **kw) for r in range(world)]
    log_loaders(tmp_path / "naive.jsonl", naive, k)
    code, rep = run_audit(out, tmp_path / "naive.jsonl")
    if workers:
        assert code == 1 and rep["seen_twice"] > 0 and rep["first_bad_step"] == 0
    else:
        assert code == 0  # one process: nothing to duplicate


def test_ordered_dataset_state_dict(out):
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from reorder_cli.loader import OrderedDataset

    ds = OrderedDataset(out, 2, 3, rank=0, world_size=2, columns=["id", "score"])
    it = iter(DataLoader(ds, batch_size=2))
    for _ in range(7):  # 2 whole steps and one micro-batch
        next(it)
    assert ds.state_dict() == {"samples_consumed": 24}
    assert ds.state_dict(steps=5) == {"samples_consumed": 60}
    with_workers = OrderedDataset(out, 2, 3, rank=0, world_size=2, columns=["id"])
    list(DataLoader(with_workers, batch_size=2, num_workers=1))
    with pytest.raises(ValueError, match="steps="):
        with_workers.state_dict()
    resumed = OrderedDataset(out, 4, 1, rank=1, world_size=3)
    resumed.load_state_dict({"samples_consumed": 24})
    assert resumed.layout == Layout(len(ids_in_order(out)), 4, 1, 3, 24)
