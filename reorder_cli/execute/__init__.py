"""Executors: where a run's tasks run (``--executor slurm``), and ``reorder status``.

A run's tasks are the stages plan, scatter (one per input slice), gather (one per output shard)
and publish. An executor decides only where each runs; the markers under ``OUTPUT/.reorder/``
(:mod:`reorder_cli.workdir`) are the truth, so any executor, and ``reorder status``, read the same
state.
"""
