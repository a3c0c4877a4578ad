"""Pure-Python models of how trainers pull from a dataset, for the loader tests."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

#: torchrun's summary of a rank that died of a signal (``exitcode  : -6 (pid: ...)  (SIGABRT)``)
SIGNALLED = re.compile(r"exitcode\s*:\s*-\d+ \(pid")


def run_torchrun(script: Path, args: list, env: dict, reset: Callable[[], None] = lambda: None,
                 nproc: int = 2, timeout: int = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node nproc script args``, asserted to pass. A rank the runtime
    killed by a signal (a gloo/thread abort at start-up) runs again, at most twice, after ``reset()``
    (which removes what the failed attempt left); a rank that failed in Python never does."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(script), *map(str, args)]
    for _attempt in range(3):
        reset()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode == 0 or not SIGNALLED.search(done.stderr):
            break  # passed, or failed in Python (an assertion, an error): never retried
    assert done.returncode == 0, done.stderr[-3000:]
    return done


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


def accelerate_micro_batches(n: int, world: int, b: int) -> list[list[list[int]]]:
    """[rank][micro-batch] -> positions, from accelerate's own ``BatchSamplerShard`` over a sequential sampler
    with ``drop_last`` (what the HF Trainer's DataLoader yields with the README's recipe)."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, SequentialSampler

    batches = BatchSampler(SequentialSampler(range(n)), b, drop_last=True)
    return [list(BatchSamplerShard(batches, world, r)) for r in range(world)]


def hf_trainer_steps(n: int, world: int, b: int, k: int, max_steps: int = -1) -> list[list[int]]:
    """The positions each optimizer step of the HF Trainer consumes (ranks pooled), for one epoch: its
    ``set_initial_training_values`` counts ceil(M / k) steps of the M micro-batches per rank, and ``_run_epoch``
    gives each step k of them, the last step the M mod k left; ``max_steps`` > 0 stops it there. A step with
    no micro-batch never runs."""
    per_rank = accelerate_micro_batches(n, world, b)
    m = len(per_rank[0])
    steps = max(-(-m // k), 1) if max_steps <= 0 else max_steps
    out = [[p for rank in per_rank for batch in rank[s * k : (s + 1) * k] for p in batch] for s in range(steps)]
    return [step for step in out if step]
