"""``.reorder/run.json``: what every task of a run planned as tasks reads (the config, the inputs, a task's
budget, the first stage run as tasks)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError
from reorder_cli.formats.discover import InputFile
from reorder_cli.rewrite import budget
from reorder_cli.util import atomic, state_io, store
from reorder_cli.workdir import WorkDir


@dataclass
class Spec:
    """``.reorder/run.json``: what every task of the run reads."""

    cfg: RunConfig
    files: list[InputFile]
    memory: int  # a task's budget for its keys and order work, bytes
    first_stage: str = "keys"  # the first stage run as tasks: "keys" (a cluster run), "split" (planned here)


def write_spec(work: WorkDir, cfg: RunConfig, files: list[InputFile], first_stage: str = "keys") -> Spec:
    # storage_options may hold credentials: only where the store is goes to tasks elsewhere; they get
    # their credentials from the store's own chain (environment, profile, role)
    config = dataclasses.asdict(cfg) | {"output": str(cfg.output.absolute()),
                                        "storage_options": store.shareable(cfg.storage_options)}
    data = {"config": config, "memory": budget.keys_budget(cfg), "first_stage": first_stage,
            "files": [{"path": str(f.path.absolute()), "format": f.format, "compression": f.compression,
                       "size": f.size, "stamp": f.stamp} for f in files]}
    work.root.mkdir(parents=True, exist_ok=True)
    if work.remote is not None:
        work.put(work.spec.name, atomic.json_bytes(data))
    atomic.write_json(work.spec, data)
    return load_spec(work)


def load_spec(work: WorkDir) -> Spec | None:
    if not work.fetch(work.spec):
        return None
    data = state_io.read_json(work.spec)
    config = data["config"] | {"output": store.location(data["config"]["output"])}
    files = [InputFile(store.location(f["path"]), f["format"], f["compression"], f["size"], f.get("stamp"))
             for f in data["files"]]
    return Spec(RunConfig(**config), files, data["memory"], data.get("first_stage", "keys"))


def require_spec(work: WorkDir) -> Spec:
    spec = load_spec(work)
    if spec is None:
        raise ReorderError(f"{work.root}: no run.json; this folder holds no run planned as tasks (if the run was "
                           "submitted from another machine, its output folder must be on a filesystem both share)")
    return spec
