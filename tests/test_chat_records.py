"""Chat-format (SFT) records: a ``messages`` list of ``{role, content, ...}`` structs, as JSONL and as
Parquet lists of structs, go through every path value for value: in memory and out of core,
JSONL->JSONL, JSONL->Parquet, Parquet->Parquet, Parquet->JSONL; and the loader reads them back.

Extra keys (``name``, ``tool_calls`` null in every message), empty lists and a null list survive.
In Parquet every message of a column has every key any message has: a key a JSONL message lacks
reads back as null (Arrow's own ``Table.from_pylist`` gives the same), which is what "value for
value" compares against whenever Parquet is on the path.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reorder_cli.loader import OrderedReader

from .conftest import expected_order, invoke, read_jsonl_out, read_parquet_out, reorder, shard_files

ROLES = ["system", "user", "assistant", "tool"]
PATHS = [(src, fmt, rewrite) for src in ("jsonl", "parquet") for fmt in ("jsonl", "parquet")
         for rewrite in ("in-memory", "out-of-core")]
OOC = ["rewrite=out-of-core", "memory_limit=1"]  # the smallest pieces (below the floor: tests only)


def chat_rows(n: int, seed: int) -> list[dict]:
    """``n`` SFT records: id, score, messages (0 to 4 turns; some with ``name`` and ``tool_calls: null``), meta."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        messages = []
        for j in range(rng.randint(0, 4)):
            tail = rng.choice(["é", "😀", "中文", 'q"', "\n"])
            m = {"role": rng.choice(ROLES), "content": f"turn {j} of {i}: {tail}"}
            if rng.random() < 0.3:
                m["name"] = rng.choice(["bot", "calc"])
            if rng.random() < 0.3:
                m["tool_calls"] = None
            messages.append(m)
        meta = {"source": rng.choice(["a", "b"]), "tools": None}  # a struct column with a null-typed field too
        rows.append({"id": f"c{i}", "score": rng.randint(0, 12) / 4, "messages": messages, "meta": meta})
    rows[1]["messages"] = []  # an empty conversation
    rows[2]["messages"] = [{"role": "assistant", "content": "", "name": "bot", "tool_calls": None}]
    return rows


def write_input(folder: Path, rows: list[dict], src: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if src == "jsonl":
        path = folder / "chat.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        path = folder / "chat.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=7)
    return path


def read_out(folder: Path, fmt: str) -> list[dict]:
    if fmt == "jsonl":
        return [json.loads(line) for line in read_jsonl_out(folder)]
    return read_parquet_out(folder).to_pylist()


def expected_values(rows: list[dict], src: str, fmt: str) -> list[dict]:
    """The records as the output holds them: JSONL->JSONL keeps the lines; through Parquet every message
    has every key (a missing one is null), as Arrow itself builds the column."""
    return rows if src == fmt == "jsonl" else pa.Table.from_pylist(rows).to_pylist()


def run_path(base: Path, rows: list[dict], src: str, fmt: str, rewrite: str, method: str) -> Path:
    config = base / "cfg.yaml"
    config.write_text("score_field: score\nseed: 42\n")
    out = base / f"out-{src}-{fmt}-{rewrite}-{method}"
    sets = [f"format={fmt}", "shard_rows=9", "row_group_rows=4", "window_size=5",
            *(OOC if rewrite == "out-of-core" else ["rewrite=in-memory"])]
    reorder(config, write_input(base / f"in-{src}", rows, src), out, method=method, sets=sets)
    return out


def check_output(out: Path, rows: list[dict], src: str, fmt: str, method: str) -> None:
    want = expected_values(rows, src, fmt)
    got = read_out(out, fmt)
    order = expected_order(method, [r["score"] for r in rows], window_size=5)
    assert got == [want[i] for i in order]  # the permutation the method gives, messages as Python objects
    assert list(OrderedReader(out, micro_batch_size=1, drop_last=False)) == got  # the loader reads them back


@pytest.mark.parametrize(("src", "fmt", "rewrite"), PATHS)
def test_chat_records_through_every_path(tmp_path, src, fmt, rewrite):
    rows = chat_rows(40, seed=1)
    out = run_path(tmp_path, rows, src, fmt, rewrite, "str")
    assert len(shard_files(out)) == 5
    check_output(out, rows, src, fmt, "str")
    got = read_out(out, fmt)
    assert {"role": "assistant", "content": "", "name": "bot", "tool_calls": None} in [m for r in got
                                                                                      for m in r["messages"]]
    assert [] in [r["messages"] for r in got]
    result = invoke("verify", out, "--with-inputs")  # verify proves the same permutation
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("src", "fmt"), [("jsonl", "parquet"), ("parquet", "parquet"), ("parquet", "jsonl")])
def test_chat_records_out_of_core_gives_the_in_memory_bytes(tmp_path, src, fmt):
    rows = chat_rows(40, seed=2)
    mem = run_path(tmp_path, rows, src, fmt, "in-memory", "saw")
    ooc = run_path(tmp_path, rows, src, fmt, "out-of-core", "saw")
    snap = {p.name: p.read_bytes() for p in [*shard_files(mem), mem / ".manifest.json"]}
    assert snap == {p.name: p.read_bytes() for p in [*shard_files(ooc), ooc / ".manifest.json"]}


# ------------------------------------------------------------------ generated records

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(ROLES), "content": st.one_of(st.none(), _text)},
    optional={"name": _text, "tool_calls": st.none()},
)
_record = st.fixed_dictionaries({"score": st.integers(0, 8).map(lambda s: s / 4),
                                 "messages": st.one_of(st.none(), st.lists(_message, max_size=3))})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(_record, min_size=1, max_size=14), path=st.sampled_from(PATHS),
       method=st.sampled_from(["str", "saw"]))
def test_generated_chat_records_are_a_permutation(tmp_path_factory, records, path, method):
    rows = [{"id": f"g{i}", **r} for i, r in enumerate(records)]
    src, fmt, rewrite = path
    base = tmp_path_factory.mktemp("gen")
    out = run_path(base, rows, src, fmt, rewrite, method)
    check_output(out, rows, src, fmt, method)
