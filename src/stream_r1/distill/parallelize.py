"""Parallelism applied from outside the model and the loss (torchtitan style; README "Several GPUs").

`parallelize(model, plan, device, mesh)` takes a built network and applies, in order:
  1. `torch.compile` per block (optional, `train.compile`), so the checkpointed recompute runs compiled code too;
  2. activation checkpointing per block (`train.activation_checkpointing: none | full | every_n`, with
     `train.activation_checkpointing_every: N` for every_n), through torch's non-reentrant checkpoint;
  3. FSDP2 `fully_shard` per block, then the root (with a mesh), optionally with CPU offload of the shards;
  4. mixed precision: a bf16 `MixedPrecisionPolicy` under FSDP2 and autocast around the forward.
Without a mesh the network is moved to `device` instead of sharded. The DiT and the losses know nothing of it.
A network built on the meta device (wan_components with `empty`) is allocated where it will live, after sharding,
so each rank allocates only its shard (FSDP2's meta-device init); its values are the caller's to fill.

The KV cache (models/kv_cache.py) and checkpointing: a checkpointed block is re-run in backward, after later
chunks of the rollout have written to (and evicted from) the cache. `checkpoint_block` hands that recompute a
frozen copy of the block's layer cache as its forward saw it (`LayerCache.frozen`), so the recompute reads the
same keys and values and writes nothing; forwards without grad (the rollout's other steps, the cache writes,
the teacher and the critic inside the DMD gradient) are not checkpointed at all.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.utils.checkpoint import checkpoint

from ..common.config import ConfigError, from_section
from ..models.kv_cache import LayerCache

PRECISIONS = ("fp32", "bf16")
BACKENDS = ("auto", "gloo", "nccl")
CHECKPOINTING = ("none", "full", "every_n")
TEACHER_PLACEMENT = ("shard", "offload")


@dataclass
class DistributedSettings:
    """The optional `distributed` section of a distillation config."""

    mixed_precision: str = "fp32"  # "bf16": bf16 parameters and activations, fp32 gradient reductions
    reshard_after_forward: bool = True  # free gathered parameters after each forward (ZeRO-3); False = ZeRO-2
    backend: str = "auto"  # "auto": nccl on CUDA, gloo on the CPU
    teacher: str = "shard"  # the frozen teacher: "shard" (bf16 shards on the GPUs) | "offload" (shards in host memory)

    @classmethod
    def from_dict(cls, d: dict | None) -> DistributedSettings:
        s = from_section(cls, d or {}, "distributed")
        if s.mixed_precision not in PRECISIONS:
            raise ValueError(f"distributed.mixed_precision={s.mixed_precision!r}; choose one of {PRECISIONS}")
        if s.backend not in BACKENDS:
            raise ValueError(f"distributed.backend={s.backend!r}; choose one of {BACKENDS}")
        if s.teacher not in TEACHER_PLACEMENT:
            raise ConfigError(f"distributed.teacher={s.teacher!r}; choose one of {TEACHER_PLACEMENT}")
        return s


@dataclass
class Plan:
    """What `parallelize` does to one network."""

    activation_checkpointing: str = "none"  # none | full | every_n
    checkpoint_every: int = 1  # every_n: blocks 0, N, 2N, ... are checkpointed
    compile: bool = False
    precision: str = "fp32"  # bf16: autocast forward (and bf16 gathers under FSDP2), fp32 outputs
    reshard_after_forward: bool = True
    offload: bool = False  # FSDP2 CPU offload of the shards (needs a mesh)

    def __post_init__(self) -> None:
        if self.activation_checkpointing not in CHECKPOINTING:
            raise ConfigError(f"train.activation_checkpointing={self.activation_checkpointing!r}; "
                              f"choose one of {CHECKPOINTING}")
        if self.activation_checkpointing == "every_n" and self.checkpoint_every < 1:
            raise ConfigError(f"train.activation_checkpointing_every={self.checkpoint_every}: give N >= 1 "
                              "(every N-th block is checkpointed)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}; choose one of {PRECISIONS}")

    def checkpointed(self, index: int) -> bool:
        if self.activation_checkpointing == "full":
            return True
        return self.activation_checkpointing == "every_n" and index % self.checkpoint_every == 0


def parallelize(model: nn.Module, plan: Plan, device: torch.device, mesh: DeviceMesh | None = None) -> nn.Module:
    """Compile, checkpoint, shard (or move) and set the precision of `model`, in place; returns it."""
    blocks = block_slots(model)
    if plan.compile:
        for parent, i in blocks:
            parent[i].compile()
    for k, (parent, i) in enumerate(blocks):
        if plan.checkpointed(k):
            parent[i] = checkpoint_wrapper(parent[i], checkpoint_fn=checkpoint_block)
    meta = is_meta(model)
    if mesh is None:
        if plan.offload:
            raise ConfigError("distributed.teacher=offload keeps FSDP2 shards in host memory and needs torchrun "
                              "with a process group; on one process use distributed.teacher=shard")
        model.to_empty(device=device) if meta else model.to(device)
        if plan.precision == "bf16":
            autocast_forward(model, device.type, torch.bfloat16, output_dtype=torch.float32)
        return model
    shard(model, mesh, plan.precision, plan.reshard_after_forward, plan.offload)
    if meta:  # each rank allocates its own shard only; offloaded shards live in host memory
        model.to_empty(device=torch.device("cpu") if plan.offload else device)
    return model


def is_meta(model: nn.Module) -> bool:
    """Whether `model` was built on the meta device (no storage yet)."""
    return any(p.is_meta for p in model.parameters())


def block_slots(model: nn.Module) -> list[tuple[nn.ModuleList, int]]:
    """(list, index) of every block: the elements with parameters of each outermost ModuleList."""
    slots: list[tuple[nn.ModuleList, int]] = []
    inside: set[int] = set()  # ids of modules within a block already taken
    for sub in model.modules():
        if isinstance(sub, nn.ModuleList) and id(sub) not in inside:
            for i, m in enumerate(sub):
                if any(True for _ in m.parameters()):
                    slots.append((sub, i))
                    inside.update(id(x) for x in m.modules())
    return slots


def shard_units(module: nn.Module) -> list[nn.Module]:
    """The FSDP units below the root: the elements of each outermost ModuleList (the transformer blocks)."""
    return [parent[i] for parent, i in block_slots(module)]


# ---------------------------------------------------------------------------------------------
# Activation checkpointing


def checkpoint_block(block: nn.Module, *args, **kwargs):
    """Run `block` under torch's non-reentrant checkpoint when grad is on; safe with a KV cache.

    A DiT block's last argument is its layer cache (or None). The forward uses the real cache (and writes
    it when the cache is writing); the recompute in backward gets the frozen copy taken before the forward.
    """
    if not torch.is_grad_enabled():
        return block(*args, **kwargs)
    cache = args[-1] if args and isinstance(args[-1], LayerCache) else None
    if cache is None:
        return checkpoint(block, *args, use_reentrant=False, **kwargs)
    frozen, calls = cache.frozen(), 0

    def run(*inputs):
        nonlocal calls
        calls += 1
        return block(*inputs, cache if calls == 1 else frozen, **kwargs)

    return checkpoint(run, *args[:-1], use_reentrant=False)


def checkpoint_layers(blocks: nn.ModuleList) -> None:
    """Wrap each element of `blocks` in torch's non-reentrant checkpoint (e.g. a transformers model's layers)."""
    for i, block in enumerate(blocks):
        blocks[i] = checkpoint_wrapper(block)


# ---------------------------------------------------------------------------------------------
# FSDP2 and mixed precision


def precision_policy(precision: str, root: bool) -> MixedPrecisionPolicy:
    """fp32: no casts. bf16: parameters gathered in bf16, gradients reduced in fp32, the root's outputs in fp32.

    Forward inputs are not cast (timesteps and RoPE angles must stay fp32); matmuls run in bf16 through
    autocast instead (see `autocast_forward`). Only the root casts its output: a block handing fp32 to the
    next block would meet bf16 LayerNorm weights, which the CPU kernel refuses.
    """
    if precision == "fp32":
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(torch.bfloat16, torch.float32, torch.float32 if root else None,
                                cast_forward_inputs=False)


def autocast_forward(module: nn.Module, device_type: str, dtype: torch.dtype,
                     output_dtype: torch.dtype | None = None) -> None:
    """Run `module`'s forward under autocast (FSDP2's hooks, gather and cast, stay outside it).

    With `output_dtype`, a floating-point tensor output is cast to it (what FSDP2's root policy does when sharded).
    """
    forward = module.forward

    @functools.wraps(forward)
    def wrapped(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            out = forward(*args, **kwargs)
        if output_dtype is not None and isinstance(out, torch.Tensor) and out.is_floating_point():
            out = out.to(output_dtype)
        return out

    module.forward = wrapped


def shard(module: nn.Module, mesh: DeviceMesh, precision: str, reshard_after_forward: bool,
          offload: bool = False) -> nn.Module:
    """fully_shard each block, then the root; gradients are summed, not averaged, across ranks.

    With `offload` the shards live in host memory and are copied to the GPU for each gather (FSDP2's
    CPUOffloadPolicy; pinned when CUDA is there).
    """
    extra = {"offload_policy": CPUOffloadPolicy(pin_memory=torch.cuda.is_available())} if offload else {}
    for unit in shard_units(module):
        fully_shard(unit, mesh=mesh, mp_policy=precision_policy(precision, root=False),
                    reshard_after_forward=reshard_after_forward, **extra)
    fully_shard(module, mesh=mesh, mp_policy=precision_policy(precision, root=True),
                reshard_after_forward=reshard_after_forward, **extra)
    for m in module.modules():
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)  # plain SUM: gloo has no PREMUL_SUM
    if precision == "bf16":
        autocast_forward(module, mesh.device_type, torch.bfloat16)
    return module
