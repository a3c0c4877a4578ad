"""Run under torchrun by test_trainers.py: a toy model trained by the Hugging Face Trainer on an
output, recording the ids it is fed with reorder's AuditCallback.

    torchrun --nproc_per_node 2 tests/trainer_script.py OUTPUT LOG sequential|random
"""

import sys

import torch
from transformers import Trainer, TrainingArguments

from reorder_cli.loader import OrderedMapDataset
from reorder_cli.loader.hf_audit import AuditCallback


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, **kwargs):
        return {"loss": ((self.w * x - 1.0) ** 2).mean()}


def collate(rows):
    return {"x": torch.tensor([float(r["score"]) for r in rows])}


def main(out: str, log: str, mode: str, workdir: str) -> None:
    audit = AuditCallback(log, id_field="id")
    args = TrainingArguments(
        output_dir=workdir, per_device_train_batch_size=3, gradient_accumulation_steps=2, max_steps=12,
        train_sampling_strategy=mode, dataloader_drop_last=True, dataloader_num_workers=2,
        remove_unused_columns=False, use_cpu=True, report_to=[], save_strategy="no", logging_strategy="no",
        disable_tqdm=True, ddp_backend="gloo",
    )
    trainer = Trainer(model=Toy(), args=args, train_dataset=OrderedMapDataset(out, columns=["id", "score"]),
                      data_collator=audit.collator(collate), callbacks=[audit])
    trainer.train()


if __name__ == "__main__":
    main(*sys.argv[1:5])
