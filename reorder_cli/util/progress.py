"""Progress bars for the long phases (rich, on stderr); silent when disabled."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True)

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(f"[dim]{text}[/]", highlight=False)

    @contextmanager
    def task(self, label: str, total: int, unit: str = "rows") -> Iterator[Callable[[int], None]]:
        """A bar for one phase; yields a thread-safe ``advance(n)``."""
        if not self.enabled:
            yield lambda n: None
            return
        amount = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
        bar = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(), amount,
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
        )
        lock = threading.Lock()
        with bar:
            task_id = bar.add_task(label, total=max(total, 1))

            def advance(n: int) -> None:
                with lock:
                    bar.advance(task_id, n)

            yield advance
            bar.update(task_id, completed=max(total, 1))
