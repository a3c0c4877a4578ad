"""Run under torchrun by test_trl_sft.py: TRL's SFTTrainer trains a tiny Llama (built from a config, no
download) on a chat output, with reorder's audit callback recording what each rank's model received.

    torchrun --nproc_per_node 2 tests/trl_sft_script.py OUTPUT LOG MODES WORKDIR TOKENIZER

MODES is a comma-separated list, trained one after the other in the same processes (one start-up of
torch and the libraries for all); mode m logs to LOG's folder/m/ and works in WORKDIR/m.
b = 2, k = 2 (G = 8 with 2 ranks), max_length (L) = 16. A mode:
- ``sequential``: ``trl_sft.sft_config`` (no packing), ``trl_sft.audit`` (ids);
- ``wrapped``: ``trl_sft.sft_config(packing=True)``, ``trl_sft.audit`` (packed-sample indices);
- ``epochs``: ``sequential`` over 2 epochs;
- ``random``, ``bfd``: the trainer's defaults (random sampling; best-fit packing), the same log written
  by hand (``trl_sft.audit`` refuses them).
With packing, rank 0 also writes the packed dataset's input_ids to LOG's folder/m/packed.json.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import SFTConfig, SFTTrainer

from reorder_cli.loader import trl_sft
from reorder_cli.loader.audit_log import rank_path
from reorder_cli.loader.hf_audit import AuditCallback

B, K, L = 2, 2, 16


def main(out: str, log: str, modes: str, workdir: str, tokenizer_dir: str) -> None:
    for mode in modes.split(","):
        folder = Path(log).parent / mode
        rank_path(folder / "audit.jsonl", rank()).unlink(missing_ok=True)  # a retried run starts afresh
        train(out, folder, mode, str(Path(workdir) / mode), tokenizer_dir)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def train(out: str, folder: Path, mode: str, workdir: str, tokenizer_dir: str) -> None:
    log = folder / "audit.jsonl"
    torch.manual_seed(0)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None))
    common = dict(output_dir=workdir, per_device_train_batch_size=B, gradient_accumulation_steps=K, max_length=L,
                  num_train_epochs=2 if mode == "epochs" else 1, use_cpu=True, report_to=[], save_strategy="no",
                  logging_strategy="no", disable_tqdm=True, ddp_backend="gloo", dataloader_num_workers=0,
                  learning_rate=1e-3)
    if mode in ("sequential", "epochs", "wrapped"):
        args = trl_sft.sft_config(packing=mode == "wrapped", **common)
    else:  # the trainer's defaults: random sampling (no packing), or best-fit packing (sequential sampling)
        args = SFTConfig(**common, remove_unused_columns=False, dataloader_drop_last=True,
                         **({"packing": True, "train_sampling_strategy": "sequential"} if mode == "bfd" else {}))
    dataset = trl_sft.sft_dataset(out, cache_dir=folder / "hf-cache")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    if args.packing and rank() == 0:
        packed = [list(map(int, ids)) for ids in trainer.train_dataset["input_ids"]]
        (folder / "packed.json").write_text(json.dumps(packed))
    if mode in ("sequential", "epochs", "wrapped"):
        trl_sft.audit(trainer, log)
    else:  # what trl_sft.audit does, without its refusal
        if args.packing:
            trainer.train_dataset = trainer.train_dataset.add_column(
                trl_sft.SAMPLE, np.arange(len(trainer.train_dataset), dtype=np.int64))
        callback = AuditCallback(log, id_field=trl_sft.SAMPLE if args.packing else "id")
        trainer.data_collator = callback.collator(trainer.data_collator)
        trainer.add_callback(callback)
    trainer.train()


if __name__ == "__main__":
    main(*sys.argv[1:6])
