"""Pure-Python models of how trainers pull from a dataset, for the loader tests."""

from __future__ import annotations


def round_robin(streams: list[list[list[int]]]) -> list[list[int]]:
    """The torch DataLoader's order: batch i from worker i % nw, skipping workers that are exhausted."""
    out, cursors, active = [], [0] * len(streams), list(range(len(streams)))
    while active:
        for w in list(active):
            if cursors[w] < len(streams[w]):
                out.append(streams[w][cursors[w]])
                cursors[w] += 1
            else:
                active.remove(w)
    return out


def chunk(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]
