"""Every stage of tasks, in order: one :class:`~reorder_cli.stages.record.Stage` a stage, from the module that
owns it. Their names and order are :data:`reorder_cli.util.stage_names.TASK_STAGES` (which the config's
``slurm.time_STAGE`` keys read, below this layer); this registry must hold exactly those, each waiting for
the one before it."""

from __future__ import annotations

from reorder_cli.stages.keys import KEYS
from reorder_cli.stages.order import LAYOUT, PLACE, SORT, SPLIT
from reorder_cli.stages.record import Stage
from reorder_cli.stages.rewrite import COMBINE, GATHER, SCATTER
from reorder_cli.util.stage_names import TASK_STAGES

_RECORDS = {s.name: s for s in (KEYS, SPLIT, SORT, PLACE, LAYOUT, SCATTER, COMBINE, GATHER)}


def _in_order() -> dict[str, Stage]:
    if set(_RECORDS) != set(TASK_STAGES):
        raise RuntimeError(f"the stage registry holds {sorted(_RECORDS)}, stage_names {sorted(TASK_STAGES)}")
    out = {name: _RECORDS[name] for name in TASK_STAGES}
    for before, stage in zip((None, *TASK_STAGES), out.values(), strict=False):
        if stage.after != before:
            raise RuntimeError(f"stage {stage.name} waits for {stage.after}, but follows {before}")
    return out


#: Name -> stage, in the order a run goes through them.
REGISTRY: dict[str, Stage] = _in_order()
#: The stages' names, in order.
STAGES: tuple[str, ...] = tuple(REGISTRY)
#: The order's own steps (between keys and scatter).
ORDER: tuple[str, ...] = tuple(name for name, s in REGISTRY.items() if s.order)
