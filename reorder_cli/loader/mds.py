"""MosaicML streaming over an ``export: mds``: a ``StreamingDataset`` with the settings that keep the order.

``streaming`` is imported only when a dataset is built (``pip install mosaicml-streaming``). Sample i of the
export is position i of the manifest's order. With ``shuffle=False``, ``num_canonical_nodes=1`` and
``batch_size`` equal to the DataLoader's per-rank batch size b, the library's partition
(``streaming/base/partition/orig.py``) gives every rank a stride of the order and every worker b consecutive
samples of its rank's stride, so the DataLoader's t-th batch on all ranks together is exactly positions
[t·W·b, (t+1)·W·b) (W ranks), whatever the number of workers.

``positions=True`` adds each sample's position under ``POSITION``; ``log_step`` writes a step's positions
with :class:`reorder_cli.loader.audit_log.AuditLog`, for ``reorder audit OUT LOGS --positions``.
"""

from __future__ import annotations

from pathlib import Path

from reorder_cli.errors import ReorderError
from reorder_cli.loader.audit_log import AuditLog

#: the sample key holding the sample's position in the order (``positions=True``)
POSITION = "reorder_position"
#: the settings that keep the order; the recipe sets them and refuses other values
ORDER_SETTINGS = {"shuffle": False, "num_canonical_nodes": 1}
HINT = "the MDS recipe needs MosaicML streaming: pip install mosaicml-streaming"

_classes: dict[str, type] = {}


def _positioned() -> type:
    """``StreamingDataset`` whose samples carry their position (built at first use: streaming is optional).
    Reachable as ``reorder_cli.loader.mds.PositionedStreamingDataset``, so a spawned worker can unpickle it."""
    if "PositionedStreamingDataset" not in _classes:
        from streaming import StreamingDataset

        class PositionedStreamingDataset(StreamingDataset):
            def get_item(self, sample_id: int, retry: int = 7):
                sample = super().get_item(sample_id, retry)
                sample[POSITION] = int(sample_id)
                return sample

        PositionedStreamingDataset.__module__ = __name__
        _classes["PositionedStreamingDataset"] = PositionedStreamingDataset
    return _classes["PositionedStreamingDataset"]


def __getattr__(name: str):
    if name == "PositionedStreamingDataset":
        return _positioned()
    raise AttributeError(name)


def ordered_streaming_dataset(local: str | Path, batch_size: int, positions: bool = False, **settings):
    """A ``StreamingDataset`` over the MDS export in ``local`` (``OUT/mds``) that yields the manifest's order:
    ``shuffle=False``, ``num_canonical_nodes=1`` and ``batch_size`` (give the DataLoader the same batch size).
    Other ``StreamingDataset`` settings pass through; a value of ``shuffle`` or ``num_canonical_nodes`` that
    breaks the order is refused."""
    for key, keep in ORDER_SETTINGS.items():
        if key in settings and settings[key] != keep:
            raise ReorderError(f"{local}: {key}={settings[key]!r} breaks the order of the MDS export; "
                               f"the recipe sets {key}={keep!r} (leave it out)")
        settings[key] = keep
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ReorderError(f"{local}: batch_size must be the DataLoader's per-rank batch size (an integer >= 1), "
                           f"not {batch_size!r}")
    try:
        cls = _positioned() if positions else __import__("streaming").StreamingDataset
    except ImportError:
        raise ImportError(HINT) from None
    return cls(local=str(local), batch_size=batch_size, **settings)


def log_step(log: AuditLog, step: int, batch) -> None:
    """Write the positions of one step's batch (a dataset built with ``positions=True``): a collated batch
    (a dict holding ``POSITION``) or the list of its samples."""
    log.log(step, batch[POSITION] if isinstance(batch, dict) else [int(s[POSITION]) for s in batch])
