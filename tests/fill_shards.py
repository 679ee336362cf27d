"""Run under torchrun (tests/test_real_layout.py): a meta DiT sharded with FSDP2, then filled from its Wan file.

Each rank must end with exactly its own Shard(0) slice of every file tensor and allocate nothing else.
"""

import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from stream_r1.models.wan_io import materialize, wan_dit_source

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
source = wan_dit_source(sys.argv[1])
model = source.empty()
for block in model.blocks:
    fully_shard(block)
fully_shard(model)
source.fill_(model.to_empty(device="cpu"))
for name, param in model.state_dict().items():
    full = materialize(source.state[name]).float()
    local = param.to_local()
    mine = torch.tensor_split(full, world, dim=0)[rank] if full.shape[0] >= world else None
    if mine is not None and local.shape == mine.shape:
        assert torch.equal(local, mine), name
    assert torch.equal(param.full_tensor(), full), name
    assert local.numel() < full.numel() or full.shape[0] < world, name  # a share, not a copy
print(f"rank {rank}: ok")
dist.destroy_process_group()
