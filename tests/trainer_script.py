"""Run under torchrun by test_trainers.py: a toy model trained by the Hugging Face Trainer on an
output, recording the ids it is fed with reorder's AuditCallback.

    torchrun --nproc_per_node 2 tests/trainer_script.py OUTPUT LOG sequential|random WORKDIR [K] [MAX_STEPS] \
        [-- LOG sequential|random WORKDIR [K] [MAX_STEPS] ...]

K is the gradient accumulation (default 2), b is 3; MAX_STEPS is a number, ``recipe`` (the README's
recipe: ``OrderedMapDataset.optimizer_steps``) or ``epoch`` (one epoch, the Trainer's own count).
Each run after a ``--`` trains a new model with a new Trainer, in the same ranks (one launch of
torchrun, one import of torch and transformers, for several trainings), its log apart.
"""

import os
import sys

import torch
from transformers import Trainer, TrainingArguments

from reorder_cli.loader import OrderedMapDataset
from reorder_cli.loader.hf_audit import AuditCallback

B = 3


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, **kwargs):
        return {"loss": ((self.w * x - 1.0) ** 2).mean()}


def collate(rows):
    return {"x": torch.tensor([float(r["score"]) for r in rows])}


def main(out: str, log: str, mode: str, workdir: str, k: str = "2", max_steps: str = "12") -> None:
    audit = AuditCallback(log, id_field="id")
    ds = OrderedMapDataset(out, columns=["id", "score"])
    if max_steps == "recipe":
        steps = ds.optimizer_steps(B, int(k), int(os.environ["WORLD_SIZE"]))
    else:
        steps = -1 if max_steps == "epoch" else int(max_steps)
    args = TrainingArguments(
        output_dir=workdir, per_device_train_batch_size=B, gradient_accumulation_steps=int(k), max_steps=steps,
        num_train_epochs=1, train_sampling_strategy=mode, dataloader_drop_last=True, dataloader_num_workers=2,
        remove_unused_columns=False, use_cpu=True, report_to=[], save_strategy="no", logging_strategy="no",
        disable_tqdm=True, ddp_backend="gloo",
    )
    trainer = Trainer(model=Toy(), args=args, train_dataset=ds, data_collator=audit.collator(collate),
                      callbacks=[audit])
    trainer.train()


def runs(argv: list[str]) -> list[list[str]]:
    """``OUTPUT RUN [-- RUN ...]`` as the arguments of :func:`main`, one list per run."""
    found: list[list[str]] = [[argv[0]]]
    for arg in argv[1:]:
        if arg == "--":
            found.append([argv[0]])
        else:
            found[-1].append(arg)
    return found


if __name__ == "__main__":
    for args in runs(sys.argv[1:]):
        main(*args)
