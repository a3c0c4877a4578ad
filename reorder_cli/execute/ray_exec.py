"""``reorder run --executor ray``: the run's tasks as Ray tasks; the driver prepares and publishes.

The driver (the command's process) checks the inputs, takes the run's lock (:mod:`reorder_cli.run_lock`,
held until it has published) and claims the output folder. Then every stage
of :mod:`reorder_cli.stages` in turn (keys; split, sort, place, layout: the order; scatter; gather),
each after the one before has finished (a barrier), runs its unfinished tasks as ``ray.remote`` calls
of the one task entry (:func:`reorder_cli.stages.run_one`), declaring ``num_cpus`` and ``memory``,
with at most ``max_in_flight`` submitted at once. Ray retries a task whose worker or node died
(``max_retries``); a task that raises stops the run with one line naming it, and its error is kept in
``OUTPUT/.reorder/logs/STAGE-INDEX.log`` (with ``STAGE-INDEX.failed``) for ``reorder status``. Then the
driver runs the same ``reorder run`` in process, which publishes. Ray attaches to ``RAY_ADDRESS``, or
``ray.address``, or a Ray already started in this process, or starts a local one.
"""

from __future__ import annotations

import os
import shutil
import socket
from typing import Any

from reorder_cli import pipeline
from reorder_cli import stages as graph
from reorder_cli.config import RunConfig
from reorder_cli.errors import ReorderError
from reorder_cli.execute import credentials, resources
from reorder_cli.pipeline import RunResult
from reorder_cli.util import store
from reorder_cli.util.progress import Progress
from reorder_cli.workdir import WorkDir, for_output, scratch

DEFAULT_IN_FLIGHT_PER_CPU = 2
DEFAULT_RETRIES = 3


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ReorderError("--executor ray: Ray is not installed; pip install 'reorder[ray]'") from None
    return ray


def _task(output: str, phase: str, index: int, work_dir: str | None = None, options: dict | None = None) -> int:
    """The body of one Ray task: run task ``(phase, index)`` of the planned run in ``output``; ``options``:
    where the stores are (the shareable ``storage_options``: a work folder on a store is read before its
    ``run.json``)."""
    store.configure(options)
    return graph.run_one(output, phase, index, work_dir)["rows"]


def _address(settings: dict[str, Any]) -> str | None:
    return os.environ.get("RAY_ADDRESS") or settings.get("address")


def _check_reachable(address: str | None) -> None:
    """A one-line error, before anything is written, when an explicit ``host:port`` does not answer
    (``ray.init`` would retry for minutes)."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ReorderError(f"Ray address {address!r} cannot be reached ({exc}); start the cluster, or unset "
                           "RAY_ADDRESS and ray.address to start a local Ray") from None


def _connect(ray: Any, settings: dict[str, Any]) -> None:
    if ray.is_initialized():
        return
    address = _address(settings)
    try:
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - any failure to attach is one line, naming the address
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ReorderError(f"cannot attach to Ray at {address or 'a new local Ray'}: {first}") from None


def task_options(ray: Any, cfg: RunConfig) -> dict[str, Any]:
    """What each task declares (``num_cpus``, ``memory``: :func:`resources.ray_memory`) and ``max_retries``;
    a memory no node of the cluster offers is one line (Ray would wait for such a node for ever)."""
    memory = resources.ray_memory(cfg.ray, cfg.memory_limit)
    largest = max((n.get("Resources", {}).get("memory", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    if largest and memory > largest:
        raise ReorderError(f"ray: each task declares {memory // resources.MIB} MiB (memory_limit plus 64 MB, or "
                           f"ray.memory) but the largest Ray node offers {int(largest) // resources.MIB} MiB; "
                           "lower --memory-limit or set ray.memory")
    return {"num_cpus": cfg.ray.get("num_cpus", 1), "memory": memory,
            "max_retries": cfg.ray.get("max_retries", DEFAULT_RETRIES)}


def _stage(ray: Any, remote: Any, work: WorkDir, phase: str, todo: list[int], settings: dict[str, Any],
           options: dict[str, Any], stores: dict[str, Any], progress: Progress) -> None:
    """Run ``todo`` of ``phase`` with at most ``max_in_flight`` at once; stop at the first failure."""
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    limit = settings.get("max_in_flight", DEFAULT_IN_FLIGHT_PER_CPU * cpus)
    pending, running = list(todo), {}
    output, base = str(work.output), None if work.base is None else str(work.base)
    with progress.task(f"Ray {phase} tasks", total=len(todo), unit="tasks") as advance:
        while pending or running:
            while pending and len(running) < limit:
                index = pending.pop(0)
                work.clear_failure(phase, index)
                running[remote.options(**options).remote(output, phase, index, base, stores)] = index
            ready, _ = ray.wait(list(running), num_returns=1)
            index = running.pop(ready[0])
            try:
                ray.get(ready[0])
            except Exception as exc:  # a task raised (after its retries): stop here, keep what finished
                for ref in running:
                    ray.cancel(ref)
                cause = getattr(exc, "cause", None) or exc
                why = " ".join(str(cause).split()) or type(cause).__name__
                work.record_failure(phase, index, f"{type(cause).__name__}: {why}\n")
                raise ReorderError(f"ray: {phase} task {index} failed: {why} (log: {work.log_where(phase, index)}); "
                                   "re-run the same command to resume") from None
            advance(1)


def run(cfg: RunConfig, *, overwrite: bool = False, restart: bool = False, keep_work: bool = False,
        progress: Progress | None = None, sets: list[str] | None = None) -> RunResult:
    """Plan in the driver, run the scatter then the gather tasks on Ray, publish in the driver. A credential
    among the command's ``sets`` is refused (:func:`credentials.check_sets`): the tasks would not get it."""
    credentials.check_sets(sets, "ray")
    ray = _ray()
    _check_reachable(_address(cfg.ray))
    progress = progress or Progress(enabled=False)
    with pipeline.preparing(resources.per_task(cfg), overwrite, restart, "reorder run --executor ray") as prepared:
        if prepared.status == "already done":
            return prepared
        work = for_output(cfg.output, cfg)
        _connect(ray, cfg.ray)
        options = task_options(ray, cfg)
        remote = ray.remote(_task)
        for stage in graph.STAGES:  # a barrier between stages: each one's size is known once the one before is done
            _stage(ray, remote, work, stage, graph.todo(work, stage) or [], cfg.ray, options,
                   store.shareable(cfg.storage_options), progress)
        result = pipeline.run(cfg, progress=progress, keep_work=keep_work)  # the run's lock is held here already
    if work.remote is not None and not keep_work:
        _remove_mirrors(ray, work.remote.name)
    return result


def _remove_mirror(name: str) -> None:
    """The body of a Ray task: remove this node's mirrors of the run folder ``name`` (every claim)."""
    shutil.rmtree(scratch() / name, ignore_errors=True)


def _remove_mirrors(ray: Any, name: str) -> None:
    """A work folder on a store, published: remove its mirror on every node of the cluster (one task
    pinned to each live node)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0)(_remove_mirror)
    ray.get([task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(name)
             for node in ray.nodes() if node.get("Alive")])
