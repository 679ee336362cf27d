"""Multi-process distillation: torchrun process groups, FSDP2 sharding, DCP checkpoints (README: Several GPUs).

Parallelism is applied from outside, as in torchtitan: `DistributedDistiller` is the single-process
`Distiller` built on this rank's device mesh, whose `place` hands every network to `parallelize.py` (FSDP2
`fully_shard`: each block, then the root), and keeps the losses untouched. Why the update equals the single-process one:
  - the global batch's prompts and the exit step come from `step_prompts` (seeded by (seed, step)), and
    every sample's noise from its own generator keyed by its global index, so a rank that takes some of
    the global indices draws exactly what one process would draw for them (`micro_batches`);
  - each rank's loss is already its share of the global mean (the trainer divides by the global batch
    size), so gradients are SUMMED across ranks (FSDP2's default would average: divide factor set to 1);
  - grad clipping sees DTensor gradients, whose norm is the global one.
The teacher and a module text encoder are sharded for memory only (frozen, no optimizer); the EMA is
sharded like the generator and updated shard by shard; rank 0 gathers it whole to evaluate and export.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from ..reweight.balance import AxisBalancer
from ..runstate.dcp_state import is_sharded_checkpoint, load_full_state, load_sharded_state, save_sharded_state
from ..runstate.train_state import latest_checkpoint
from .parallelize import DistributedSettings, autocast_forward, is_meta
from .trainer import Distiller, run_loop

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Process group


@dataclass
class Cluster:
    """This process's place in the job: rank, world size, device and the 1-D data-parallel mesh."""

    rank: int
    world_size: int
    device: torch.device
    mesh: DeviceMesh
    owns_group: bool  # this code created the process group, so it destroys it at the end

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Leave the group together: a rank that destroys gloo while another still sends aborts the job."""
        if self.owns_group and dist.is_initialized():
            if self.world_size > 1:
                dist.barrier()
            dist.destroy_process_group()


def world_size_from_env() -> int:
    """WORLD_SIZE as set by torchrun (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_cluster(backend: str = "auto") -> Cluster:
    """Join the process group described by torchrun's env vars (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*).

    Without torchrun (no MASTER_ADDR) a one-process group is made in memory, so a checkpoint written by
    several ranks can be resumed by a plain `stream-r1 distill --resume`.
    """
    cuda = torch.cuda.is_available()
    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        if "MASTER_ADDR" in os.environ:
            dist.init_process_group(backend)
        elif world_size_from_env() == 1:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        else:
            raise RuntimeError("WORLD_SIZE > 1 but no MASTER_ADDR; launch with torchrun --nproc_per_node N ...")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh(device.type, (world,), mesh_dim_names=("dp",))
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)  # logging from rank 0 only
    return Cluster(rank, world, device, mesh, owns)


def wants_distributed(run_dir: Path, resume: bool) -> bool:
    """Take the sharded path under torchrun with several ranks, or to resume a sharded checkpoint."""
    if world_size_from_env() > 1:
        return True
    ckpt = latest_checkpoint(Path(run_dir)) if resume else None
    return ckpt is not None and is_sharded_checkpoint(ckpt)


class SyncedAxisBalancer(AxisBalancer):
    """The balancer of method.md §3.6 on every rank, holding the same window on each.

    The trainer's pre-pass hands every rank the whole optimizer step's scores (all micro-batches, all ranks),
    so each rank appends the same entry, one per optimizer step. Rank 0's entry is broadcast all the same:
    the windows, and so λ_a, stay bitwise equal on every rank whatever the ranks' arithmetic does.
    """

    @classmethod
    def like(cls, balancer: AxisBalancer) -> SyncedAxisBalancer:
        """A synced balancer with `balancer`'s settings and window."""
        synced = cls(balancer.axes, balancer.mode, balancer.history.maxlen, balancer.penalty, balancer.rate,
                     balancer.threshold)
        synced.history.extend(balancer.history)
        return synced

    def append(self, means: torch.Tensor) -> None:
        if dist.is_initialized() and dist.get_world_size() > 1:
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
            means = means.to(device, copy=True)  # NCCL moves CUDA tensors only
            dist.broadcast(means, src=0)
            means = means.cpu()
        super().append(means)


# ---------------------------------------------------------------------------------------------
# The trainer


SUMMED_LOGS = ("loss/generator", "loss/critic")  # each rank logs its share of the global-batch loss


class DistributedDistiller(Distiller):
    """The single-process `Distiller`, sharded over the ranks of `cluster` with FSDP2."""

    def __init__(self, config: dict, run_dir: Path, cluster: Cluster, reweighter=None, **kwargs) -> None:
        self.cluster = cluster
        super().__init__(config, run_dir, reweighter, device=cluster.device, mesh=cluster.mesh, **kwargs)
        self.local_batch = self.check_batch()
        if self.reweighter is not None and hasattr(self.reweighter, "balancer"):
            self.reweighter.balancer = SyncedAxisBalancer.like(self.reweighter.balancer)

    def place(self, mesh=None) -> None:
        """Keep a whole copy of the EMA on rank 0 (host memory) for evaluation and export, then shard everything."""
        self.ema_full = copy.deepcopy(self.ema) if self.cluster.is_main else None
        if self.ema_full is not None and is_meta(self.ema_full):
            self.ema_full.to_empty(device="cpu")  # filled by each gather (whole_ema), before anything reads it
        super().place(mesh)
        if self.ema_full is not None and self.plans(sharded=True)["ema"].precision == "bf16":  # LoRA's bf16 bases
            autocast_forward(self.ema_full, self.device.type, torch.bfloat16, output_dtype=torch.float32)

    def check_batch(self) -> int:
        """This rank's share of the global batch; micro-batches are cut from it."""
        b, w, m = self.s.batch_size, self.cluster.world_size, self.s.micro_batch_size
        if b % w:
            raise ValueError(f"train.batch_size={b} does not split over {w} ranks; use a multiple of {w}")
        local = b // w
        if local < m:
            log.info("micro-batch %d is larger than the %d samples per rank; using %d", m, local, local)
            self.s.micro_batch_size = m = local
        if local % m:
            raise ValueError(f"{local} samples per rank (batch_size {b} over {w} ranks) is not a multiple of "
                             f"train.micro_batch_size={m}; pick a divisor of {local}")
        if m % self.s.prompt_repeats:
            raise ValueError(f"train.prompt_repeats={self.s.prompt_repeats} does not divide the {m}-sample "
                             "micro-batch of each rank; a prompt's rollouts must share one")
        return local

    def micro_batches(self) -> list[range]:
        """This rank's share of the global batch, as global sample indices (keys of the noise generators).

        Its j-th micro-batch is global micro-batch j·W + r, so the ranks' j-th micro-batches are the ones
        a single process would run one after the other (the order the reward balancer sees them in).
        """
        m, w, r = self.s.micro_batch_size, self.cluster.world_size, self.cluster.rank
        return [range((j * w + r) * m, (j * w + r + 1) * m) for j in range(self.local_batch // m)]

    def train_step(self, step: int) -> dict[str, float]:
        return reduce_logs(super().train_step(step))

    # -- checkpoints -----------------------------------------------------------------------

    def optimized(self) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
        """Each optimizer with the module it trains (DCP keys optimizer state by parameter name)."""
        modules = self.modules()
        out = {}
        for name, opt in self.optimizers().items():
            first = opt.param_groups[0]["params"][0]
            owner = [m for m in modules.values() if any(first is p for p in m.parameters())]
            if not owner:
                raise RuntimeError(f"optimizer {name} trains none of the modules {sorted(modules)}")
            out[name] = (owner[0], opt)
        return out

    @property
    def is_main(self) -> bool:
        return self.cluster.is_main

    @property
    def progress_label(self) -> str:
        return f"distill ×{self.cluster.world_size}"

    def evaluation_view(self):
        return self.whole_ema()

    def save(self) -> None:
        save_sharded_state(self.run_dir, self.step, self.modules(), self.optimized(), self.extra_state())

    def resume(self) -> bool:
        """Continue from the latest checkpoint: a sharded one (any rank count) or a single-process one."""
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            return False
        load = load_sharded_state if is_sharded_checkpoint(ckpt) else load_full_state
        state = load(ckpt, self.modules(), self.optimized())
        self.step = state["step"]
        self.load_extra_state(state)
        log.info("resumed %s at step %d on %d ranks", ckpt, self.step, self.cluster.world_size)
        return True

    @contextlib.contextmanager
    def whole_ema(self):
        """Collective: gather the EMA to rank 0, where `self.ema` is the whole model inside the block."""
        full = get_model_state_dict(self.ema, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        sharded = self.ema
        if self.cluster.is_main:
            self.ema_full.load_state_dict(full)
            self.ema = self.ema_full.to(self.cluster.device)
        try:
            yield self.cluster.is_main
        finally:
            if self.cluster.is_main:
                self.ema_full.to("cpu")
            self.ema = sharded
            dist.barrier()

    def export(self) -> Path:
        """Rank 0 writes RUN_DIR/student.safetensors from the gathered EMA (collective)."""
        with self.whole_ema() as main:
            if main:
                super().export()
        return self.run_dir / "student.safetensors"


def reduce_logs(logs: dict[str, float]) -> dict[str, float]:
    """Global-batch logs: the losses (each rank's share) summed over ranks, the rest averaged.

    A single process averages the other logs over its micro-batches; every rank runs as many, so the
    mean over ranks is the same mean. The reweighter's logs are already of the global batch (the pre-pass
    gathers it), equal on every rank, so their mean is themselves.
    """
    world = dist.get_world_size()
    if world == 1:
        return logs
    keys = sorted(logs)
    total = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(total)
    return {k: float(total[i]) if k in SUMMED_LOGS else float(total[i] / world) for i, k in enumerate(keys)}


# ---------------------------------------------------------------------------------------------
# The loop


def distill_distributed(config: dict, run_dir: Path, resume: bool = False, reweighter=None, evaluator=None) -> Path:
    """`distill()` over the ranks of a torchrun job: same loop, files and logs from rank 0 only."""
    run_dir = Path(run_dir)
    ds = DistributedSettings.from_dict(config.get("distributed"))
    cluster = init_cluster(ds.backend)
    try:
        if cluster.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        d = DistributedDistiller(config, run_dir, cluster, reweighter)
        log.info("distilling on %d ranks (%s), %d samples per rank, precision %s", cluster.world_size,
                 cluster.device, d.local_batch, ds.mixed_precision)
        return run_loop(d, resume, evaluator)
    finally:
        cluster.close()


def dry_run_distributed(config: dict) -> dict[str, float]:
    """One sharded training step of a dry-run config (tiny random weights of the paper-scale classes)."""
    ds = DistributedSettings.from_dict(config.get("distributed"))
    cluster = init_cluster(ds.backend)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return DistributedDistiller(config, Path(tmp), cluster, dry_run=True).train_step(0)
    finally:
        cluster.close()
