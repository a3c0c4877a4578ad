"""The keys stage: one task an input file, its scores, sizes and key runs (``.reorder/keys/``)."""

from __future__ import annotations

import pyarrow as pa

from reorder_cli.config import RunConfig
from reorder_cli.formats import KeySource, open_keys, score_expr, unchanged
from reorder_cli.plan import build, order_tasks
from reorder_cli.plan import stored as stored_plan
from reorder_cli.plan.build import SpilledSource
from reorder_cli.rewrite import budget
from reorder_cli.stages.record import Stage, in_work_folder
from reorder_cli.stages.spec import Spec, load_spec
from reorder_cli.util import atomic, store
from reorder_cli.workdir import WorkDir


def _keys(work: WorkDir, spec: Spec, index: int) -> dict:
    cfg, inp = spec.cfg, spec.files[index]
    unchanged.check(inp.path, inp.stamp, f"keys task {index}")
    data = work.decompressed(index) if inp.format == "jsonl" and inp.compression else None
    source = open_keys(inp, score_expr.for_config(cfg), cfg.invalid_scores == "error", data)
    return keys_record(work, cfg, index, source) | {"bytes_in": inp.size}


def keys_record(work: WorkDir, cfg: RunConfig, index: int, source: KeySource) -> dict:
    """A keys task's files and record, from an input's keys (read by the task, or spilled by a local run)."""
    spilled = source if isinstance(source, SpilledSource) else build.spill(source, index, work.keys)
    valid = order_tasks.write_order_keys(work.keys, index, source.scores(), source.row_sizes(),
                                         order_tasks.run_direction(cfg.method, cfg.params), budget.keys_budget(cfg))
    if source.schema is not None:
        atomic.write_bytes(work.keys / f"schema-{index:05d}.arrow", source.schema.serialize().to_pybytes())
    return {"rows": source.rows, "valid": valid, "invalid": [list(x) for x in source.invalid],
            "data_path": None if spilled.data_path is None else work.portable(spilled.data_path),
            "unterminated": spilled.unterminated, "slices": stored_plan.slice_cuts(spilled)}


def sources(work: WorkDir, spec: Spec) -> list[SpilledSource]:
    """Every input's keys as the keys tasks left them (their files, and their records: the scatter slices)."""
    out = []
    for i, inp in enumerate(spec.files):  # a loop over files
        record = work.finished("keys", i)
        schema_file = work.keys / f"schema-{i:05d}.arrow"
        schema = pa.ipc.read_schema(pa.py_buffer(schema_file.read_bytes())) if schema_file.exists() else None
        out.append(SpilledSource(inp, i, work.keys, record["rows"], [tuple(x) for x in record["invalid"]], schema,
                                 None if record["data_path"] is None else store.location(record["data_path"]),
                                 record["unterminated"], cuts=record["slices"]))
    return out


def _count(work: WorkDir) -> int | None:
    spec = load_spec(work)
    return None if spec is None else len(spec.files)


KEYS = Stage("keys", "Reading scores", "one task an input file: its scores, sizes and key runs (`.reorder/keys/`)",
             "its input file's bytes (a Parquet input is read by column projection: less than that)",
             _count, in_work_folder("keys", _keys), after=None)
