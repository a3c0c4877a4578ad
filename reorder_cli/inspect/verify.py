"""``reorder verify``: check a finished output without trusting the run's bookkeeping.

Every shard the manifest lists is read back (``digest``) and compared with its entry:
present, size, sha256, records, score min/mean/max, readable; the entries themselves
must be consistent (names in training order, contiguous positions, totals), and no
shard-like file may sit in the folder unlisted. Given the inputs, the output's rows
must also be a permutation of the input rows (less those a ``drop`` policy left out),
shown with an order-independent multiset hash (``rowhash``). Every difference found is
reported, not just the first.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reorder_cli import config
from reorder_cli.errors import ReorderError
from reorder_cli.formats import score_expr
from reorder_cli.formats.discover import InputFile, discover
from reorder_cli.formats.writers import COMPRESSION, EXTENSIONS, shard_name
from reorder_cli.inspect import digest
from reorder_cli.inspect.rowhash import RowMultiset
from reorder_cli.metrics.summary import ScoreStats
from reorder_cli.plan import mixture as mix_plan
from reorder_cli.plan import select
from reorder_cli.plan.build import read_keys
from reorder_cli.publish import manifest
from reorder_cli.publish.manifest import Manifest, ShardEntry
from reorder_cli.util import store
from reorder_cli.util.hashing import file_sha256, fingerprint
from reorder_cli.util.progress import Progress

SHARD_LIKE = re.compile(r"^\d+\.(parquet|jsonl|jsonl\.zst|jsonl\.gz)$")


@dataclass(frozen=True)
class Problem:
    where: str  # a shard's file name, an input path, "manifest" or "output"
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.detail}"


@dataclass
class Report:
    shards: int
    rows: int
    bytes: int
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    permutation: str | None = None  # what the inputs check proved (None: not run)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.problems:
            return (f"{len(self.problems)} difference(s) found; {self.shards} shard(s) listed, {self.rows:,} rows and "
                    f"{self.bytes:,} bytes read")
        proved = f"; {self.permutation}" if self.permutation else ""
        return f"all good: {self.shards} shard(s), {self.rows:,} rows, {self.bytes:,} bytes match the manifest{proved}"


def verify(
    path: Path,
    inputs: list[str] | None = None,
    manifest_inputs: bool = False,
    workers: int = 0,
    progress: Progress | None = None,
) -> Report:
    """Check the output at ``path`` (a folder or its manifest); see the module doc.

    ``inputs`` (files, folders, globs) or ``manifest_inputs`` (the manifest's own input
    paths) add the permutation proof. Usage and input read errors raise ``ReorderError``.
    """
    if inputs and manifest_inputs:
        raise ReorderError("give --input or --with-inputs, not both")
    progress = progress or Progress(enabled=False)
    doc, folder = manifest.read(path)
    fmt, entries = _layout(doc)
    files = _input_files(doc, folder, inputs, manifest_inputs)
    workers = max(1, workers or (os.cpu_count() or 1))
    score_field = doc.scoring(tokens=False)

    names = set(store.names(folder))  # the files of a folder, or the objects under a URL
    paths = [folder / e.file if _plain_name(e.file) else None for e in entries]
    present = [p if p is not None and p.name in names else None for p in paths]
    sizes = {p.name: store.size(p) for p in present if p is not None}
    total = sum(sizes.values()) + sum(f.size for f in files or [])
    with progress.task("Verifying", total=total, unit="bytes") as advance:
        digests = _parallel(workers, present, advance, lambda p: (
            digest.output_shard(p, fmt, score_field, files is not None)), sizes)
        report = Report(len(entries), sum(d.rows or 0 for d in digests if d), sum(d.size for d in digests if d))
        report.problems += _entry_problems(fmt, entries)
        report.problems += _file_problems(entries, paths, digests, scores_comparable(doc))
        report.problems += _total_problems(doc, entries, digests)
        report.problems += _extra_files(names, entries)
        report.problems += _token_problems(doc, folder)
        if files is not None:
            _check_permutation(report, doc, folder, fmt, files, digests, workers, advance)
    return report


def _parallel(workers: int, items: list, advance: Callable[[int], None], fn: Callable,
              sizes: dict[str, int] | None = None) -> list:
    def one(item):
        if item is None:
            return None
        result = fn(item)
        advance(item.size if isinstance(item, InputFile) else (sizes or {}).get(item.name, 0))
        return result

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, items))


# ------------------------------------------------------------------ the manifest's own consistency


def _layout(doc: Manifest) -> tuple[str, list[ShardEntry]]:
    """The output format and the shard entries; a manifest without them cannot be checked."""
    if doc.format not in EXTENSIONS:
        raise ReorderError(f"the manifest: output format {doc.format!r} is not one of {', '.join(EXTENSIONS)}")
    return doc.format, doc.shards  # their shape checked by manifest.read


def _plain_name(name: str) -> bool:
    return name == Path(name).name and not name.startswith(".")


def _entry_problems(fmt: str, entries: list[ShardEntry]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    end = 0  # where the previous shard ends
    for i, e in enumerate(entries):
        name = e.file
        if not _plain_name(name):
            problems.append(Problem(name, "name", "not a file name inside the output folder"))
        elif name in seen:
            problems.append(Problem(name, "name", "listed twice in the manifest"))
        elif name != shard_name(i, fmt):
            problems.append(Problem(name, "name", f"shard {i} should be {shard_name(i, fmt)} (file-name order "
                                                  "is the training order)"))
        seen.add(name)
        if e.format != fmt or e.compression != COMPRESSION[fmt]:
            problems.append(Problem(name, "format", f"{e.format}/{e.compression} in an output of "
                                                    f"{fmt}/{COMPRESSION[fmt]}"))
        problem = _positions_problem(e.first, e.end, e.rows, end)
        if problem:
            problems.append(Problem(name, "positions", problem))
        end = e.end
    return problems


def _positions_problem(first: int, end: int, rows: int, prev_end: int) -> str | None:
    """Positions must be [first, first + rows), starting where the previous shard ends."""
    if first != prev_end:
        how = "starts" if prev_end == 0 else "leaves a gap" if first > prev_end else "overlaps the shard before"
        return f"[{first:,}, {end:,}) {how}: it should start at {prev_end:,}"
    if end - first != rows:
        return f"[{first:,}, {end:,}) spans {end - first:,} positions, but the shard has {rows:,} rows"
    return None


def _total_problems(doc: Manifest, entries: list[ShardEntry], digests: list) -> list[Problem]:
    t = doc.totals
    inv = doc.invalid_scores
    checks = [
        ("shards", len(entries), "the shards listed"),
        ("rows", sum(e.rows for e in entries), "the sum of the shards' rows"),
        ("rows", entries[-1].end if entries else 0, "the last shard's end position"),
        ("bytes", sum(e.bytes for e in entries), "the sum of the shards' bytes"),
        ("input_rows", sum(i.rows or 0 for i in doc.inputs), "the sum of the inputs' rows"),
        ("input_bytes", sum(i.bytes or 0 for i in doc.inputs), "the sum of the inputs' bytes"),
        ("dropped_rows", inv.get("dropped"), "invalid_scores.dropped"),
        ("input_rows", (t.get("rows") or 0) + (t.get("dropped_rows") or 0) + (t.get("unselected_rows") or 0)
         + (t.get("unscheduled_rows") or 0) - (t.get("repeated_rows") or 0),
         "rows + dropped_rows + unselected_rows" + (" + unscheduled_rows - repeated_rows" if doc.mixture else "")),
    ]
    problems = [Problem("manifest", "totals", f"{key} is {t.get(key)!r}, expected {want!r} ({what})")
                for key, want, what in checks if t.get(key) != want]
    dropped_ok = inv.get("count") if inv.get("policy") == "drop" else 0
    if inv.get("dropped") != dropped_ok:
        problems.append(Problem("manifest", "invalid_scores", f"dropped is {inv.get('dropped')!r} with policy "
                                                              f"{inv.get('policy')!r} and count {inv.get('count')!r}"))
    if all(d is not None and d.error is None for d in digests) and scores_comparable(doc):
        stats = ScoreStats()
        for d in digests:
            stats.merge(d.scores)
        if not _same_scores(stats.summary(), t.get("score")):
            problems.append(Problem("manifest", "totals", f"score {_scores(t.get('score'))}, but the shards hold "
                                                          f"{_scores(stats.summary())}"))
    return problems


# ------------------------------------------------------------------ the files against their entries


def _token_problems(doc: Manifest, folder: Path) -> list[Problem]:
    """The token pieces (``tokens.shards``) against the manifest: present, size, sha256 (their tokens file,
    and their lengths file where recorded)."""
    problems: list[Problem] = []
    for e in (doc.tokens or {}).get("shards", []):  # a loop over shards
        for name, size, sha in ((e["file"], e["bytes"], e["sha256"]),
                                (e["lengths"], e.get("lengths_bytes"), e.get("lengths_sha256"))):
            path = folder / name
            if not store.is_file(path):
                problems.append(Problem(name, "missing", "the manifest lists it but there is no such file"))
            elif size is not None and store.size(path) != size:
                problems.append(Problem(name, "size", f"{store.size(path):,} bytes, the manifest says {size:,}"))
            elif sha is not None and file_sha256(path) != sha:
                problems.append(Problem(name, "sha256", "differs from the manifest's (content changed)"))
    return problems


def _file_problems(entries: list[ShardEntry], paths: list, digests: list, compare_scores: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    schema = next((d.schema for d in digests if d is not None and d.schema is not None), None)
    for e, path, d in zip(entries, paths, digests, strict=True):
        name = e.file
        if path is None:
            continue  # already reported as a bad name
        if d is None:
            problems.append(Problem(name, "missing", "the manifest lists it but there is no such file"))
            continue
        if d.size != e.bytes:
            problems.append(Problem(name, "size", f"{d.size:,} bytes, the manifest says {e.bytes:,}"))
        if d.sha256 != e.sha256:
            problems.append(Problem(name, "sha256", f"{d.sha256[:16]}… differs from the manifest's "
                                                    f"{e.sha256[:16]}… (content changed)"))
        if d.error is not None:
            problems.append(Problem(name, "unreadable", d.error))
            continue
        if d.rows != e.rows:
            problems.append(Problem(name, "rows", f"the file holds {d.rows:,} rows, the manifest says {e.rows:,}"))
        if d.meta_rows is not None and d.meta_rows != d.rows:
            problems.append(Problem(name, "rows", f"the Parquet footer says {d.meta_rows:,} rows, {d.rows:,} read"))
        if d.unterminated:
            problems.append(Problem(name, "truncated", "the last record has no newline"))
        if compare_scores and not _same_scores(d.scores.summary(), e.score):
            problems.append(Problem(name, "score", f"the file holds {_scores(d.scores.summary())}, the manifest "
                                                   f"says {_scores(e.score)}"))
        if d.schema is not None and schema is not None and not d.schema.remove_metadata().equals(
                schema.remove_metadata()):
            problems.append(Problem(name, "schema", "differs from the first shard's schema"))
    return problems


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if not isinstance(b, int | float):
        return False
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)  # the manifest rounds to 6 decimals


def scores_comparable(doc: Manifest) -> bool:
    """Whether a shard's scores can be read back with one scoring: not for a mixture whose sources score by
    different fields or expressions (its manifest then names no score field)."""
    return not (doc.mixture and doc.score_field is None and doc.score is None)


def _same_scores(got: dict, want) -> bool:
    return isinstance(want, dict) and all(_close(got[k], want.get(k)) for k in ("min", "mean", "max"))


def _scores(s) -> str:
    if not isinstance(s, dict):
        return repr(s)
    return "min/mean/max " + "/".join("-" if s.get(k) is None else f"{s[k]:.6g}" for k in ("min", "mean", "max"))


def _extra_files(names: set[str], entries: list[ShardEntry]) -> list[Problem]:
    listed = {e.file for e in entries}
    return [Problem(name, "unexpected file", "a shard-like file that the manifest does not list")
            for name in sorted(names) if SHARD_LIKE.match(name) and name not in listed]


# ------------------------------------------------------------------ the permutation proof


def _input_files(doc: Manifest, folder: Path, inputs: list[str] | None,
                 manifest_inputs: bool) -> list[InputFile] | None:
    if inputs:
        return discover(inputs)
    if manifest_inputs:
        paths = [i.path for i in doc.inputs]
        if not paths:
            raise ReorderError("the manifest: no input paths to check against")
        return discover([str(store.beside(folder, p)) for p in paths])
    return None


def _check_permutation(report: Report, doc: Manifest, folder: Path, fmt: str, files: list[InputFile], digests: list,
                       workers: int, advance: Callable[[int], None]) -> None:
    schema = None
    if fmt == "parquet":  # rows compare by value, in the output's schema
        arrow = next((d.schema for d in digests if d is not None and d.schema is not None), None)
        if arrow is None:
            report.problems.append(Problem("output", "not a permutation", "no readable shard to compare rows with"))
            return
        schema = arrow
    inv = doc.invalid_scores
    score_field = doc.scoring(tokens=False)
    drop = inv.get("policy") == "drop"
    if doc.mixture:
        _check_mixture(report, doc, folder, files, digests, schema, workers, advance)
        return
    includes = _selected(report, doc, files, workers) if doc.selection else [None] * len(files)
    include = {id(f): mask for f, mask in zip(files, includes, strict=True)}
    found = _parallel(workers, files, advance,
                      lambda f: digest.input_file(f, score_field, drop, schema, include[id(f)]))
    report.warnings += _input_warnings(doc, folder, files, found)

    ins, outs = _multisets(found, digests)
    invalid = sum(d.invalid for d in found)
    if invalid != inv.get("count"):
        report.problems.append(Problem("inputs", "invalid scores", f"{invalid:,} input rows have an invalid score, "
                                                                   f"the manifest counted {inv.get('count')!r}"))
    dropped = invalid if drop else 0
    unselected = (doc.selection or {}).get("dropped") or 0
    read = (f"{ins.rows + dropped + unselected:,} input rows" + (f", {dropped:,} dropped as invalid" if drop else "")
            + (f", {unselected:,} not selected (recomputed from the inputs' scores)" if unselected else ""))
    if ins != outs:
        how = "the rows differ" if ins.rows == outs.rows else "the row counts differ"
        incomplete = any(d is None or d.error is not None for d in digests)
        kind = "not the selected rows" if doc.selection else "not a permutation"
        report.problems.append(Problem("output", kind, (
            f"{outs.rows:,} output rows vs {read}: {how} (row multiset hash {outs.digest()} vs {ins.digest()})"
            + ("; some shards could not be read" if incomplete else ""))))
    else:
        what = "exactly the selected rows" if doc.selection else "a permutation"
        report.permutation = f"the output is {what} of the inputs ({read}; row multiset hash {ins.digest()})"


def _multisets(found: list, digests: list) -> tuple[RowMultiset, RowMultiset]:
    """The row multisets of the inputs' digests (``found``) and of the shards' (``digests``; None: unread)."""
    ins, outs = RowMultiset(), RowMultiset()
    for d in found:
        ins.merge(d.multiset)
    for d in digests:
        if d is not None and d.multiset is not None:
            outs.merge(d.multiset)
    return ins, outs


def _check_mixture(report: Report, doc: Manifest, folder: Path, files: list[InputFile], digests: list, schema,
                   workers: int, advance: Callable[[int], None]) -> None:
    """A mixture's proof: its plan made again from the inputs and the manifest's mixture section (each
    source's config, the weights, the budget), then the output's rows against the rows that plan schedules,
    a source's rows once per epoch it gives. A plan whose quotas, rows or epochs differ is a problem."""
    section = doc.mixture
    counts = [len(s["inputs"]) for s in section["sources"]]
    if len(files) != sum(counts):
        raise ReorderError(f"the mixture's sources read {sum(counts)} file(s), {len(files)} given: give each "
                           "source's inputs, source by source (or --with-inputs)")
    bounds = np.cumsum([0, *counts])
    raw = {"budget": section["budget"], "redistribute": section["redistribute"], "seed": section["seed"],
           "format": doc.format, "sources": [
               {"name": s["name"], "weight": s["weight"], "max_epochs": s["max_epochs"], **s["config"],
                "input": [str(f.path) for f in files[bounds[j]:bounds[j + 1]]]}
               for j, s in enumerate(section["sources"])]}
    if section["token_field"]:
        raw["token_field"] = section["token_field"]
    cfg = config.resolve(raw, output=str(folder))
    again = mix_plan.plan(cfg, mix_plan.order_sources(cfg, None, Progress(enabled=False).task))
    facts = ("quota", "rows", "tokens", "epochs", "distinct_rows")
    for mine, theirs in zip(again.mixture["sources"], section["sources"], strict=True):
        differ = [f"{k} {mine[k]!r} (manifest: {theirs.get(k)!r})" for k in facts if mine[k] != theirs.get(k)]
        if differ:
            report.problems.append(Problem("inputs", "mixture", f"source '{mine['name']}': planned again from the "
                                           f"inputs, it gives {', '.join(differ)}"))
    taken = np.zeros(again.input_rows, dtype=bool)
    taken[np.asarray(again.order)] = True
    scorings = [score_expr.for_config(one) for one in config.source_configs(cfg)]
    of_file = [scorings[j] for j, s in enumerate(again.mixture["sources"]) for _ in range(s["epochs"] * counts[j])]

    def one(i: int) -> digest.InputDigest:  # a source's files once per epoch it gives
        found = digest.input_file(again.files[i], of_file[i], False, schema,
                                  taken[again.row_starts[i]:again.row_starts[i + 1]])
        advance(again.files[i].size)
        return found

    with ThreadPoolExecutor(workers) as pool:
        found = list(pool.map(one, range(len(again.files))))
    ins, outs = _multisets(found, digests)
    read = f"{ins.rows:,} rows scheduled from {len(section['sources'])} sources (planned again from the inputs)"
    if ins != outs:
        report.problems.append(Problem("output", "not the scheduled rows", (
            f"{outs.rows:,} output rows vs {read}: the rows differ (row multiset hash {outs.digest()} vs "
            f"{ins.digest()})")))
    else:
        report.permutation = f"the output is exactly the scheduled rows of its sources ({read}; row multiset hash " \
                             f"{ins.digest()})"


def _selected(report: Report, doc: Manifest, files: list[InputFile], workers: int) -> list[np.ndarray]:
    """The rows the run must have written, a mask a file: the selection recomputed from the inputs'
    scores (and tokens), plus the invalid rows unless dropped. A recomputed selection that differs
    from the manifest's is a problem."""
    sel = doc.selection
    sources = read_keys(files, doc.scoring(), False, max(1, workers))
    scores = np.concatenate([s.scores() for s in sources]) if sources else np.zeros(0)
    tokens = np.concatenate([s.tokens() for s in sources]) if select.token_field(sel["params"]) and sources else None
    try:
        chosen = select.choose(sel["params"], len(scores), select.in_memory(scores, tokens), max(1, len(scores)))
    except ReorderError as exc:
        report.problems.append(Problem("inputs", "selection", str(exc)))
        chosen = None
    cut = select.Cut(math.inf, len(scores)) if chosen is None else chosen.cut
    again = chosen.to_json() if chosen else {}
    for key in ("rows_before", "rows_after", "tokens_before", "tokens_after", "cutoff"):
        if chosen is not None and again[key] != sel.get(key):
            report.problems.append(Problem("inputs", "selection", (
                f"recomputed from the inputs, the selection gives {key} {again[key]!r}; the manifest says "
                f"{sel.get(key)!r} (rows that should have been kept or dropped differ)")))
    keep = cut.keep(0, scores)
    if doc.invalid_scores.get("policy") != "drop":
        keep |= np.isnan(scores)
    bounds = np.cumsum([0] + [s.rows for s in sources])
    return [keep[bounds[i]:bounds[i + 1]] for i in range(len(sources))]


def _input_warnings(doc: Manifest, folder: Path, files: list[InputFile], found: list) -> list[str]:
    """Inputs that are not those of the run, or changed since (fingerprint, rows)."""
    recorded = {store.beside(folder, i.path): i for i in doc.inputs}
    warnings, seen = [], set()
    for f, d in zip(files, found, strict=True):
        entry = recorded.get(f.path.resolve())
        if entry is None:
            warnings.append(f"{f.path}: not an input of this run (the manifest does not list it)")
            continue
        seen.add(f.path.resolve())
        if entry.fingerprint != fingerprint(f.path):
            warnings.append(f"{f.path}: changed since the run (its fingerprint differs from the manifest's)")
        if entry.rows != d.rows:
            warnings.append(f"{f.path}: {d.rows:,} rows, the manifest says {entry.rows!r}")
    for path, entry in recorded.items():
        if path not in seen:
            warnings.append(f"{entry.path}: an input of the run that was not given")
    return warnings
