"""Check ``reorder`` row for row against the paper's reference script.

Needs a copy of the authors' ``data_ordering`` folder (microsoft/data-efficacy); it is
not part of this repo. Both tools order the same single JSONL file with the same
config; the script compares the output records line by line (as parsed JSON, since the
reference re-serialises records) for every case and prints one line per case.

    python scripts/compare_reference.py --reference ../data_ordering [--input tests/data/sample]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from reorder_cli.methods.orderings import segment_sizes  # noqa: E402

# (reference method name, reorder method, parameters)
CASES = [
    ("stair", "str", {"num_sections": 2, "folding_layer": 3, "folding_ratio": 0.225}),
    ("saw", "saw", {"num_sections": 3, "folding_layer": 2, "folding_ratio": 0.075}),
    ("stair", "str", {"num_sections": 4, "folding_layer": 2, "folding_ratio": 0.3, "window_size": 37, "seed": 7}),
    ("saw", "saw", {"num_sections": 5, "folding_layer": 3, "folding_ratio": 0.15, "ascending": False}),
    ("saw", "saw", {"num_sections": 3, "folding_layer": 2, "folding_ratio": 0.075, "window_size": 100}),
    ("sorting", "sorting", {}),
    ("sorting", "sorting", {"ascending": False, "window_size": 64, "seed": 3}),
    ("sorting", "sorting", {"use_gumbel": True, "temperature": 25.0, "seed": 11}),
    ("folding", "folding", {"folding_layer": 4}),
    ("zigzag", "zigzag", {"zigzag_layer": 5, "ascending": False, "window_size": 10}),
]
SEGMENT_CASES = [
    {"x_pct": 30, "y_pct": 30, "front_is_high": False, "back_is_high": True},
    {"x_pct": 20, "y_pct": 25, "front_is_high": True, "back_is_high": True},
    {"x_pct": 70, "y_pct": 50, "front_is_high": False, "back_is_high": False},
]


def single_jsonl(inputs: Path, folder: Path) -> Path:
    files = sorted(inputs.glob("*.jsonl")) if inputs.is_dir() else [inputs]
    out = folder / "input.jsonl"
    with open(out, "wb") as fh:
        for f in files:
            fh.write(f.read_bytes())
    return out


def run_reference(ref: Path, method: str, params: dict, data: Path, folder: Path) -> list[dict]:
    cfg = folder / f"ref-{method}.yaml"
    cfg.write_text(yaml.safe_dump({"score_field": "score", "ascending": True, "seed": 42, "window_size": 0, **params}))
    out = folder / "ref-out.jsonl"
    subprocess.run(
        [sys.executable, str(ref / "entry.py"), "--input_data_path", str(data), "--output_data_path", str(out),
         "--method", method, "--config_path", str(cfg)],
        check=True, capture_output=True,
    )
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def run_reorder(method: str, params: dict, data: Path, folder: Path) -> list[dict]:
    cfg = folder / "reorder.yaml"
    cfg.write_text(yaml.safe_dump({"score_field": "score", **params}))
    out = folder / "reorder-out"
    subprocess.run(
        [sys.executable, "-m", "reorder_cli.cli", "run", str(cfg), "--method", method, "--input", str(data),
         "--output", str(out), "--set", "format=jsonl", "--overwrite", "-q"],
        check=True, capture_output=True, cwd=REPO,
    )
    lines = [line for f in sorted(out.glob("*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines()]
    return [json.loads(line) for line in lines]


def segments(rows: list[dict], n_front: int, n_back: int) -> tuple[set, set, set]:
    ids = [r["id"] for r in rows]
    return set(ids[:n_front]), set(ids[n_front : len(ids) - n_back]), set(ids[len(ids) - n_back :])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="the authors' data_ordering folder")
    parser.add_argument("--input", type=Path, default=REPO / "tests/data/sample", help="a JSONL file or folder")
    args = parser.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = single_jsonl(args.input, folder)
        for ref_method, method, params in CASES:
            same = run_reference(args.reference, ref_method, params, data, folder) == run_reorder(
                method, params, data, folder
            )
            failures += not same
            print(f"{'same' if same else 'DIFFERENT':9}  {method:8} {params}")
        n = data.read_bytes().count(b"\n")
        for params in SEGMENT_CASES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sizes = segment_sizes(n, params["x_pct"], params["y_pct"])
            ref = segments(run_reference(args.reference, "segment", params, data, folder), *sizes)
            ours = segments(run_reorder("segment", params, data, folder), *sizes)
            same = ref == ours
            failures += not same
            print(f"{'same' if same else 'DIFFERENT':9}  segment  {params} (membership of the three segments)")
    print(f"{len(CASES) + len(SEGMENT_CASES) - failures} same, {failures} different")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
