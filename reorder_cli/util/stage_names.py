"""The names of a run's stages, in order: the one list that the config (``slurm.time_STAGE``), the task
graph (:mod:`reorder_cli.stages`), the executors and ``reorder status`` read."""

#: Stages of independent tasks, in order; each waits for the one before it.
TASK_STAGES = ("keys", "split", "sort", "place", "layout", "scatter", "gather")
#: The order's own steps (between keys and scatter).
ORDER_STAGES = ("split", "sort", "place", "layout")
#: Jobs of ``--executor slurm`` that are not tasks: ``submit`` submits the next stages once their sizes
#: are known, ``publish`` publishes.
SLURM_JOBS = ("submit", "publish")
