"""The run's identity (``state.json``): what the output depends on, how two identities differ, and the claim of
a work folder by one run (:meth:`Identity.open`)."""

from __future__ import annotations

import uuid
from typing import Any

from reorder_cli import __version__
from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError, StateError
from reorder_cli.formats import unchanged
from reorder_cli.formats.discover import InputFile
from reorder_cli.tokens import sections
from reorder_cli.util import atomic, state_io
from reorder_cli.util.hashing import fingerprint
from reorder_cli.util.state_io import RESTART
from reorder_cli.workdir.paths import STATE

#: Config fields that change the output (``workers`` and ``memory_limit`` do not).
_OUTPUT_FIELDS = ("method", "params", "format", "compression_level", "shard_size", "shard_rows",
                  "row_group_size", "row_group_rows", "invalid_scores", "score", "select")

#: Identity fields present only when a run tokenizes or exports (earlier identities stay equal).
_TOKEN_FIELDS = ("tokens", "export", "mixture")


def token_identity(tokens: dict[str, Any] | None, export: str | None) -> dict[str, Any]:
    """The identity's token fields: the token keys with the tokenizer's sha256 in place of its path (what the
    manifest records), and the export; nothing when the run neither tokenizes nor exports."""
    out = {"tokens": sections.settings_identity(tokens)} if tokens else {}
    return out | ({"export": export} if export else {})


def identity(cfg: RunConfig, files: list[InputFile]) -> dict[str, Any]:
    """What the output depends on: the tool version, the config, and every input file (its size, the
    fingerprint of its ends, and, for a local file, its modification time and inode: a file edited
    since the run started is another input)."""
    return {
        "tool_version": __version__,
        "config": {name: getattr(cfg, name) for name in _OUTPUT_FIELDS} | token_identity(cfg.tokens, cfg.export)
        | ({"mixture": cfg.mixture} if cfg.mixture else {}),
        "inputs": [{"path": str(f.path.resolve()), "bytes": f.size, "fingerprint": fingerprint(f.path),
                    **unchanged.shared(f.stamp)} for f in files],
    }


#: How :func:`differences` names what changed in an input.
_INPUT_FACTS = {"bytes": "size", "fingerprint": "first or last MiB",
                "mtime_ns": "modification time", "inode": "inode"}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Plain descriptions of what differs between two identities."""
    why = []
    if old.get("tool_version") != new["tool_version"]:
        why.append(f"reorder version {old.get('tool_version')} -> {new['tool_version']}")
    old_cfg, new_cfg = old.get("config", {}), new["config"]
    for name in (*_OUTPUT_FIELDS, *_TOKEN_FIELDS):
        a, b = old_cfg.get(name), new_cfg.get(name)
        if name == "params" and isinstance(a, dict):
            why += [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            why.append(f"{name} {a!r} -> {b!r}")
    old_in = {i["path"]: i for i in old.get("inputs", [])}
    new_in = {i["path"]: i for i in new["inputs"]}
    if list(old_in) != list(new_in):
        added, removed = set(new_in) - set(old_in), set(old_in) - set(new_in)
        why += [f"input added: {p}" for p in sorted(added)] + [f"input removed: {p}" for p in sorted(removed)]
        if not added and not removed:
            why.append("inputs listed in another order")
    for p, i in new_in.items():  # a loop over files
        if p in old_in and old_in[p] != i:
            facts = [name for k, name in _INPUT_FACTS.items() if old_in[p].get(k) != i.get(k)]
            why.append(f"input changed: {p} (its {' and '.join(facts) or 'record'} differ{'s' * (len(facts) < 2)})")
    return why


class Identity:
    """The claim of a work folder by one run (mixed into :class:`reorder_cli.workdir.WorkDir`)."""

    def open(self, ident: dict[str, Any], restart: bool = False) -> bool:
        """Claim the folder for the run ``ident``; True when there is earlier work to resume.

        A folder left by a run with another identity is refused (or, with ``restart``,
        cleared). One without ``state.json`` was killed before it started: it is cleared, unless it
        holds finished tasks (then its state file was lost: refused, naming it).
        """
        old = None if restart else self.saved_identity()
        if old is None and not restart and self.names("done"):
            raise StateError(f"{self.where / STATE}: missing, but the folder holds finished tasks; {RESTART}")
        if old == ident:
            self.ensure()  # on a store: this machine's mirror may not exist yet
            return True
        if old is not None:
            why = differences(old, ident) or ["its saved state differs"]
            raise ReorderError(
                f"{self.where}: holds an unfinished run with another config or inputs ({'; '.join(why[:4])}); "
                "re-run with the same config to resume, or pass --restart to discard it"
            )
        self.remove()
        if self.remote is not None:  # a new claim: a new mirror, never one holding an earlier claim's files
            self.new_claim(uuid.uuid4().hex)
        self.ensure()
        self.put(STATE, atomic.json_bytes(ident))
        return False

    def saved_identity(self) -> dict[str, Any] | None:
        """The identity in ``state.json``; None when there is none. An unreadable or corrupt one is an error
        naming it: taken for "no run", it would discard the run's finished tasks."""
        data = self.get(STATE)
        return None if data is None else state_io.parse_json(data, self.where / STATE)
