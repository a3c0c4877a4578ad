"""torch datasets over an output's order (needs the optional extra: pip install 'reorder[torch]')."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch.distributed as dist
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from reorder_cli.errors import ReorderError
from reorder_cli.loader.layout import Layout
from reorder_cli.loader.reader import OrderedReader
from reorder_cli.loader.source import Source


def _default_rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    ready = dist.is_available() and dist.is_initialized()
    if rank is None:
        rank = dist.get_rank() if ready else 0
    if world_size is None:
        world_size = dist.get_world_size() if ready else 1
    return rank, world_size


class OrderedDataset(OrderedReader, IterableDataset):
    """An IterableDataset of this rank's rows (dicts), worker-aware.

    Use it as ``DataLoader(ds, batch_size=micro_batch_size, num_workers=nw)``: the DataLoader takes
    batches round-robin from its workers, so worker w yields this rank's micro-batches w, w + nw, …
    and every micro-step gets this rank's part of the global batch, for any nw >= 0. Rank and world
    size default to torch.distributed's when it is initialised.

    ``state_dict(steps)`` needs the optimizer steps taken when num_workers > 0 (the rows are read in
    the workers, so the dataset in the training process does not see them).
    """

    def __init__(self, path: str | Path, micro_batch_size: int, grad_accum_steps: int = 1, rank: int | None = None,
                 world_size: int | None = None, start_step: int = 0, columns: list[str] | None = None,
                 drop_last: bool = True, start_sample: int | None = None, check_sha256: bool = False):
        rank, world_size = _default_rank_world(rank, world_size)
        super().__init__(path, micro_batch_size, grad_accum_steps, rank, world_size, start_step, columns,
                         drop_last, start_sample, check_sha256)
        self._read_here = False

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        self._rows_yielded = 0
        if info is None:
            self._read_here = True
            return self._rows(0, 1)
        return self._rows(info.id, info.num_workers)

    def samples_consumed(self, steps: int | None = None) -> int:
        if steps is None and not self._read_here:
            raise ValueError("OrderedDataset.state_dict(steps=N): pass the optimizer steps taken since this dataset "
                             "started (with num_workers > 0 the rows are read in the workers)")
        return super().samples_consumed(steps)


class OrderedMapDataset(Dataset):
    """A map-style dataset: item i is position i of the order (Parquet outputs).

    For ``Trainer`` with sequential sampling (transformers >= 5.2: ``train_sampling_strategy="sequential"``
    and ``dataloader_drop_last=True``): accelerate then gives batch i of b rows to rank i % W, which is
    exactly the windows of ``OrderedDataset``; with ``max_steps=ds.optimizer_steps(b, k, W)`` the Trainer also
    drops the last partial window as ``OrderedDataset`` does. ``__getitems__`` reads a whole batch at once,
    and the last row group read is kept, so each worker reads each row group it needs once.
    """

    def __init__(self, path: str | Path, columns: list[str] | None = None, check_sha256: bool = False):
        self.source = Source(path, columns=columns, check_sha256=check_sha256)
        jsonl = [s.path for s in self.source.shards if s.format != "parquet"]
        if jsonl:
            raise ReorderError(f"{jsonl[0]}: OrderedMapDataset reads Parquet outputs (random access); "
                               "use OrderedDataset for JSONL, or write the output with --set format=parquet")
        self._cache: dict = {}

    def __len__(self) -> int:
        return self.source.rows

    def optimizer_steps(self, micro_batch_size: int, grad_accum_steps: int, world_size: int) -> int:
        """The whole windows of G = W·b·k in the order: the ``max_steps`` with which the Trainer, like
        ``OrderedDataset``, drops the last partial window. (On its own the Trainer takes ceil(M / k) steps of
        the M = rows // (W·b) micro-batches per rank, the last one over the M mod k left.) ``world_size`` is
        not guessed: the Trainer's arguments are built before torch.distributed starts."""
        layout = Layout(self.source.rows, micro_batch_size, grad_accum_steps, world_size)
        if not layout.steps:
            raise ReorderError(f"{self.source.folder}: {layout.rows} rows are fewer than one global batch "
                               f"W·b·k = {layout.global_batch}: no whole optimizer step; lower b or k")
        return layout.steps

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += self.source.rows
        return self.source.take([index], self._cache)[0]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        return self.source.take(indices, self._cache)
