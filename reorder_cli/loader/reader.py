"""A plain Python reader of the order, for JAX and custom loops (no torch needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from reorder_cli.loader.layout import Layout, integer
from reorder_cli.loader.source import Source


class OrderedReader:
    """This rank's rows of an output, in the order of the manifest, window by window.

    Optimizer step s consumes positions [start + s·G, start + (s+1)·G) with G = W·b·k; rank r reads
    the b positions [start + m·W·b + r·b, … + b) of every global micro-batch m (see ``layout``).
    ``start`` is the number of samples consumed before (``start_sample``, or ``start_step`` · G).
    The state is that one number, so W, b and k may change at a restart.
    """

    def __init__(self, path: str | Path, micro_batch_size: int, grad_accum_steps: int = 1, rank: int = 0,
                 world_size: int = 1, start_step: int = 0, columns: list[str] | None = None,
                 drop_last: bool = True, start_sample: int | None = None, check_sha256: bool = False):
        self.path = Path(path)
        self.source = Source(path, columns=columns, check_sha256=check_sha256)
        self.micro_batch_size = integer("micro_batch_size", micro_batch_size, 1)
        self.grad_accum_steps = integer("grad_accum_steps", grad_accum_steps, 1)
        self.rank, self.world_size = integer("rank", rank), integer("world_size", world_size, 1)
        self.drop_last = drop_last
        g = self.micro_batch_size * self.grad_accum_steps * self.world_size
        self.start_sample = integer("start_sample", start_sample, 0, 2**62) if start_sample is not None else \
            integer("start_step", start_step) * g
        self._rows_yielded = 0
        self.layout  # validates the numbers now, not in a worker  # noqa: B018
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world_size})")

    @property
    def layout(self) -> Layout:
        return Layout(self.source.rows, self.micro_batch_size, self.grad_accum_steps, self.world_size,
                      self.start_sample, self.drop_last)

    @property
    def global_batch(self) -> int:
        return self.layout.global_batch

    def __len__(self) -> int:
        """Rows this rank reads from ``start`` on."""
        return self.layout.rank_rows(self.rank)

    def _rows(self, worker: int, workers: int) -> Iterator[dict]:
        layout = self.layout

        def select(lo: int, hi: int):
            return layout.positions(self.rank, worker, workers, lo, hi)

        for rows in self.source.batches(select):
            for row in rows:
                self._rows_yielded += 1
                yield row

    def __iter__(self) -> Iterator[dict]:
        self._rows_yielded = 0
        return self._rows(0, 1)

    def micro_batches(self) -> Iterator[list[dict]]:
        """This rank's micro-batches (lists of b rows; the last may be short without drop_last)."""
        batch: list[dict] = []
        for row in self:
            batch.append(row)
            if len(batch) == self.micro_batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    # ------------------------------------------------------------------ resume

    def samples_consumed(self, steps: int | None = None) -> int:
        """Samples consumed after ``steps`` optimizer steps of this run (default: the whole steps whose rows this
        reader has yielded in this process)."""
        if steps is None:
            steps = self._rows_yielded // (self.micro_batch_size * self.grad_accum_steps)
        return min(self.start_sample + integer("steps", steps, 0, 2**62) * self.global_batch, self.source.rows)

    def state_dict(self, steps: int | None = None) -> dict:
        return {"samples_consumed": self.samples_consumed(steps)}

    def load_state_dict(self, state: dict) -> None:
        self.start_sample = integer("state_dict's samples_consumed", state.get("samples_consumed"), 0, 2**62)
        self._rows_yielded = 0
