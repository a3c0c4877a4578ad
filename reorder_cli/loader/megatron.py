"""The Megatron recipe: megatron-core's ``GPTDataset`` reads an ``export: megatron`` output in its order.

``GPTDataset`` always shuffles the training split: its document index and its shuffle index are
random permutations (``gpt_dataset.py``, ``_build_document_sample_shuffle_indices``); no setting
turns that off. What it does first is look in ``path_to_cache`` for the three index files of its
config (named by the MD5 of its unique description) and load them instead of building its own.
:func:`pin_order` puts the order there: it builds the training split once with megatron-core's own
builder (so Megatron names the files), then replaces the document index by the documents in order,
the shuffle index by the identity, and the sample index by the one Megatron's own C++ helper builds
from that document index; then it builds the split again and checks that Megatron loaded exactly
those. Sample ``i`` of the dataset is then tokens ``[i*L, (i+1)*L + 1)`` of the exported stream
(``L + 1`` with ``add_extra_token_to_sequence``, Megatron's default; ``L`` without), the stream
repeated for a second epoch.

These functions run where megatron-core is installed (it is imported when they are called).
:class:`StepLog` writes the log ``reorder audit --tokens --offsets`` reads: the token offsets, in the
exported stream, of the samples the dataset really returned (so a shuffled dataset shows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reorder_cli.errors import ReorderError
from reorder_cli.loader.audit_log import AuditLog
from reorder_cli.util.npy import save_npy

AFFIXES = ("document_index", "sample_index", "shuffle_index")


def pin_order(config, num_samples: int | None = None) -> list[Path]:
    """Write the training split's index cache so that ``GPTDataset`` reads the export in order.

    ``config`` is the ``GPTDatasetConfig`` the trainer builds (the same prefix string, tokenizer, seed,
    sequence length, split and ``path_to_cache``: they all name the cache), ``num_samples`` the training
    size the trainer gives ``BlendedMegatronDatasetBuilder`` (train iterations x global batch size;
    ``None``: one epoch). Call it before the trainer builds its datasets: in one process, or on every
    rank of a ``torch.distributed`` job (rank 0 writes, all ranks check). Returns the files written.
    """
    prefix = _check(config)
    ordered = _ordered(_build(config, num_samples), config, prefix)
    paths = ordered.pop("paths")
    if _rank() == 0:
        for affix in AFFIXES:
            save_npy(paths[affix], ordered[affix])
    _barrier()
    pinned = _build(config, num_samples)
    for affix in AFFIXES:
        if not np.array_equal(np.asarray(getattr(pinned, affix)), ordered[affix]):
            raise ReorderError(f"{paths[affix]}: megatron did not load the ordered {affix} written there; this "
                               "megatron-core version names or reads its cache differently: pin megatron-core 0.16")
    return [paths[a] for a in AFFIXES]


def _ordered(dataset, config, prefix: str) -> dict:
    """The three indices in order, the way megatron builds its own: the documents in order (once an
    epoch), the sample index from megatron's C++ helper over them, the identity shuffle."""
    from megatron.core.datasets import helpers  # the C++ helper GPTDataset builds its sample index with

    indices = np.asarray(dataset.indices, dtype=np.int32)
    if len(indices) == 0 or len(dataset.document_index) % len(indices):
        raise ReorderError(f"{prefix}: megatron built a document index of {len(dataset.document_index):,} entries for "
                           f"{len(indices):,} documents; this megatron-core version is not the one the recipe supports")
    epochs = len(dataset.document_index) // len(indices)
    documents = np.tile(indices, epochs)
    lengths = dataset.dataset.sequence_lengths
    sample_index = helpers.build_sample_idx(lengths, documents, config.sequence_length, epochs,
                                            int(np.sum(lengths[indices])), True, config.add_extra_token_to_sequence)
    if sample_index.shape != dataset.sample_index.shape:
        raise ReorderError(f"{prefix}: megatron's own sample index has {len(dataset.sample_index) - 1:,} samples, the "
                           f"ordered one {len(sample_index) - 1:,}; this megatron-core version is not supported")
    shuffle_index = np.arange(len(sample_index) - 1, dtype=np.asarray(dataset.shuffle_index).dtype)
    return {"document_index": documents, "sample_index": sample_index, "shuffle_index": shuffle_index,
            "paths": _cache_paths(dataset, config)}


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def is_pinned(dataset) -> bool:
    """Whether a built ``GPTDataset`` reads its documents and samples in order (identity shuffle)."""
    documents = np.asarray(dataset.document_index)
    epochs = len(documents) // max(1, len(dataset.indices))
    return bool(np.array_equal(documents, np.tile(np.asarray(dataset.indices), epochs))
                and np.array_equal(np.asarray(dataset.shuffle_index), np.arange(len(dataset.shuffle_index))))


def require_pinned(dataset) -> None:
    """Refuse a built ``GPTDataset`` that does not read in order: call it on the trainer's training split.
    A config that differs from the pinned one in anything that names the cache (prefix string, seed,
    sequence length, split, tokenizer, number of samples) makes Megatron build its own shuffled indices."""
    if not is_pinned(dataset):
        raise ReorderError(f"{dataset.dataset_path}: megatron's training split is shuffled: its config differs "
                           "from the one given to pin_order (or pin_order was not run); run pin_order with this config")


def stream_offsets(dataset, indices) -> np.ndarray:
    """The offset in the exported token stream of the first token of each sample ``dataset[i]``, ``i``
    in ``indices``, from the dataset's own indices (a later epoch counts from the stream's end)."""
    idx = np.asarray(indices, dtype=np.int64)
    start = np.asarray(dataset.sample_index)[np.asarray(dataset.shuffle_index)[idx]]
    position, offset = start[:, 0].astype(np.int64), start[:, 1].astype(np.int64)
    docs = np.asarray(dataset.indices)
    first = np.asarray(dataset.dataset.index.sequence_pointers) // dataset.dataset.index.dtype_size
    per_epoch = int(np.sum(np.asarray(dataset.dataset.sequence_lengths)[docs]))
    document = np.asarray(dataset.document_index)[position]
    return (position // len(docs)) * per_epoch + first[document] - first[docs[0]] + offset


class StepLog:
    """Logs, per optimizer step, the stream offsets of the samples one rank read (``AuditLog`` lines).

    ``read(dataset, indices)`` after each micro-batch the rank draws (the sample indices it asked the
    dataset for); every ``micro_batches`` micro-batches it writes one step. ``samples=True`` logs
    sample numbers ``offset // L`` for ``reorder audit --tokens`` without ``--offsets``.
    """

    def __init__(self, path: str | Path, rank: int | None = None, micro_batches: int = 1, samples: bool = False):
        self.log, self.micro_batches, self.samples = AuditLog(path, rank), micro_batches, samples
        self.step, self._pending, self._count = 0, [], 0

    def read(self, dataset, indices) -> None:
        offsets = stream_offsets(dataset, indices)
        self._pending.append(offsets // dataset.config.sequence_length if self.samples else offsets)
        self._count += 1
        if self._count == self.micro_batches:
            self.log.log(self.step, np.concatenate(self._pending))
            self.step, self._pending, self._count = self.step + 1, [], 0

    def close(self) -> None:
        self.log.close()


def _check(config) -> str:
    """The one prefix of the training split; refuse what cannot keep the order."""
    if getattr(config, "mock", False):
        raise ReorderError("GPTDatasetConfig has no blend (mock data): give blend=[[OUT/megatron/data], None]")
    per_split = any(config.blend_per_split or ())
    blend = config.blend_per_split[0] if per_split else config.blend
    if blend is None or len(blend[0]) != 1 or (not per_split and blend[1] is not None):
        raise ReorderError(f"GPTDatasetConfig blend {blend!r}: give the export's one prefix with no weight, "
                           "blend=[['OUT/megatron/data'], None]; a blend of several prefixes mixes them by weight")
    if not per_split and tuple(config.split_matrix[0] or ()) != (0, 1):
        raise ReorderError(f"GPTDatasetConfig split {config.split!r}: give split='1,0,0' (every document in "
                           "the training split, in order)")
    if not config.path_to_cache:
        raise ReorderError("GPTDatasetConfig path_to_cache is not set: set it (the same in the trainer), "
                           "where the ordered index files are written and Megatron looks for them")
    return blend[0][0]


def _build(config, num_samples: int | None):
    """The training split, built by megatron-core's own builder as a trainer builds it (under
    ``torch.distributed``, a collective: rank 0 first, then the others, as megatron does)."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset

    train = BlendedMegatronDatasetBuilder(GPTDataset, [num_samples, 0, 0], lambda: True, config).build()[0]
    if not isinstance(train, GPTDataset):
        raise ReorderError(f"megatron built a {type(train).__name__} for the training split, not one GPTDataset: "
                           "give the export's one prefix, blend=[['OUT/megatron/data'], None]")
    return train


def _cache_paths(dataset, config) -> dict[str, Path]:
    """The index files megatron-core 0.16 loads for ``dataset`` (``gpt_dataset.py``), checked to exist."""
    base = f"{dataset.unique_description_hash}-{type(dataset).__name__}-{dataset.index_split.name}"
    paths = {affix: Path(config.path_to_cache) / f"{base}-{affix}.npy" for affix in AFFIXES}
    missing = [str(p) for p in [*paths.values(), Path(config.path_to_cache) / f"{base}-description.txt"]
               if not p.is_file()]
    if missing:
        raise ReorderError(f"{missing[0]}: megatron did not write its index cache there; this megatron-core "
                           "version names its cache differently: pin megatron-core 0.16")
    return paths
