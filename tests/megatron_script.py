"""One rank of the Megatron recipe under torchrun (tests/test_megatron.py): megatron-core's builder, the
order pinned by ``pin_order`` on every rank, and the data-parallel cut of Megatron-LM's
``MegatronPretrainingSampler`` (each global micro-batch of ``b * W`` samples, rank r takes the ``b`` from
``r * b``), read through a torch DataLoader and logged with ``StepLog``.

    torchrun --nproc_per_node 2 megatron_script.py PREFIX TOKENIZER CACHE LOG L b k
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.distributed as dist
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.tokenizers import MegatronTokenizer
from torch.utils.data import DataLoader

from reorder_cli.loader import megatron as recipe


def gpt_config(prefix: str, tokenizer: str, cache: str, sequence_length: int, **over) -> GPTDatasetConfig:
    """The settings the recipe gives (docs/guides/megatron.md)."""
    settings = dict(random_seed=1234, sequence_length=sequence_length, blend=([prefix], None), split="1,0,0",
                    path_to_cache=cache, mmap_bin_files=True, add_extra_token_to_sequence=True,
                    tokenizer=MegatronTokenizer.from_pretrained(tokenizer, metadata_path={"library": "huggingface"}),
                    reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False)
    settings.update(over)
    return GPTDatasetConfig(**settings)


def build(config: GPTDatasetConfig, num_samples: int | None) -> GPTDataset:
    return BlendedMegatronDatasetBuilder(GPTDataset, [num_samples, 0, 0], lambda: True, config).build()[0]


def main(prefix: str, tokenizer: str, cache: str, log: str, length: str, b: str, k: str) -> None:
    L, b, k = int(length), int(b), int(k)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    config = gpt_config(prefix, tokenizer, cache, L)
    recipe.pin_order(config)  # on every rank, before the trainer's own build
    dataset = build(config, None)
    recipe.require_pinned(dataset)
    stream = np.fromfile(prefix + ".bin", dtype=np.uint16)
    micro = len(dataset) // (b * world)
    batches = [[m * b * world + rank * b + j for j in range(b)] for m in range(micro - micro % k)]
    steps = recipe.StepLog(log, rank=rank, micro_batches=k)
    for indices, batch in zip(batches, DataLoader(dataset, batch_sampler=batches), strict=True):
        steps.read(dataset, indices)
        text = torch.cat([batch["tokens"], batch["labels"][:, -1:]], dim=1).numpy()
        want = np.stack([stream[i * L : (i + 1) * L + 1] for i in indices])
        assert np.array_equal(text, want), (rank, indices)
    steps.close()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
