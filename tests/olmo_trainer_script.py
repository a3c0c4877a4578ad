"""OLMo-core's own Trainer over an ``export: olmo`` output, configured as the recipe says (run by tests/test_olmo.py).

    python -m torch.distributed.run --nproc_per_node 2 tests/olmo_trainer_script.py OUT AUDIT WORK MODE
    (or plain python for one process)

MODE ``recipe``: ``reorder_cli.loader.olmo.olmo_loader``; MODE ``default``: OLMo-core's
``NumpyDataLoaderConfig(...).build(dataset)``. A train module that trains nothing records the instance
indices each rank's train_batch gets; the recipe's ``audit_callback`` writes the audit log.
Prints one JSON line per rank: {"rank": r, "batches": [[...], ...]}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch.distributed as dist
from olmo_core.data import NumpyDataLoaderConfig
from olmo_core.train import Duration, TrainerConfig
from olmo_core.train.train_module import TrainModule

from reorder_cli.loader import olmo as recipe

L, B = 16, 4


class RecordingTrainModule(TrainModule):
    """Trains nothing; keeps the instance indices of every (non dry-run) batch it is given."""

    def __init__(self):
        super().__init__()
        self.seen: list[list[int]] = []

    @property
    def eval_batch_spec(self):
        raise NotImplementedError

    def state_dict(self, *, optim=None):
        return {}

    def load_state_dict(self, state_dict):
        pass

    def train_batch(self, batch, dry_run=False):
        if not dry_run:
            self.seen.append(batch["index"].tolist())

    def eval_batch(self, batch, labels=None):
        raise NotImplementedError

    def optim_step(self):
        pass

    def zero_grads(self):
        pass

    def num_flops_per_token(self, seq_len):
        return None

    def global_num_flops_in_batch(self, batch):
        return None


def main(out: str, audit: str, work: str, mode: str) -> None:
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if mode == "recipe":
        loader = recipe.olmo_loader(out, sequence_length=L, global_batch_size=B * L, work_dir=Path(work) / "data")
    else:
        dataset = recipe.olmo_dataset(out, sequence_length=L, work_dir=Path(work) / "data")
        loader = NumpyDataLoaderConfig(global_batch_size=B * L, seed=42, work_dir=str(Path(work) / "data")).build(
            dataset)
    config = TrainerConfig(save_folder=str(Path(work) / "save"), work_dir=str(Path(work) / "trainer"), device="cpu",
                           no_checkpoints=True, no_evals=True, max_duration=Duration.epochs(1),
                           metrics_collect_interval=1000)
    config.add_callback("reorder_audit", recipe.audit_callback(audit, sequence_length=L))
    module = RecordingTrainModule()
    config.build(module, loader).fit()
    print(json.dumps({"rank": rank, "batches": module.seen}), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:5])
