"""Reading an output in its order, as a trainer should: window by window, rank- and worker-aware.

``OrderedReader`` and ``Layout`` are pure Python (pyarrow); ``OrderedDataset`` and
``OrderedMapDataset`` need torch (``pip install 'reorder[torch]'``).
"""

from __future__ import annotations

from reorder_cli.loader.layout import Layout
from reorder_cli.loader.reader import OrderedReader
from reorder_cli.loader.source import Source

__all__ = ["Layout", "OrderedDataset", "OrderedMapDataset", "OrderedReader", "Source"]

TORCH_HINT = "the torch datasets need the optional extra: pip install 'reorder[torch]'"


def __getattr__(name: str):
    if name in ("OrderedDataset", "OrderedMapDataset"):
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ImportError(TORCH_HINT) from None
        from reorder_cli.loader import torch_data

        return getattr(torch_data, name)
    raise AttributeError(name)
