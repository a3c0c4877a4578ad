"""The names of a run's stages, in order: the one list that the config (``slurm.time_STAGE``), the stage
registry (:mod:`reorder_cli.stages.registry`, which holds a record for each and fails without), the
executors and ``reorder status`` read. Everything else about a stage is its record's."""

#: Stages of independent tasks, in order; each waits for the one before it.
TASK_STAGES = ("keys", "split", "sort", "place", "layout", "scatter", "combine", "gather")
#: Jobs of ``--executor slurm`` that are not tasks: ``submit`` submits the next stages once their sizes
#: are known, ``publish`` publishes.
SLURM_JOBS = ("submit", "publish")
