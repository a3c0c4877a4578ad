"""``reorder stats`` and ``reorder preview`` on a mixture (issue 20, inspection): the sources' table, the
manifest's ``mixture`` section in ``--json`` (per-source rows and the shares), and the picture of the
realised shares (stacked area) and each source's score profile. Real runs of the 3-source mixture of
:mod:`tests.mixture_data`; every checker has a negative control it must reject."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml

import reorder_cli

from .conftest import invoke, one_line_error
from .mixture_data import source_keys, write_config, write_inputs

SCHEMA = json.loads((Path(reorder_cli.__file__).parent / "envelope.schema.json").read_text())
#: The areas' colours as drawn (Tableau 10 at alpha 0.85 over white): web, code, math.
AREAS = [np.array([0x4E, 0x79, 0xA7]), np.array([0xF2, 0x8E, 0x2B]), np.array([0x59, 0xA1, 0x4F])]


@pytest.fixture(scope="module")
def mixture(tmp_path_factory) -> dict[str, Path]:
    """The mixture's inputs and config, its output, and a second mixture (other weights) over the same
    inputs, with its output."""
    folder = tmp_path_factory.mktemp("mix")
    inputs = write_inputs(folder / "in")
    config = write_config(folder, inputs)
    other_keys = source_keys()
    other_keys["web"]["weight"], other_keys["math"]["weight"] = 0.2, [[0.0, 0.6], [1.0, 0.2]]
    (folder / "other").mkdir()
    other = write_config(folder / "other", inputs, sources=other_keys)
    for cfg, out in ((config, folder / "out"), (other, folder / "other-out")):
        result = invoke("run", cfg, "--output", out, "-q")
        assert result.exit_code == 0, result.output
    single = folder / "web.yaml"  # one source as a plain run: no mixture
    keys = {k: v for k, v in source_keys()["web"].items() if k != "weight"}
    single.write_text(yaml.safe_dump({"format": "parquet", "seed": 11, "input": str(inputs["web"]), **keys}))
    result = invoke("run", single, "--output", folder / "single", "-q")
    assert result.exit_code == 0, result.output
    return {"config": config, "out": folder / "out", "other_config": other, "other_out": folder / "other-out",
            "single": folder / "single", "single_config": single, "folder": folder}


def _manifest(out: Path) -> dict:
    return json.loads((out / ".manifest.json").read_text())


def _data(*args) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"], doc
    jsonschema.validate(doc, SCHEMA)
    return doc["data"]


# ------------------------------------------------------------------ checkers


def same_shares(data: dict, manifest: dict) -> bool:
    """Whether ``--json``'s mixture carries the manifest's per-source rows, totals and shares (realised,
    scheduled and mean score per window, and the window edges)."""
    mine, theirs = data.get("mixture"), manifest.get("mixture")
    if mine is None or theirs is None:
        return False
    return (mine["sources"] == theirs["sources"] and mine["totals"] == theirs["totals"]
            and all(mine["shares"][k] == theirs["shares"][k]
                    for k in ("windows", "edges", "realised", "scheduled", "mean_score")))


def _near(region: np.ndarray, colour: np.ndarray) -> float:
    """The fraction of ``region``'s pixels within a few levels of ``colour`` at alpha 0.85 over white."""
    blended = 0.85 * colour + 0.15 * 255
    return float((np.abs(region - blended).max(axis=-1) <= 6).mean())


def is_mixture_picture(path: Path) -> bool:
    """A real PNG of the default size whose top panel is a stacked area (mostly coloured, every source's
    colour a good part of it) and whose bottom panel is lines on white (mostly white, each source's colour
    present): the two panels' pixels differ as a stacked area and a line chart do."""
    from PIL import Image

    if path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    with Image.open(path) as image:
        if image.size != (1200, 760):
            return False
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    height, width = pixels.shape[:2]
    top = pixels[int(0.12 * height):int(0.50 * height), int(0.10 * width):int(0.75 * width)]
    bottom = pixels[int(0.66 * height):int(0.90 * height), int(0.10 * width):int(0.75 * width)]
    white = lambda region: float((region.min(axis=-1) >= 250).mean())  # noqa: E731
    areas = [_near(top, c) for c in AREAS]
    lines = [float((np.abs(bottom - c).max(axis=-1) <= 40).mean()) for c in AREAS]
    return white(top) < 0.05 and min(areas) > 0.10 and sum(areas) > 0.85 and white(bottom) > 0.80 \
        and min(lines) > 0.001


# ------------------------------------------------------------------ stats


def test_stats_json_carries_the_manifests_mixture_section(mixture):
    data = _data("stats", mixture["out"])
    manifest = _manifest(mixture["out"])
    assert same_shares(data, manifest)
    assert [s["name"] for s in data["mixture"]["sources"]] == ["web", "code", "math"]
    shares = data["mixture"]["shares"]
    assert len(shares["realised"]) == len(shares["scheduled"]) == len(shares["mean_score"]) == 100
    assert all(len(row) == 3 for row in shares["realised"])
    # negative controls: another mixture's manifest, a single-source output, a manifest with one share moved
    assert not same_shares(data, _manifest(mixture["other_out"]))
    assert not same_shares(_data("stats", mixture["single"]), manifest)
    assert "mixture" not in _data("stats", mixture["single"])
    moved = json.loads(json.dumps(manifest))
    moved["mixture"]["shares"]["realised"][50][0] += 0.01
    assert not same_shares(data, moved)
    # the envelope's schema requires the shares of a mixture (negative control: an envelope without them)
    envelope = {"command": "stats", "ok": True, "data": json.loads(json.dumps(data)), "warnings": []}
    jsonschema.validate(envelope, SCHEMA)
    del envelope["data"]["mixture"]["shares"]["scheduled"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(envelope, SCHEMA)


def test_stats_text_names_the_mixture_and_tables_its_sources(mixture):
    result = invoke("stats", mixture["out"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "mixture of 3 sources (web, code, math): budget 9,000 tokens" in text
    manifest = _manifest(mixture["out"])["mixture"]
    lines = text.splitlines()
    for s in manifest["sources"]:  # a row a source: its name, order, rows, tokens, epochs, quota and cut
        (row,) = [line for line in lines if line.strip("│ ").startswith(s["name"] + " ")]
        cells = [c.strip() for c in row.strip("│").split("│")]
        assert cells[0] == s["name"] and cells[3] == f"{s['rows']:,}" and cells[4] == f"{s['tokens']:,}"
        assert cells[6] == f"{s['quota']:,}" and cells[8] == f"{s['epochs']} of {s['max_epochs']}"
        assert cells[9] == ("yes" if s["cut"] else "no")
    assert "STR (S=2, L=3, r=0.225)" in text and "SAW (S=3, L=2, r=0.075)" in text
    assert "math: select top-r (r=0.8) kept 320 of 400 rows" in text
    # negative control: a single-source output's stats is no mixture
    single = invoke("stats", mixture["single"])
    assert single.exit_code == 0 and "mixture of" not in single.stdout and "source(s)" not in single.stdout


def test_stats_plot_draws_the_shares_and_score_profiles_from_the_manifest(mixture, tmp_path):
    picture = tmp_path / "mix.png"
    result = invoke("stats", mixture["out"], "--plot", picture)
    assert result.exit_code == 0, result.output
    assert 20_000 < picture.stat().st_size < 400_000
    assert is_mixture_picture(picture)
    # only the manifest is read: the shards moved away, the same picture
    shards = [mixture["out"] / s["file"] for s in _manifest(mixture["out"])["shards"]]
    hidden = [p.rename(tmp_path / p.name) for p in shards]
    try:
        again = tmp_path / "again.png"
        assert invoke("stats", mixture["out"], "--plot", again).exit_code == 0
    finally:
        for p, back in zip(hidden, shards, strict=True):
            p.rename(back)
    assert again.read_bytes() == picture.read_bytes()
    # negative controls: the other mixture draws another picture; a single-source picture is no mixture's
    other = tmp_path / "other.png"
    assert invoke("stats", mixture["other_out"], "--plot", other).exit_code == 0
    assert is_mixture_picture(other)
    from PIL import Image

    with Image.open(picture) as a, Image.open(other) as b:
        differ = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max(axis=-1) > 0
    assert differ.mean() > 0.05
    single = tmp_path / "single.png"
    assert invoke("stats", mixture["single"], "--plot", single, "--plot-size", "1200x760").exit_code == 0
    assert not is_mixture_picture(single)


# ------------------------------------------------------------------ preview


def test_preview_json_carries_the_plan_the_run_recorded(mixture, tmp_path):
    data = _data("preview", mixture["config"])
    assert same_shares(data, _manifest(mixture["out"]))  # the plan is deterministic: the run's rows, exactly
    (order,) = data["orders"]
    assert order["method"] == "mixture" and order["rows"] == _manifest(mixture["out"])["totals"]["rows"]
    assert data["inputs"]["rows"] == 600 + 120 + 400
    # negative control: the other mixture's preview is not this run's plan
    assert not same_shares(_data("preview", mixture["other_config"]), _manifest(mixture["out"]))


def test_preview_text_and_plot_of_a_mixture(mixture, tmp_path):
    picture = tmp_path / "p.png"
    result = invoke("preview", mixture["config"], "--plot", picture)
    assert result.exit_code == 0, result.output
    assert "mixture of 3 sources (web, code, math)" in result.stdout and "3 source(s)" in result.stdout
    assert is_mixture_picture(picture)
    stats_picture = tmp_path / "s.png"
    assert invoke("stats", mixture["out"], "--plot", stats_picture).exit_code == 0
    assert picture.read_bytes() == stats_picture.read_bytes()  # the same section, the same figure
    # negative control: a single-source preview's picture is no mixture's
    single = tmp_path / "single.png"
    result = invoke("preview", mixture["single_config"], "--plot", single, "--plot-size", "1200x760")
    assert result.exit_code == 0, result.output
    assert not is_mixture_picture(single)


def test_preview_refuses_compare_and_by_tokens_on_a_mixture_in_one_line(mixture):
    line = one_line_error(invoke("preview", mixture["config"], "--compare", "str,saw"))
    assert "--compare compares methods of one source" in line
    line = one_line_error(invoke("preview", mixture["config"], "--by", "tokens"))
    assert "--by tokens" in line
    # negative control: --compare on a single source is still allowed
    assert invoke("preview", mixture["single_config"], "--compare", "str,saw", "-q").exit_code == 0
