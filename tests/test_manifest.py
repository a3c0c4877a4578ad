"""The manifest is one typed record: ``Manifest.from_json`` / ``to_json`` round-trip every manifest a
reader accepts (this version's, an older one's, a newer one's with keys this version does not know),
and every reader gets the record, not a dict."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reorder_cli.errors import ReorderError
from reorder_cli.publish import manifest
from reorder_cli.publish.manifest import InputEntry, Manifest, ShardEntry

from .conftest import invoke, make_rows, reorder, to_lines, write_jsonl


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifest")
    cfg = root / "cfg.yaml"
    cfg.write_text("score_field: score\n")
    files = [write_jsonl(root / "in" / "a.jsonl", to_lines(make_rows(300, 3, "a"), seed=3))]
    out = root / "out"
    reorder(cfg, files, out, method="str", sets=["shard_rows=100", "select={method: top-k, k: 250}"])
    return out


def _text(out) -> str:
    return (out / manifest.MANIFEST_NAME).read_text(encoding="utf-8")


def test_a_written_manifest_reads_as_the_record_and_writes_back_byte_for_byte(finished):
    doc, folder = manifest.read(finished)
    assert isinstance(doc, Manifest) and folder == finished
    assert all(isinstance(s, ShardEntry) for s in doc.shards) and all(isinstance(i, InputEntry) for i in doc.inputs)
    assert [s.file for s in doc.shards] == ["00000.jsonl", "00001.jsonl", "00002.jsonl"]
    assert [s.positions for s in doc.shards] == [(0, 100), (100, 200), (200, 250)]
    assert doc.rows == 250 == doc.totals["rows"]
    assert doc.selection["rows_after"] == 250
    assert doc.dumps() == _text(finished)


def _older(data: dict) -> dict:
    """A manifest as an older version wrote it: no tool, no metrics, no score_field."""
    return {k: v for k, v in data.items() if k not in ("tool", "metrics", "score_field")}


def test_an_older_manifest_reads_and_writes_back_as_it_was(finished, tmp_path):
    data = _older(json.loads(_text(finished)))
    doc = Manifest.from_json(data, "old")
    assert doc.tool is None and doc.metrics is None and doc.score_field is None
    assert doc.to_json() == data and list(doc.to_json()) == list(data)  # keys and their order
    assert doc.scoring(tokens=False).text == "score"  # an old manifest without score_field: the default field
    # every reader takes it
    old = tmp_path / "old"
    old.mkdir()
    for s in doc.shards:
        (old / s.file).write_bytes((finished / s.file).read_bytes())
    (old / manifest.MANIFEST_NAME).write_text(manifest.dumps(data), encoding="utf-8")
    for command in (("stats", old), ("verify", old)):
        result = invoke(*command)
        assert result.exit_code == 0, result.output


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in manifest._ORDER),
                             st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3)),
                             max_size=4))
def test_keys_this_version_does_not_know_survive_the_round_trip(finished, extra):
    data = json.loads(_text(finished)) | extra
    assert Manifest.from_json(data).to_json() == data


def test_the_token_sections_are_optional_and_kept(finished):
    data = json.loads(_text(finished))
    with_tokens = data | {"tokens": {"total": 7, "shards": []}, "export": {"format": "x", "files": []}}
    doc = Manifest.from_json(with_tokens)
    assert doc.tokens == {"total": 7, "shards": []} and doc.export["format"] == "x"
    assert doc.to_json() == with_tokens
    assert Manifest.from_json(data).tokens is None and "tokens" not in Manifest.from_json(data).to_json()


@pytest.mark.parametrize("change, words", [
    (lambda d: d | {"manifest_version": 2}, "manifest_version 2 is not supported"),
    (lambda d: d | {"tokens": [1]}, "'tokens'"),
    (lambda d: d | {"shards": [{**d["shards"][0], "rows": -1}]}, "shard 0"),
    (lambda d: {k: v for k, v in d.items() if k != "totals"}, "'totals'"),
])
def test_a_manifest_of_the_wrong_shape_is_refused_in_one_line(finished, change, words):
    """The negative control of the round trip: from_json checks before it builds."""
    with pytest.raises(ReorderError, match=words) as caught:
        Manifest.from_json(change(json.loads(_text(finished))), "m.json")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("m.json: ")
