"""``reorder config show | validate | schema``: a run's resolved config and where each value came from,
a config checked without running, and the JSON Schema of the config (from the key table of
:mod:`reorder_cli.config`, the one list of keys)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reorder_cli import config
from reorder_cli import methods as registry
from reorder_cli.config import RunConfig
from reorder_cli.mix import spec as mix_spec


@dataclass
class Shown:
    """A resolved config: each key's value and where it came from (default, method default, file, a flag)."""

    cfg: RunConfig
    values: dict[str, Any]
    sources: dict[str, str]
    missing: list[str]  # what a run still needs (input, output), not given


def resolve(path: Path | None, sets: list[str], flags: Mapping[str, Any], *, method: str | None,
            inputs: list[str] | None, output: str | None) -> Shown:
    """The config a run with these arguments would use. ``flags``: the first-class flags given
    ({"--score-field": value or None, ...}); their values and ``sets`` are applied as ``--set``."""
    from_flags = config.parse_overrides(config.flag_sets(flags))
    from_sets = config.parse_overrides(sets)
    in_file = config.file_keys(path)
    mixture = "sources" in in_file or "sources" in from_sets  # each source has its own input and method
    chosen = method or in_file.get("method") or from_sets.get("method")
    missing = [name for name, given in (("method", chosen or mixture), ("input", inputs or in_file.get("input")
                                        or from_sets.get("input") or mixture), ("output", output
                                        or in_file.get("output") or from_sets.get("output"))) if not given]
    cfg = config.load(path, [*config.flag_sets(flags), *sets], method=chosen or (None if mixture else "sorting"),
                      inputs=inputs or (["(not set)"] if "input" in missing else None),
                      output=output or (os.devnull if "output" in missing else None))
    values: dict[str, Any] = {"method": cfg.method, **cfg.params}
    if cfg.mixture:  # the mixture's own keys, and each source's resolved method
        values.update({k: cfg.mixture[k] for k in ("budget", "token_field", "redistribute")})
        values["sources"] = [{"name": s["name"], "method": one.method, "weight": s["weight"],
                              "max_epochs": s["max_epochs"], "input": one.inputs}
                             for s, one in zip(cfg.mixture["sources"], config.source_configs(cfg), strict=True)]
    for key in config.TOOL_KEYS:
        if key.name not in values:
            values[key.name] = getattr(cfg, key.name, None)
    values["output"] = None if "output" in missing else str(cfg.output)
    values["input"] = None if "input" in missing else cfg.inputs
    if cfg.storage_options:  # may hold credentials: the keys only
        values["storage_options"] = dict.fromkeys(cfg.storage_options, "***")
    flag_of = {key.split(".")[0]: flag for flag, key in config.FLAG_KEYS.items() if flags.get(flag)}
    on_command_line = {"method": bool(method), "input": bool(inputs), "output": bool(output)}
    sources = {}
    for key in values:
        if cfg.mixture and key in ("method", "input"):
            sources[key] = "the sources"
        elif on_command_line.get(key):
            sources[key] = "command line"
        elif key in from_sets:
            sources[key] = "--set"
        elif key in from_flags:
            sources[key] = flag_of.get(key, "flag")
        elif key in in_file:
            sources[key] = f"file {path}"
        elif cfg.method in registry.METHODS and key in registry.METHODS[cfg.method].defaults:
            sources[key] = f"default of {cfg.method}"
        else:
            sources[key] = "default"
    return Shown(cfg, values, sources, [m for m in missing if m != "method" or not chosen])


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file: every key of :data:`config.KEYS` with its help and default,
    the descriptive keys the reference's configs carry, nothing else."""
    props: dict[str, Any] = {}
    for key in config.KEYS.values():
        entry = dict(getattr(key.check, "schema", {}))
        entry["description"] = key.help + (f" (read by: {', '.join(key.methods)})" if key.methods else "")
        if key.default is not None:
            entry["default"] = key.default
        props[key.name] = entry
    for name, why in config.IGNORED_KEYS.items():
        props[name] = {"description": f"ignored: {why}"}
    for name, what in mix_spec.KEY_HELP.items():  # a mixture's top-level keys
        if "[" not in name:
            props[name] = {"description": f"mixture: {what}"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "reorder config",
            "type": "object", "properties": props, "additionalProperties": False}
