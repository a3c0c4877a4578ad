"""The OLMo-core recipe: its own dataset and data loader over ``OUT/olmo/``, global batches in the output's order.

Runs in the trainer's environment (``olmo_core`` is imported when called, never by reorder itself)::

    loader = olmo_loader(OUT, sequence_length=L, global_batch_size=B * L, work_dir="/local/olmo-work")
    trainer = trainer_config.build(train_module, loader)   # or: loader.reshuffle(epoch=1); for batch in loader

The settings that keep the order (ai2-olmo-core 3.0.0, ``olmo_core/data/data_loader.py``):

- ``shuffle=False`` on the loader. ``NumpyDataLoaderConfig`` has no ``shuffle`` field, and its ``build``
  always shuffles (by ``seed + epoch``); so the loader is built with
  ``NumpyDataLoaderBase.wrap_numpy_dataset(..., shuffle=False)``. Its global-indices file is then
  ``arange(len(dataset))`` and ``seed`` has no effect.
- ONE token file (``olmo/tokens.npy``): ``NumpyFSLDataset`` drops each file's remainder, so instance i is
  tokens ``[i*L, (i+1)*L)`` of the stream only with one file. No ``mix``, no ``source_mixture_config``,
  no ``source_permutation_seed``, no extra paths.
- ``NumpyFSLDataset`` (concatenate-and-chunk): not the padded, packed or interleaved kinds, which
  regroup documents. ``max_target_sequence_length`` unset (or a multiple of L: it drops more of the tail).
- Global batch ``B * L`` tokens, divisible by ``L * dp_world_size``: global batch b holds instances
  ``[b*B, (b+1)*B)``; data-parallel rank r gets instances ``b*B + r, b*B + r + W, ...`` of it; any
  ``num_workers`` (worker w builds whole batches w, w+nw, ..., taken round-robin).
- The trainer's ``steps_to_skip`` empty (a skipped step draws its batch and does not train on it).

``log_batch`` / ``audit_callback`` write the log ``reorder audit OUT LOGS --tokens --seq-length L`` reads:
per step, the instance indices (sample i = tokens ``[i*L, (i+1)*L)``) of this rank's batch, or with
``offsets=True`` the token offset of each instance's first token.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.loader.audit_log import AuditLog
from reorder_cli.publish import manifest

INSTALL = "the OLMo-core recipe runs in the trainer's environment: pip install ai2-olmo-core"


def _olmo_core():
    try:
        import olmo_core  # noqa: F401
    except ImportError:
        raise ReorderError(INSTALL) from None


def export_of(out: str | Path) -> tuple[dict, dict, Path]:
    """The manifest's ``tokens`` and ``export`` sections of an ``export: olmo`` output, and its folder."""
    doc, folder = manifest.read(Path(out))
    tokens, export = doc.tokens, doc.export
    where = manifest.find(folder)
    if not isinstance(export, dict) or export.get("format") != "olmo" or not isinstance(tokens, dict):
        raise ReorderError(f"{where}: not an 'export: olmo' output (run with tokenizer: PATH and export: olmo)")
    if tokens.get("eos") is None:
        raise ReorderError(f"{where}: the documents have no EOS token between them, which OLMo-core's "
                           "datasets need (run with add_eos: true)")
    return tokens, export, Path(folder)


def olmo_dataset(out: str | Path, *, sequence_length: int, work_dir: str | Path, pad_token_id: int | None = None,
                 generate_doc_lengths: bool = False):
    """OLMo-core's ``NumpyFSLDataset`` over the export's one token file (prepared)."""
    tokens, export, folder = export_of(out)
    _olmo_core()
    from olmo_core.data import NumpyFSLDatasetConfig, TokenizerConfig

    eos = int(tokens["eos"])
    tokenizer = TokenizerConfig(vocab_size=int(tokens["tokenizer"]["vocab_size"]), eos_token_id=eos,
                                pad_token_id=eos if pad_token_id is None else pad_token_id,
                                bos_token_id=tokens.get("bos"))
    config = NumpyFSLDatasetConfig(tokenizer=tokenizer, paths=[str(folder / export["token_file"])],
                                   sequence_length=sequence_length, dtype=export["dtype"], work_dir=str(work_dir),
                                   include_instance_metadata=False, generate_doc_lengths=generate_doc_lengths)
    dataset = config.build()
    dataset.prepare()
    return dataset


def olmo_loader(out: str | Path, *, sequence_length: int, global_batch_size: int, work_dir: str | Path,
                dp_world_size: int | None = None, dp_rank: int | None = None, fs_local_rank: int | None = None,
                num_workers: int = 0, num_threads: int | None = None, prefetch_factor: int | None = None,
                pad_token_id: int | None = None, generate_doc_lengths: bool = False, collator=None):
    """OLMo-core's ``NumpyFSLDataLoader`` yielding the export's global batches in order (``shuffle=False``).

    ``global_batch_size`` is in tokens, as in OLMo-core. ``dp_world_size``/``dp_rank``/``fs_local_rank``
    default to the default process group's (1/0/0 without one). ``work_dir`` is a local folder shared by
    the ranks of a machine (OLMo-core writes its global-indices file there)."""
    world = dp_world_size
    if world is None or dp_rank is None or fs_local_rank is None:
        _olmo_core()
        from olmo_core.distributed.utils import get_fs_local_rank, get_rank, get_world_size

        world = get_world_size() if world is None else world
        dp_rank = get_rank() if dp_rank is None else dp_rank
        fs_local_rank = get_fs_local_rank() if fs_local_rank is None else fs_local_rank
    if sequence_length <= 0 or global_batch_size <= 0 or global_batch_size % (sequence_length * world):
        raise ReorderError(f"global_batch_size {global_batch_size} (tokens) must be a positive multiple of "
                           f"sequence_length x dp_world_size = {sequence_length} x {world}")
    dataset = olmo_dataset(out, sequence_length=sequence_length, work_dir=work_dir, pad_token_id=pad_token_id,
                           generate_doc_lengths=generate_doc_lengths)
    from olmo_core.data import DataCollator
    from olmo_core.data.data_loader import NumpyDataLoaderBase

    collator = collator or DataCollator(pad_token_id=dataset.pad_token_id, vocab_size=dataset.vocab_size)
    return NumpyDataLoaderBase.wrap_numpy_dataset(
        dataset, global_batch_size=global_batch_size, collator=collator, work_dir=str(work_dir), seed=0,
        shuffle=False, dp_world_size=world, dp_rank=dp_rank, fs_local_rank=fs_local_rank, num_workers=num_workers,
        num_threads=num_threads, prefetch_factor=prefetch_factor, target_device_type="cpu")


def batch_ids(batch: dict, sequence_length: int | None = None, offsets: bool = False) -> np.ndarray:
    """The instance indices of an OLMo-core batch (its ``index``), or their first tokens' offsets."""
    ids = np.asarray(batch["index"], dtype=np.int64)
    if offsets:
        if not sequence_length:
            raise ReorderError("token offsets need the sequence length (sequence_length=L)")
        ids = ids * int(sequence_length)
    return ids


def log_batch(log: AuditLog, step: int, batch: dict, sequence_length: int | None = None,
              offsets: bool = False) -> None:
    """Log step ``step`` (0-based: the global batch index) of this rank's batch."""
    log.log(step, batch_ids(batch, sequence_length, offsets))


def audit_callback(path: str | Path, sequence_length: int | None = None, offsets: bool = False):
    """An OLMo-core trainer ``Callback`` writing the audit log (``audit.rank{r}.jsonl`` under torch.distributed).

    The trainer increments ``global_step`` before ``pre_step(batch)``, so the batch of step s (1-based)
    is logged as step s - 1, the global batch index ``reorder audit`` expects."""
    _olmo_core()
    from dataclasses import dataclass

    from olmo_core.distributed.utils import get_rank, is_distributed
    from olmo_core.train.callbacks import Callback

    @dataclass
    class OlmoAuditCallback(Callback):
        _log: AuditLog | None = None

        def pre_train(self):
            self._log = AuditLog(path, get_rank() if is_distributed() else None)

        def pre_step(self, batch):
            if self._log is None:
                self.pre_train()
            log_batch(self._log, self.step - 1, batch, sequence_length, offsets)

        def close(self):
            if self._log is not None:
                self._log.close()
                self._log = None

    return OlmoAuditCallback()
