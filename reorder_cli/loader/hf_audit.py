"""A Hugging Face ``Trainer`` callback that writes the log ``reorder audit`` reads (needs transformers).

    cb = AuditCallback("audit.jsonl", id_field="id")
    trainer = Trainer(..., data_collator=cb.collator(collator), callbacks=[cb])  # remove_unused_columns=False

Every rank writes its own file (``audit.rank{r}.jsonl``); ``reorder audit OUTPUT audit.rank*.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

try:
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("reorder_cli.hf_audit needs transformers: pip install 'reorder[trainer]'") from None

from reorder_cli.loader.audit_log import KEY, AuditCollator, AuditLog


class AuditCallback(TrainerCallback):
    def __init__(self, path: str | Path, id_field: str = "id"):
        self.path, self.id_field = Path(path), id_field
        self._ids: list = []
        self._log: AuditLog | None = None
        self._hook = None

    def collator(self, inner=None):
        if inner is None:
            from transformers import default_data_collator as inner
        return AuditCollator(inner, self.id_field)

    def _pre_hook(self, module, args, kwargs):
        ids = kwargs.pop(KEY, None)
        if ids is not None and module.training:
            self._ids += list(ids)
        return args, kwargs

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import torch.distributed as dist

        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else None
        self._log = AuditLog(self.path, rank)
        if model is not None and self._hook is None:
            self._hook = model.register_forward_pre_hook(self._pre_hook, with_kwargs=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self._log is not None:
            self._log.log(state.global_step - 1, self._ids)
        self._ids = []

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._log is not None:
            self._log.close()
            self._log = None
