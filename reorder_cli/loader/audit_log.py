"""Writing the log ``reorder audit`` reads: what a trainer really consumed, step by step.

``AuditLog(path)`` appends one JSONL line per call of ``log(step, ids)``; give every rank its own
file (``rank`` adds ``.rank{r}`` before the suffix) and pass them all to ``reorder audit``.

``reorder_cli.hf_audit.AuditCallback`` does it for the Hugging Face ``Trainer``. Wrap the collator
with ``callback.collator(collator)``: it moves the ``id_field`` of the rows into the batch under
``reorder_audit_ids``; a forward pre-hook on the model pops that key before the model sees it and
records the ids of every training forward; ``on_step_end`` writes them as the step
``state.global_step - 1``. Keep the id field in the rows the collator gets
(``remove_unused_columns=False``).
"""

from __future__ import annotations

import json
from pathlib import Path

KEY = "reorder_audit_ids"


def rank_path(path: str | Path, rank: int | None) -> Path:
    path = Path(path)
    return path if rank is None else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


class AuditLog:
    """Append ``{"step": s, "ids": [...]}`` lines to a JSONL file (flushed each line)."""

    def __init__(self, path: str | Path, rank: int | None = None):
        self.path = rank_path(path, rank)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def log(self, step: int, ids) -> None:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        self._fh.write(json.dumps({"step": int(step), "ids": ids}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class AuditCollator:
    """Wraps a collator: the rows' ids go into the batch under ``KEY``, the rest to the inner collator."""

    def __init__(self, inner, id_field: str):
        self.inner, self.id_field = inner, id_field

    def __call__(self, rows: list[dict]):
        ids = [r[self.id_field] for r in rows]
        batch = self.inner([{k: v for k, v in r.items() if k != self.id_field} for r in rows])
        batch[KEY] = ids
        return batch
