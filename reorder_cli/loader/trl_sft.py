"""TRL ``SFTTrainer`` over an output, in its order (needs trl; imported lazily).

    from reorder_cli.loader import trl_sft
    ds = trl_sft.sft_dataset("out/str")                       # the rows in the manifest's order
    args = trl_sft.sft_config(output_dir="run", per_device_train_batch_size=b, gradient_accumulation_steps=k)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
    cb = trl_sft.audit(trainer, "audit.jsonl")                # optional: log what each step consumed
    trainer.train()

What keeps the order (read from trl 1.16 ``sft_trainer.py``/``sft_config.py``/``data_utils.py`` and
transformers 5.2+ ``trainer.py``): the Trainer's sampler is sequential (``train_sampling_strategy=
"sequential"``, ``dataloader_drop_last=True``; accelerate gives batch i to rank i % W, the windows of
``OrderedDataset``); TRL's preparation does not shuffle (``shuffle_dataset=False``, its default); packing,
if any, is ``packing_strategy="wrapped"``: the tokenized documents concatenated in order and cut every
``max_length`` tokens. TRL's default ``"bfd"`` (best-fit decreasing) sorts documents by length inside
each map batch and reorders them. ``remove_unused_columns=False`` keeps the ids for the audit.

Without packing a sample is a document: the audit is ``reorder audit OUT audit.rank*.jsonl`` by id.
With wrapped packing sample j is tokens [j·L, (j+1)·L) of that concatenation (L = ``max_length``), so
``audit`` logs packed-sample indices (a column it adds to the prepared dataset) and
``packed_documents`` gives the documents each sample holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.loader.source import Source

#: the settings that keep the order, whatever else the run sets
ORDER = {"train_sampling_strategy": "sequential", "dataloader_drop_last": True, "shuffle_dataset": False,
         "remove_unused_columns": False}
PACKING = {"packing": True, "packing_strategy": "wrapped"}
#: the column ``audit`` adds to a packed dataset: the index of each packed sample
SAMPLE = "reorder_sample"


def order_settings(packing: bool = False) -> dict:
    """The ``SFTConfig`` settings that keep the order (with ``packing``: wrapped packing)."""
    return {**ORDER, **(PACKING if packing else {"packing": False})}


def sft_config(packing: bool = False, **kwargs):
    """An ``SFTConfig`` with ``order_settings(packing)`` and ``kwargs``; a setting of ``kwargs`` that
    contradicts them (e.g. ``packing_strategy="bfd"``, ``shuffle_dataset=True``) is refused, one line."""
    from trl import SFTConfig

    need = order_settings(packing)
    for key, value in kwargs.items():
        if key in need and value != need[key]:
            raise ReorderError(f"trl_sft.sft_config: {key}={value!r} breaks the order; the recipe needs "
                               f"{key}={need[key]!r}")
    return SFTConfig(**{**kwargs, **need})


def sft_dataset(path: str | Path, cache_dir: str | Path | None = None):
    """The output's rows as a ``datasets.Dataset``, in the manifest's order (its shards, checked against
    the manifest, read in order: Parquet, JSONL or JSONL.zst). ``datasets`` writes its Arrow cache
    into ``cache_dir`` (default: its own cache folder)."""
    import datasets

    source = Source(path)
    if not source.shards:
        raise ReorderError(f"{source.folder}: the output has no shard: nothing to train on")
    builder = "parquet" if source.shards[0].format == "parquet" else "json"  # json reads .jsonl.zst too
    files = [str(s.path) for s in source.shards]  # a list keeps its order (a glob would sort)
    return datasets.load_dataset(builder, data_files=files, split="train",
                                 cache_dir=str(cache_dir) if cache_dir is not None else None)


def audit(trainer, path: str | Path, id_field: str = "id"):
    """Log what each optimizer step consumes (``hf_audit.AuditCallback``, a file per rank) for a built
    ``SFTTrainer``: its collator is wrapped and the callback added. Without packing the log holds the
    rows' ``id_field``; with packing, packed-sample indices (``SAMPLE``, added to the prepared dataset).
    Call it before ``trainer.train()``."""
    from reorder_cli.loader.hf_audit import AuditCallback

    args = trainer.args
    wrong = {k: getattr(args, k) for k, v in order_settings(args.packing).items() if getattr(args, k) != v}
    if wrong:
        key = next(iter(wrong))
        raise ReorderError(f"trl_sft.audit: the trainer's {key}={wrong[key]!r} breaks the order; build its "
                           f"arguments with trl_sft.sft_config")
    data = trainer.train_dataset
    if args.packing:
        trainer.train_dataset = data.add_column(SAMPLE, np.arange(len(data), dtype=np.int64))
        id_field = SAMPLE
    elif id_field not in data.column_names:
        raise ReorderError(f"trl_sft.audit: the training dataset has no column '{id_field}' to log "
                           f"(columns: {', '.join(data.column_names)}); pass id_field=")
    callback = AuditCallback(path, id_field=id_field)
    trainer.data_collator = callback.collator(trainer.data_collator)
    trainer.add_callback(callback)
    return callback


def packed_documents(lengths, seq_length: int) -> np.ndarray:
    """(samples, 2) int64: the first and last document (position in the order) of every packed sample
    of wrapped packing (sample j is tokens [j·L, (j+1)·L) of the documents' tokens concatenated in
    order; the last sample may be shorter). ``lengths``: tokens of each document, in order. A
    document of no token is in no sample."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if seq_length < 1 or (lengths < 0).any():
        raise ValueError("packed_documents: seq_length must be >= 1 and lengths >= 0")
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    first_token = np.arange(0, total, seq_length, dtype=np.int64)
    last_token = np.minimum(first_token + seq_length, total) - 1
    return np.stack([np.searchsorted(ends, first_token, side="right"),
                     np.searchsorted(ends, last_token, side="right")], axis=1)
