"""Load, merge and validate a run's configuration.

A config is a flat YAML mapping. It uses the reference implementation's keys for the
ordering (so the authors' own config files work unchanged) plus the tool's own keys
(inputs, output, format, shard sizes ...). Unknown keys and out-of-range values are
errors that name the key; nothing silently falls back to a default.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from reorder_cli import methods as registry
from reorder_cli.errors import ReorderError
from reorder_cli.mix import spec as mix_spec
from reorder_cli.util import store
from reorder_cli.util.hashing import file_sha256
from reorder_cli.util.stage_names import SLURM_JOBS, TASK_STAGES
from reorder_cli.util.units import parse_size

# ------------------------------------------------------------------ the key table


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``; did you mean X?`` for the closest of ``known`` to ``name`` (difflib), else nothing."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


@dataclass(frozen=True)
class Key:
    name: str
    default: Any
    help: str
    check: Callable[[str, Any], Any]

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods that read this key (none for the tool's own keys): the registry says."""
        return tuple(m.name for m in registry.METHODS.values() if self.name in m.keys)


def _typed(schema: dict[str, Any]) -> Callable:
    """Attach the JSON Schema of the values a check accepts (``reorder config schema`` reads it)."""
    def mark(check: Callable) -> Callable:
        check.schema = schema
        return check
    return mark


@_typed({"type": "boolean"})
def _bool(key: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ReorderError(f"config key '{key}': expected true or false, got {v!r}")


#: The largest value of an integer key (int64's): a value past it cannot be stored or computed with.
INT_MAX = 2**63 - 1


def _int(lo: int, hi: int = INT_MAX) -> Callable[[str, Any], int]:
    def check(key: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or int(v) != v:
            raise ReorderError(f"config key '{key}': expected an integer, got {v!r}")
        if v < lo:
            raise ReorderError(f"config key '{key}': must be >= {lo}, got {v!r}")
        if v > hi:
            raise ReorderError(f"config key '{key}': must be <= {hi:,}, got {v!r}")
        return int(v)

    return _typed({"type": "integer", "minimum": lo})(check)


def _float(lo: float, hi: float | None = None) -> Callable[[str, Any], float]:
    def check(key: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ReorderError(f"config key '{key}': expected a finite number, got {v!r}")
        if v < lo or (hi is not None and v > hi):
            bounds = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise ReorderError(f"config key '{key}': must be {bounds}, got {v!r}")
        return float(v)

    bounds = {"minimum": lo} if math.isfinite(lo) else {}
    return _typed({"type": "number", **bounds, **({"maximum": hi} if hi is not None else {})})(check)


@_typed({"type": "string", "minLength": 1})
def _str(key: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ReorderError(f"config key '{key}': expected a non-empty string, got {v!r}")
    return v


def _choice(*options: str) -> Callable[[str, Any], str]:
    def check(key: str, v: Any) -> str:
        if v not in options:
            raise ReorderError(f"config key '{key}': expected one of {', '.join(options)}, got {v!r}"
                               f"{did_you_mean(v, options)}")
        return v

    return _typed({"enum": list(options)})(check)


_PATHS = {"anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string"}}]}


@_typed(_PATHS)
def _inputs(key: str, v: Any) -> list[str]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise ReorderError(f"config key '{key}': expected a path or a list of paths, got {v!r}")
    return list(items)


@_typed({"type": ["integer", "string"], "examples": ["256MB", "1GiB", 0]})
def _size(key: str, v: Any) -> int:
    return parse_size(v, key)


@_typed({"type": "string", "minLength": 1})
def _expression(key: str, v: Any) -> str:
    """A score expression: parsed (and refused with the position at fault) by ``formats.score_expr``."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)  # a bare number: refused later, as an expression that reads no field
    if not isinstance(v, str) or not v.strip():
        raise ReorderError(f"config key '{key}': expected an expression over fields, e.g. \"0.5 * a + 0.5 * b\", "
                           f"got {v!r}")
    return v


# ------------------------------------------------------------------ the select: section

#: Selection methods (the reference's data_selection, plus a token budget) -> the keys each reads.
SELECT_METHODS = {"top-k": ("k",), "top-r": ("r",), "threshold": ("threshold",), "tokens": ("budget", "token_field")}
#: Keys a reference data_selection config carries that change nothing here.
SELECT_IGNORED = ("name", "version", "description")
_COUNT = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}


@_typed({"type": ["integer", "string"], "examples": [5000000, "10B"]})
def _count(key: str, v: Any) -> int:
    """A token count: an integer, or a number with K, M, B (or G) or T (10B: ten billion)."""
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMBGT]?)\s*", v.upper())
        if m is None:
            raise ReorderError(f"config key '{key}': expected a token count such as 5000000 or 10B, got {v!r}")
        v = round(float(m.group(1)) * _COUNT[m.group(2)], 6)
    return _int(1)(key, v)


_SELECT_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "k": _int(1), "r": _float(0.0, 1.0), "threshold": _float(-math.inf), "budget": _count, "token_field": _str,
}
SELECT_CHECKS_ALL = {"method", "score_field", *_SELECT_CHECKS}


# ------------------------------------------------------------------ the slurm: section


@_typed(_PATHS)
def _lines(key: str, v: Any) -> list[str]:
    """A line or a list of lines (extra #SBATCH options, setup commands)."""
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(x, str) and "\n" not in x for x in items):
        raise ReorderError(f"config key '{key}': expected a line or a list of lines, got {v!r}")
    return list(items)


_SLURM_TIME = re.compile(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}|UNLIMITED|INFINITE", re.IGNORECASE)


@_typed({"type": ["integer", "string"], "examples": [30, "2:00:00", "1-12:00:00"]})
def _slurm_time(key: str, v: Any) -> str:
    """A Slurm time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (or UNLIMITED)."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return str(v)  # minutes
    if not isinstance(v, str) or not _SLURM_TIME.fullmatch(v.strip()):
        raise ReorderError(f"config key '{key}': expected a Slurm time such as 30 (minutes), 2:00:00 or 1-12:00:00, "
                           f"got {v!r}")
    return v.strip()


#: The stages submitted as Slurm jobs; each may have its own time limit, ``slurm.time_STAGE``.
SLURM_STAGES = TASK_STAGES + SLURM_JOBS

#: Keys of the ``slurm:`` section (``--executor slurm``) -> their checks; every key is optional.
SLURM_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "partition": _str, "account": _str, "qos": _str, "time": _slurm_time, "cpus_per_task": _int(1), "mem": _str,
    "max_parallel": _int(1), "extra_sbatch": _lines, "setup": _lines,
    **{f"time_{stage}": _slurm_time for stage in SLURM_STAGES},
}


#: Keys of the ``ray:`` section (``--executor ray``) -> their checks; every key is optional.
RAY_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "address": _str, "num_cpus": _float(0.0), "memory": _size, "max_in_flight": _int(1), "max_retries": _int(0),
}


def _section(name: str, checks: dict[str, Callable[[str, Any], Any]], example: str) -> Callable[[str, Any], Any]:
    def check(key: str, v: Any) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise ReorderError(f"config key '{name}': expected a mapping such as {example}, got {v!r}")
        unknown = [k for k in v if k not in checks]
        if unknown:
            raise ReorderError(f"unknown config key '{name}.{unknown[0]}'{did_you_mean(unknown[0], checks)} "
                               f"(known: {', '.join(checks)})")
        return {k: checks[k](f"{name}.{k}", x) for k, x in v.items() if x is not None}
    return _typed({"type": "object", "additionalProperties": False,
                   "properties": {k: getattr(c, "schema", {}) for k, c in checks.items()}})(check)


_slurm = _section("slurm", SLURM_CHECKS, "{partition: cpu, time: '2:00:00'}")
_ray = _section("ray", RAY_CHECKS, "{address: 'ray://head:10001', memory: 4GB}")


@_typed({"type": "object"})
def _storage(key: str, v: Any) -> dict[str, Any]:
    """The ``storage_options:`` section: passed as it is to the fsspec filesystem of every URL (its values
    are never echoed: they may be credentials)."""
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise ReorderError(f"config key '{key}': expected a mapping such as {{endpoint_url: 'http://minio:9000', "
                           f"anon: true}}, got a {type(v).__name__}")
    return dict(v)


#: ``METHOD:VALUE``, the compact form of one selection (``top-r:0.6``, ``tokens:10B``): VALUE is the
#: method's first key (k, r, threshold, budget).
_COMPACT = re.compile(r"\s*([A-Za-z_-]+)\s*:\s*(\S.*?)\s*")


def select_section(v: Any) -> dict[str, Any]:
    """One selection as a mapping: a mapping, ``METHOD:VALUE`` (``top-r:0.6``) or a path naming a YAML file
    (e.g. the reference's ``data_selection/config/top-r.yaml``); a path written in a config file was made
    relative to that file's folder by :func:`load`."""
    if isinstance(v, str):
        compact = _COMPACT.fullmatch(v)
        if compact and compact.group(1) in SELECT_METHODS:
            value = yaml.safe_load(compact.group(2))
            return {"method": compact.group(1), SELECT_METHODS[compact.group(1)][0]: value}
        if compact and not Path(v).exists() and "/" not in v:
            raise ReorderError(f"config key 'select': unknown selection method {compact.group(1)!r}"
                               f"{did_you_mean(compact.group(1), SELECT_METHODS)} (one of "
                               f"{', '.join(SELECT_METHODS)}, e.g. top-r:0.6 or tokens:10B)")
        return read_yaml(Path(v))
    if not isinstance(v, dict):
        raise ReorderError(f"config key 'select': expected a mapping such as {{method: top-r, r: 0.5}}, "
                           f"METHOD:VALUE such as top-r:0.6, a list of them (a chain) or a path to a selection "
                           f"config, got {v!r}")
    return dict(v)


def _select(key: str, v: Any) -> dict[str, Any] | list[dict[str, Any]]:
    """The validated ``select:`` value: one selection {method, its keys}, or a chain (a list of two or more,
    each applied to the rows the one before kept). A list of one is that selection."""
    if not isinstance(v, list):
        return _one_selection(v, "select")
    if not v:
        raise ReorderError("config key 'select': an empty list; give a selection, or remove the key")
    steps = [_one_selection(step, f"select[{i}]") for i, step in enumerate(v)]
    if any(not step for step in steps):
        raise ReorderError("config key 'select': a chain cannot hold method none; remove that step")
    fields = {step["token_field"] for step in steps if "token_field" in step}
    if len(fields) > 1:
        raise ReorderError(f"config key 'select': the chain's token budgets read different token fields "
                           f"({', '.join(sorted(fields))}); a run reads one token_field")
    return steps[0] if len(steps) == 1 else steps


def _one_selection(v: Any, where: str) -> dict[str, Any]:
    """One validated selection: {method, its keys}; ``method`` may be left out when one method's key is
    given (as in the reference's configs, which name the method on its command line)."""
    section = select_section(v)
    unknown = [k for k in section if k not in SELECT_CHECKS_ALL and k not in SELECT_IGNORED]
    if unknown:
        raise ReorderError(f"unknown config key '{where}.{unknown[0]}'{did_you_mean(unknown[0], SELECT_CHECKS_ALL)} "
                           f"(known: method, {', '.join(sorted(_SELECT_CHECKS))}, score_field)")
    method = section.get("method")
    if method == "none":  # --set select.method=none: no selection, whatever the file says
        return {}
    if method is None:
        implied = [m for m, keys in SELECT_METHODS.items() if keys[0] in section]
        if len(implied) != 1:
            raise ReorderError(f"config key '{where}.method': expected one of " + ", ".join(SELECT_METHODS)
                               + " (or exactly one of the keys k, r, threshold, budget)")
        method = implied[0]
    if method not in SELECT_METHODS:
        raise ReorderError(f"config key '{where}.method': expected one of {', '.join(SELECT_METHODS)} (or none), "
                           f"got {method!r}{did_you_mean(method, SELECT_METHODS)}")
    out: dict[str, Any] = {"method": method}
    for name in SELECT_METHODS[method]:
        if name not in section or section[name] is None:
            need = ("a token budget needs the field holding each row's token count, e.g. token_field: token_count "
                    "(--token-field)" if name == "token_field" else f"{method} needs it")
            raise ReorderError(f"config key '{where}.{name}': missing; {need}")
        out[name] = _SELECT_CHECKS[name](f"{where}.{name}", section[name])
    others = [k for k in section if k in _SELECT_CHECKS and k not in SELECT_METHODS[method]]
    if others:
        raise ReorderError(f"config key '{where}.{others[0]}': not read by select method {method} (it reads "
                           f"{', '.join(SELECT_METHODS[method])})")
    if section.get("score_field") is not None:
        out["score_field"] = _str(f"{where}.score_field", section["score_field"])
    return out


def selection_token_field(select: Mapping[str, Any] | list | None) -> str | None:
    """The token field a validated ``select:`` value (a selection or a chain) reads; None without a token budget."""
    steps = select if isinstance(select, list) else [select or {}]
    return next((s["token_field"] for s in steps if s.get("token_field")), None)


def patch_select(value: Any, subs: Mapping[str, Any]) -> Any:
    """``select:`` with ``--set select.KEY=value`` overrides applied: to the one selection, or to each
    step of a chain whose method reads KEY (``score_field``: every step). ``method=none``: no selection."""
    if subs.get("method") == "none":
        return {"method": "none"}
    if not isinstance(value, list):
        return {**select_section(value), **subs}
    steps = [select_section(step) for step in value]
    if "method" in subs:
        raise ReorderError("--set select.method: the selection is a chain; give the whole chain (--select, "
                           "repeated) or select.method=none")
    for key, x in subs.items():
        readers = [s for s in steps if key == "score_field"
                   or key in SELECT_METHODS.get(s.get("method") or _implied(s), ())]
        if not readers:
            raise ReorderError(f"--set select.{key}: no selection of the chain reads {key}")
        for step in readers:
            step[key] = x
    return steps


def _implied(section: Mapping[str, Any]) -> str:
    return next((m for m, keys in SELECT_METHODS.items() if keys[0] in section), "")


def _select_schema() -> dict[str, Any]:
    """The JSON Schema of ``select:``: one selection per method, METHOD:VALUE or a path, or a list (a chain)."""
    one = {"anyOf": [
        *({"type": "object", "required": [keys[0]] + (["token_field"] if "token_field" in keys else []),
           "properties": {"method": {"const": m}, **{k: getattr(_SELECT_CHECKS[k], "schema", {}) for k in keys},
                          "score_field": {"type": "string"}, **{k: {} for k in SELECT_IGNORED}},
           "additionalProperties": False} for m, keys in SELECT_METHODS.items()),
        {"type": "string", "description": "METHOD:VALUE (top-r:0.6, tokens:10B) or the path of a selection file"},
    ]}
    return {"anyOf": [*one["anyOf"], {"type": "array", "minItems": 1, "items": one}]}


def resolve_method(name: str) -> str:
    """The canonical name of method ``name``; a one-line error when there is none."""
    return _method("method", name)


@_typed({"enum": registry.names()})
def _method(key: str, v: Any) -> str:
    name = registry.canonical(v) if isinstance(v, str) else None
    if name is None:
        raise ReorderError(f"unknown method {v!r}; choose one of {', '.join(registry.names())}"
                           f"{did_you_mean(v, registry.names())}")
    return name


#: ``format:`` values that mean ``export: <that>`` with the rows in Parquet, as issue 19 writes them.
EXPORT_FORMATS = ("megatron", "olmo", "mds")
#: The keys of a run's tokenization (``RunConfig.tokens``); ``tokenizer`` turns it on.
TOKEN_KEYS = ("tokenizer", "text_field", "add_bos", "add_eos", "bos_token", "eos_token", "token_dtype")

ORDERING_KEYS = [
    Key("score_field", "score", "field holding the score; a dotted path reaches nested fields (metadata.score)",
        _str),
    Key("ascending", True, "true: low scores first; ties always keep input order", _bool),
    Key("seed", 42, "seed of every random draw", _int(0)),
    Key("window_size", 0, "JIT: shuffle windows of this many rows after ordering (0 or 1: off)", _int(0)),
    Key("folding_layer", 3, "layers L of FO-L (folding) and of the STR/SAW transition regions", _int(1)),
    Key("zigzag_layer", 3, "layers L of ZIG-L", _int(1)),
    Key("num_sections", 2, "STR/SAW: sections S; S-1 transition regions at round(n*s/S)", _int(1)),
    Key("folding_ratio", 0.225, "STR/SAW: region radius round(n*ratio) on each side of a split", _float(0.0)),
    Key("use_gumbel", False, "sorting: add Gumbel(0,1)*temperature noise to the ranks", _bool),
    Key("temperature", 1.0, "sorting: scale of the Gumbel rank noise", _float(0.0)),
    Key("x_pct", 30.0, "segment: percent of rows in the front segment", _float(0.0, 100.0)),
    Key("y_pct", 30.0, "segment: percent of rows in the back segment", _float(0.0, 100.0)),
    Key("front_is_high", False, "segment: front segment takes the highest scores", _bool),
    Key("back_is_high", True, "segment: back segment takes the highest scores", _bool),
]

TOOL_KEYS = [
    Key("method", None, "ordering method (the command line's --method wins); input keeps the input order",
        _method),
    Key("score", None, "score expression over fields instead of score_field, e.g. \"0.5 * a + 0.5 * meta.b\" "
        "(see Scores and selection)", _expression),
    Key("select", None, "keep a subset before ordering: {method: top-k, k: N}, {method: top-r, r: 0.5}, "
        "{method: threshold, threshold: X} or {method: tokens, budget: 10B, token_field: F}, or METHOD:VALUE "
        "(top-r:0.6, tokens:10B); or a path to the reference's selection config; a list of them is a chain, "
        "each applied to the rows the one before kept",
        _select),
    Key("slurm", None, "--executor slurm: {partition, account, qos, time, time_STAGE, cpus_per_task, mem, "
        "max_parallel, extra_sbatch, setup} (see Running on a cluster); --set slurm.partition=cpu sets one", _slurm),
    Key("ray", None, "--executor ray: {address, num_cpus, memory, max_in_flight, max_retries} (see Running on a "
        "cluster); --set ray.memory=4GB sets one", _ray),
    Key("storage_options", None, "options of the object store of s3:// / gs:// URLs, given to fsspec: "
        "{endpoint_url, key, secret, anon, client_kwargs: {region_name}, ...} (see Data on object stores); "
        "--set storage_options.endpoint_url=URL sets one", _storage),
    Key("input", None, "input shards: a path, folder or glob, or a list of them (--input wins)", _inputs),
    Key("output", None, "output folder (--output wins), local or an s3:// / gs:// URL", _str),
    Key("work_dir", None, "where the working state lives instead of OUTPUT/.reorder/ (a local or shared folder, "
        "or an s3:// / gs:// URL; each run gets its own subfolder); an output on an object store without it: a local "
        "scratch ($REORDER_SCRATCH or the temp folder), --executor local only",
        _str),
    Key("format", "auto", "output format: parquet (zstd), jsonl.zst or jsonl; auto: the inputs' format when they "
        "all share one (.jsonl -> jsonl, .jsonl.zst or .jsonl.gz -> jsonl.zst, .parquet -> parquet), else parquet; "
        "megatron, olmo or mds: export: <that>, with the rows in parquet",
        _choice("auto", "parquet", "jsonl.zst", "jsonl", *EXPORT_FORMATS)),
    Key("compression_level", 3, "zstd level of the output (1-22)", _int(1, 22)),
    Key("shard_size", "256MB", "close an output shard at about this size on disk, compressed (0: no limit)", _size),
    Key("shard_rows", 0, "close an output shard at this many rows (0: no limit)", _int(0)),
    Key("row_group_size", "64MB", "parquet: row groups of about this many uncompressed bytes", _size),
    Key("row_group_rows", 100_000, "parquet: at most this many rows in a row group", _int(1)),
    Key("invalid_scores", "error", "rows whose score is missing/null/NaN/inf/not numeric: error, drop, first or last",
        _choice("error", "drop", "first", "last")),
    Key("workers", 0, "tasks run at once (0: one per core); the output does not depend on it", _int(0)),
    Key("memory_limit", 0, "memory budget of the whole run, e.g. 2GB (0: half the machine's memory); "
        "data that does not fit is reordered out of core", _size),
    Key("rewrite", "auto", "auto: in memory when the data fits memory_limit, else out of core; "
        "or force in-memory / out-of-core", _choice("auto", "in-memory", "out-of-core")),
    Key("tokenizer", None, "tokenize every output shard's documents into a token piece beside it (NNNNN.tokens, "
        "NNNNN.lengths.npy; published in OUTPUT/tokens/): a local tokenizer.json, or a folder holding one (never a "
        "download); needs the extra tokens (see Token exports)", _str),
    Key("text_field", "text", "tokenizer: the field holding each document's text (a string; a dotted path reaches "
        "nested fields)", _str),
    Key("add_bos", False, "tokenizer: put bos_token before each document", _bool),
    Key("add_eos", True, "tokenizer: put eos_token after each document", _bool),
    Key("bos_token", None, "tokenizer: the BOS token (default: bos_token of tokenizer_config.json beside the "
        "tokenizer)", _str),
    Key("eos_token", None, "tokenizer: the EOS token (default: eos_token of tokenizer_config.json beside the "
        "tokenizer)", _str),
    Key("token_dtype", "auto", "tokenizer: the token pieces' dtype; auto: uint16 when the vocabulary has at most "
        "65536 ids, else uint32", _choice("auto", "uint16", "uint32")),
    Key("export", None, "assemble the output into a trainer's native files in OUTPUT/NAME/: megatron, olmo or mds "
        "(see Token exports); null: none", _str),
    Key("work_compression", "none", "out of core: compression of the scatter files: none (fastest), lz4 (about "
        "30% less temporary space, more CPU) or zstd",
        _choice("lz4", "zstd", "none")),
    Key("combine", 0, "out of core: scatter files a combine task merges into one, so that a gather opens "
        "fewer files; 1: off; 0: off up to 4,096 scatter tasks, else enough that a gather opens at most 192 "
        "files (the bytes do not depend on it)", _int(0)),
]

#: Keys the reference's configs carry that change nothing here.
IGNORED_KEYS = {
    "name": "descriptive",
    "version": "descriptive",
    "description": "descriptive",
    "reverse_even_layers": "legacy reference key; the current reference ignores it "
    "(use method saw for zigzagged regions)",
}

KEYS: dict[str, Key] = {k.name: k for k in ORDERING_KEYS + TOOL_KEYS}
_select.schema = _select_schema()


def shape_keys(method: str) -> list[str]:
    """The keys that shape ``method``'s order beyond the data's own (score field, direction, seed):
    the ones the paper gives each method its own values for."""
    return [k.name for k in method_params(method) if k.name not in ("score_field", "seed", "ascending")]


def method_params(method: str) -> list[Key]:
    """The ordering keys ``method`` reads, in the key table's order."""
    return [k for k in ORDERING_KEYS if k.name in registry.METHODS[method].keys]


def default_for(method: str, key: Key) -> Any:
    """``key``'s default for ``method``: the paper's setting where the registry has one, else the table's."""
    return registry.METHODS[method].defaults.get(key.name, key.default)


def default_memory_limit() -> int:
    """Half the memory this process may use: the machine's, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if raw.isdigit():
            total = min(total, int(raw))
    except OSError:
        pass
    return total // 2


# ------------------------------------------------------------------ the resolved config


@dataclass(frozen=True)
class RunConfig:
    method: str
    params: dict[str, Any]  # the method's resolved ordering parameters (score_field and seed included)
    inputs: list[str]
    output: Path | store.URL  # a local folder, or a URL of an object store
    format: str
    compression_level: int
    shard_size: int
    shard_rows: int
    row_group_size: int
    row_group_rows: int
    invalid_scores: str
    workers: int
    memory_limit: int  # bytes; 0 in the config means "derived from the machine"
    rewrite: str = "auto"
    score: str | None = None  # a score expression (replaces score_field)
    select: dict[str, Any] | None = None  # the validated select: section
    slurm: dict[str, Any] = field(default_factory=dict)  # the slurm: section (--executor slurm)
    ray: dict[str, Any] = field(default_factory=dict)  # the ray: section (--executor ray)
    #: the storage_options: section, given to fsspec (util/store.py); may hold credentials: never shown
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    work_compression: str = "none"
    combine: int = 0  # scatter files merged by a combine task (rewrite/combine.py); 0: by the task count; 1: off
    work_dir: str | None = None  # the work_dir key: the folder holding each run's working state (workdir/)
    #: the token keys (TOKEN_KEYS; tokenizer an absolute path, plus its file's sha256); None: no tokenizer
    tokens: dict[str, Any] | None = None
    export: str | None = None  # the export's name (reorder_cli.export.EXPORTS); None: none
    output_from_config: bool = False  # the output folder came from the config file, not the command line
    format_note: str = ""  # why this format, when the run chose it ("auto")
    layout_bytes: int = 0  # uncompressed bytes a shard is cut at (plan/shard_bytes); 0: not estimated yet
    ignored: dict[str, str] = field(default_factory=dict)
    unused: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key -> the methods that read it
    #: a mixture's normal ``sources:`` section (mix/spec.py; method "mixture"); None: one source
    mixture: dict[str, Any] | None = None

    @property
    def score_field(self) -> str | None:
        """The score's field; None when the score is an expression (``score``)."""
        return self.params.get("score_field")

    @property
    def layout_shard_bytes(self) -> int:
        """The uncompressed bytes the plan cuts shards at: ``shard_size`` (bytes on disk) over the
        estimated compression ratio, once :mod:`plan.shard_bytes` has estimated it."""
        return self.layout_bytes or self.shard_size

    @property
    def seed(self) -> int | None:
        return self.params.get("seed")


#: YAML 1.1's base-60 numbers (``2:00:00`` is 7200): read as strings here, as YAML 1.2 does (a Slurm time).
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping holding the same key twice (PyYAML keeps the last silently),
    and reads ``2:00:00`` as a string, not as the base-60 number 7200."""

    def resolve(self, kind, value, implicit):
        if kind is yaml.ScalarNode and implicit[0] and _SEXAGESIMAL.fullmatch(value):
            return "tag:yaml.org,2002:str"
        return super().resolve(kind, value, implicit)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if isinstance(key, str | int | float | bool) and key in seen:
                    raise _DuplicateKey(f"key '{key}' is given twice (lines {seen[key]} and {line}); keep one")
                if isinstance(key, str | int | float | bool):
                    seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    pass


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ReorderError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as exc:
        raise ReorderError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ReorderError(f"{path}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ReorderError(f"{path}: a config must be a mapping of key: value, got {type(data).__name__}")
    return data


#: Sections whose keys ``--set SECTION.KEY=value`` reaches.
SECTIONS = ("select", "slurm", "ray", "storage_options")


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values are read as YAML scalars (``true``, ``3``, ``0.1``).
    ``select.KEY=value`` (``slurm.KEY=value``) sets one key of the ``select:`` (``slurm:``) section;
    ``select=...`` given more than once is a chain of selections, in the order given."""
    out: dict[str, Any] = {}
    subs: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            shown = pair if not key.startswith("storage_options") else "storage_options..."  # may hold a credential
            raise ReorderError(f"--set expects key=value, got {shown!r}")
        try:
            value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else ""  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError:
            value = raw
        section, dot, sub = key.partition(".")
        if dot and section in SECTIONS and sub:
            subs.setdefault(section, {})[sub] = value
        elif key == "select" and "select" in out:
            previous = out["select"]
            out["select"] = [*(previous if isinstance(previous, list) else [previous]), value]
        else:
            out[key] = value
    for section, values in subs.items():
        if section not in out:
            out[section] = values
        elif section == "select":
            out[section] = patch_select(out[section], values)
        elif isinstance(out[section], dict):
            out[section] = {**out[section], **values}
        else:
            out[section] = values
    return out


#: The command line's flags for common keys: each is sugar for ``--set KEY=VALUE`` (flag -> key).
FLAG_KEYS = {"--score-field": "score_field", "--score": "score", "--select": "select",
             "--token-field": "select.token_field", "--shard-size": "shard_size", "--format": "format"}


def flag_sets(flags: Mapping[str, Any]) -> list[str]:
    """The ``--set`` pairs of the flags given (``{flag: value or None}``; a repeated flag, ``--select``,
    a list): each value is taken as a string, as written."""
    out = []
    for flag, value in flags.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None:
                out.append(f"{FLAG_KEYS[flag]}={json.dumps(str(item))}")
    return out


def merge(raw: dict[str, Any], sets: Mapping[str, Any]) -> dict[str, Any]:
    """The config file's keys with ``--set`` overrides applied; ``select.KEY`` overrides merge into the
    file's ``select:`` section (a path there is read first)."""
    out = dict(raw)
    for key, other in (("score", "score_field"), ("score_field", "score")):
        if key in sets and other not in sets:
            out.pop(other, None)  # --set score=... replaces the file's score_field, and the other way round
    for key, value in sets.items():
        if key == "select" and isinstance(value, dict) and out.get("select") is not None:
            out["select"] = patch_select(out["select"], value)
        elif key in ("slurm", "ray", "storage_options") and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _checked(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Every key of ``raw`` known, given a value and valid; returns the checked values."""
    unknown = [k for k in raw if k not in KEYS and k not in IGNORED_KEYS]
    if unknown:
        known = ", ".join(sorted(KEYS))
        raise ReorderError(f"unknown config key '{unknown[0]}'{did_you_mean(unknown[0], [*KEYS, *IGNORED_KEYS])} "
                           f"(known keys: {known})")
    empty = [k for k, v in raw.items() if k in KEYS and v is None and k != "export"]  # export: null is none
    if empty:
        raise ReorderError(f"config key '{empty[0]}': no value (null); give a value, or remove the key to use its "
                           "default")
    if "score" in raw and "score_field" in raw:
        raise ReorderError("config keys 'score' and 'score_field' are exclusive: 'score' is an expression over "
                           "fields, 'score_field' one field; set one")
    return {k: KEYS[k].check(k, v) for k, v in raw.items() if k in KEYS and v is not None}


def _selection(values: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any] | list | None:
    """The ``select:`` section (a selection or a chain); a ``score_field`` one carries (a reference selection
    file) must be the run's."""
    select = values.get("select")
    if not select:
        return None
    out = []
    for step in select if isinstance(select, list) else [select]:
        if "score_field" in step:
            mine = params.get("score_field")
            if step["score_field"] != mine:
                scored = f"score_field '{mine}'" if mine else f"the score expression {values['score']!r}"
                raise ReorderError(f"config key 'select.score_field': '{step['score_field']}' differs from the "
                                   f"run's {scored}; selection and ordering read one score (remove "
                                   "select.score_field)")
        out.append({k: v for k, v in step.items() if k != "score_field"})
    return out if isinstance(select, list) else out[0]


def resolve(    raw: Mapping[str, Any],
    *,
    method: str | None = None,
    inputs: list[str] | None = None,
    output: str | None = None,
) -> RunConfig:
    """Validate ``raw`` (config file merged with --set) and apply command-line values.

    Relative paths of the config file were made relative to its folder by :func:`load`; paths given on
    the command line (and by ``--set``) stay relative to the current directory. A config with ``sources:``
    is a mixture (:func:`resolve_mixture`).
    """
    if mix_spec.is_mixture(raw):
        return resolve_mixture(raw, method=method, inputs=inputs, output=output)
    values = _checked(raw)
    chosen = _method("method", method) if method else values.get("method")
    if not chosen:
        raise ReorderError("no method: pass --method or set 'method' in the config")
    ins = inputs or values.get("input")
    if not ins:
        raise ReorderError("no input: pass --input or set 'input' in the config")
    out = output or values.get("output")
    if not out:
        raise ReorderError("no output folder: pass --output or set 'output' in the config")
    work_dir = values.get("work_dir")  # None with an output on a store: a local scratch (workdir.locate)

    params = {k.name: values.get(k.name, default_for(chosen, k)) for k in method_params(chosen)
              if not (k.name == "score_field" and values.get("score"))}
    select = _selection(values, params)
    tool = {k.name: values.get(k.name, k.default) for k in TOOL_KEYS}
    tool["shard_size"] = parse_size(tool["shard_size"], "shard_size")
    tool["row_group_size"] = parse_size(tool["row_group_size"], "row_group_size")
    tool["memory_limit"] = parse_size(tool["memory_limit"], "memory_limit") or default_memory_limit()
    if tool["compression_level"] > 22:
        raise ReorderError(f"config key 'compression_level': must be <= 22, got {tool['compression_level']}")
    workers = tool["workers"] or (os.cpu_count() or 1)
    fmt, export = _export(tool["format"], values.get("export"))
    tokens = _tokens(tool, values, out, work_dir, export)
    return RunConfig(
        method=chosen,
        params=params,
        inputs=list(ins),
        output=store.location(out),
        format=fmt,
        compression_level=tool["compression_level"],
        shard_size=tool["shard_size"],
        shard_rows=tool["shard_rows"],
        row_group_size=tool["row_group_size"] or 64 * 10**6,
        row_group_rows=tool["row_group_rows"],
        invalid_scores=tool["invalid_scores"],
        workers=workers,
        memory_limit=tool["memory_limit"],
        rewrite=tool["rewrite"],
        score=values.get("score"),
        select=select,
        slurm=values.get("slurm") or {},
        ray=values.get("ray") or {},
        storage_options=values.get("storage_options") or {},
        work_compression=tool["work_compression"],
        combine=tool["combine"],
        work_dir=work_dir,
        tokens=tokens,
        export=export,
        ignored={k: IGNORED_KEYS[k] for k in raw if k in IGNORED_KEYS},
        unused=unused_keys(raw, chosen),
    )


#: Keys a mixture's source may set (beside name, weight and max_epochs); top-level ones apply to every source.
SOURCE_KEYS = ("input", "method", "score", "select", "invalid_scores", *(k.name for k in ORDERING_KEYS))
MIXTURE_METHOD = "mixture"


def resolve_mixture(raw: Mapping[str, Any], *, method: str | None = None, inputs: list[str] | None = None,
                    output: str | None = None) -> RunConfig:
    """A mixture config (``sources:``, :mod:`reorder_cli.mix.spec`): the top-level keys as a run's (method
    "mixture", its inputs every source's), the normal ``sources:`` section in ``mixture``. Each source's
    config is checked here as a single-source run's (:func:`source_configs`)."""
    if inputs:
        raise ReorderError("--input: a mixture's inputs are its sources' (sources[i].input); remove --input")
    if "input" in raw:
        raise ReorderError("config key 'input': a mixture takes its inputs from its sources (sources[i].input); "
                           "remove the top-level input")
    shared = tuple(k for k in SOURCE_KEYS if k != "input")  # top-level ordering keys: every source's default
    top = {k: v for k, v in raw.items() if k not in mix_spec.TOP_KEYS}
    if method:
        top["method"] = method  # the command line's --method: the method of every source that sets none
    mixture = mix_spec.normal({**raw, **top}, SOURCE_KEYS, shared, _count)
    seed = _int(0)("seed", raw.get("seed", KEYS["seed"].default))
    plain = {k: v for k, v in top.items() if k not in shared}
    ins = [p for i, s in enumerate(mixture["sources"]) for p in _inputs(f"sources[{i}].input", s["config"]["input"])]
    cfg = resolve(plain, method="input", inputs=ins, output=output)
    cfg = replace(cfg, method=MIXTURE_METHOD, params={"seed": seed}, mixture=mixture, unused={}, select=None,
                  score=None)
    scorings = {(one.score_field, one.score) for one in source_configs(cfg)}  # one-line errors naming a source
    if len(scorings) == 1:  # one scoring for every source: the output's scores read back by it (verify, stats)
        field, expression = scorings.pop()
        cfg = replace(cfg, params={"score_field": field, "seed": seed} if field else {"seed": seed}, score=expression)
    return cfg


def source_configs(cfg: RunConfig) -> list[RunConfig]:
    """Each source of a mixture run as the single-source run whose order it takes (its inputs, method,
    ordering keys and select; the mixture's output settings)."""
    out = []
    for i, src in enumerate(cfg.mixture["sources"]):  # a loop over sources
        try:
            one = resolve(src["config"], output=str(cfg.output))
        except ReorderError as err:
            raise ReorderError(f"sources[{i}] ({src['name']}): {err}") from None
        out.append(replace(one, format=cfg.format, workers=cfg.workers, memory_limit=cfg.memory_limit,
                           storage_options=cfg.storage_options, work_dir=cfg.work_dir))
    return out


def _export(fmt: str, export: str | None) -> tuple[str, str | None]:
    """(the rows' format, the export): ``format: megatron`` is ``export: megatron`` with Parquet rows."""
    if fmt not in EXPORT_FORMATS:
        return fmt, export
    if export is not None and export != fmt:
        raise ReorderError(f"config keys 'format' ({fmt}) and 'export' ({export}) disagree; format: {fmt} means "
                           f"export: {fmt} with the rows in parquet: set one")
    return "parquet", fmt


def _tokens(tool: Mapping[str, Any], values: Mapping[str, Any], out: str, work_dir: str | None,
            export: str | None) -> dict[str, Any] | None:
    """The run's token keys (tokenizer made absolute, with its file's sha256), or None without a tokenizer;
    a token key set without one is an error, as is a tokenizer or export with an output or work folder
    on an object store."""
    where = next((x for x in (out, work_dir) if x and store.is_url(x)), None)
    if where is not None and (values.get("tokenizer") or export):
        key = "tokenizer" if values.get("tokenizer") else "export"
        raise ReorderError(f"config key '{key}': token pieces and exports are written to a local output and work "
                           f"folder only, for now; {where} is on an object store: write locally, then copy")
    if not values.get("tokenizer"):
        extra = next((k for k in TOKEN_KEYS if k in values), None)
        if extra is not None:
            raise ReorderError(f"config key '{extra}': read only with a tokenizer; set tokenizer: PATH (a local "
                               "tokenizer.json), or remove the key")
        return None
    path = tokenizer_file(values["tokenizer"])
    return {**{k: tool[k] for k in TOKEN_KEYS}, "tokenizer": str(path), "sha256": file_sha256(path)}


def tokenizer_file(given: str) -> Path:
    """The ``tokenizer.json`` of the ``tokenizer`` key (a file, or a folder holding one), absolute; a
    one-line error when there is none (a name on a hub is never downloaded)."""
    path = Path(given).expanduser()
    if store.is_url(given):
        raise ReorderError(f"config key 'tokenizer': {given}: must be a local file or folder (never a download)")
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        hint = "" if "/" not in given or given.startswith((".", "/", "~")) else \
            " (a hub name is never downloaded: save the tokenizer locally and give its folder)"
        raise ReorderError(f"config key 'tokenizer': {path}: no such file; give a tokenizer.json, or a folder "
                           f"holding one{hint}")
    return path.resolve()


#: Keys holding paths: written in a config file, a relative one is relative to the file's folder.
PATH_KEYS = ("input", "output", "work_dir", "select", "tokenizer")


def relative_to_file(raw: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """``raw`` (a config file's keys) with its relative paths (:data:`PATH_KEYS`; a selection named by the
    path of its YAML file) joined to the file's folder; URLs, absolute paths and ``METHOD:VALUE`` kept."""
    base = Path(path).parent

    def fix(v: Any, key: str) -> Any:
        if isinstance(v, list) and key in ("input", "select"):
            return [fix(x, key) for x in v]
        if not isinstance(v, str) or not v or store.is_url(v) or os.path.isabs(v) or v.startswith("~"):
            return v
        if key == "select" and _COMPACT.fullmatch(v) and "/" not in v:
            return v
        return os.path.join(base, v) if str(base) not in ("", ".") else v

    out = {k: fix(v, k) if k in PATH_KEYS else v for k, v in raw.items()}
    if isinstance(raw.get("sources"), list):  # a mixture's sources: their inputs and selections
        out["sources"] = [{k: fix(v, k) if k in PATH_KEYS else v for k, v in s.items()} if isinstance(s, dict)
                          else s for s in raw["sources"]]
    return out


def unused_keys(raw: Mapping[str, Any], method: str) -> dict[str, tuple[str, ...]]:
    """Ordering keys set in ``raw`` that ``method`` does not read, with the methods that read each."""
    return {k: KEYS[k].methods for k in raw if k in KEYS and KEYS[k].methods and method not in KEYS[k].methods}


def load(
    path: Path | None,
    overrides: Iterable[str] = (),
    *,
    method: str | None = None,
    inputs: list[str] | None = None,
    output: str | None = None,
    skip_file_keys: Iterable[str] = (),
) -> RunConfig:
    """The config file (optional: without one, every key takes the method's default), then ``--set``
    overrides, then the command line's values; keys of the file in ``skip_file_keys`` are left out
    (``--set`` still sets them)."""
    raw = {k: v for k, v in file_keys(path).items() if k not in set(skip_file_keys)}
    sets = parse_overrides(overrides)
    raw = merge(raw, sets)
    cfg = resolve(raw, method=method, inputs=inputs, output=output)
    return replace(cfg, output_from_config=not output and "output" not in sets)


def file_keys(path: Path | None) -> dict[str, Any]:
    """The keys of config file ``path`` with its relative paths made relative to its folder; none without a file."""
    return {} if path is None else relative_to_file(read_yaml(path), path)


def with_format(cfg: RunConfig, input_formats: list[tuple[str, str | None]]) -> RunConfig:
    """``cfg`` with ``format: auto`` decided from the inputs' (format, compression) pairs: their format
    when all share one (compressed JSONL gives jsonl.zst), else parquet; ``format_note`` says why."""
    if cfg.format != "auto":
        return cfg
    kinds = {fmt if fmt == "parquet" else ("jsonl" if comp is None else "jsonl.zst") for fmt, comp in input_formats}
    if len(kinds) == 1:
        return replace(cfg, format=kinds.pop(), format_note="the inputs' format")
    return replace(cfg, format="parquet", format_note="the default for inputs of mixed formats")
