"""Sharded training state: step checkpoints written with `torch.distributed.checkpoint` (DCP).

Same run-directory layout as `train_state.py` (RUN_DIR/checkpoints/step_*/ plus the `latest` pointer),
but each rank writes only its own shards, and DCP reshards on load, so a checkpoint saved by N ranks
resumes on M ranks. A DCP step directory is recognised by DCP's `.metadata` file. Modules and optimizer
states are keyed by parameter name (not by position), through `torch.distributed.checkpoint.state_dict`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..common.weights import CheckpointError, atomic_write, load_state_dict

FORMAT = "dcp"
Optimized = dict[str, tuple[nn.Module, torch.optim.Optimizer]]  # optimizer name -> (its module, optimizer)


def is_sharded_checkpoint(ckpt: Path) -> bool:
    """True for a step directory written by `save_sharded_state` (it holds DCP's metadata file)."""
    return (Path(ckpt) / ".metadata").exists()


def sharded_state(modules: dict[str, nn.Module], optimizers: Optimized) -> dict:
    """This rank's shards of every module and optimizer, keyed by name then parameter name (collective)."""
    state = {name: get_model_state_dict(m) for name, m in modules.items()}
    state.update({name: get_optimizer_state_dict(m, opt) for name, (m, opt) in optimizers.items()})
    return state


def save_sharded_state(
    run_dir: Path, step: int, modules: dict[str, nn.Module], optimizers: Optimized, state: dict, keep: int = 3
) -> Path:
    """Write one step checkpoint from every rank (collective); rank 0 commits it atomically and prunes."""
    root = Path(run_dir) / "checkpoints"
    final, tmp = root / f"step_{step:07d}", root / f".tmp_step_{step:07d}"
    rank = dist.get_rank()
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    dcp.save(sharded_state(modules, optimizers), checkpoint_id=str(tmp))
    if rank == 0:
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        info = {"step": step, "format": FORMAT, "world_size": dist.get_world_size(), **state}
        (tmp / "state.json").write_text(json.dumps(info))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        atomic_write(root / "latest", lambda p: Path(p).write_text(final.name))
        for old in sorted(root.glob("step_*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def load_sharded_state(ckpt: Path, modules: dict[str, nn.Module], optimizers: Optimized) -> dict:
    """Restore a DCP step checkpoint on any number of ranks (collective); returns its state.json."""
    state = sharded_state(modules, optimizers)
    try:
        dcp.load(state, checkpoint_id=str(ckpt))
    except Exception as err:  # DCP raises several types (CheckpointException wraps per-rank errors)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{ckpt} does not match this run's models and optimizers ({first}); "
            "resume with the config the run was started with"
        ) from err
    for name, m in modules.items():
        set_model_state_dict(m, state[name])
    for name, (m, opt) in optimizers.items():
        set_optimizer_state_dict(m, opt, state[name])
    return _finish_load(ckpt)


def load_full_state(ckpt: Path, modules: dict[str, nn.Module], optimizers: Optimized) -> dict:
    """Restore a single-process checkpoint (`train_state.py` layout) into sharded modules (collective).

    Every rank reads the whole files and keeps its own shards. Optimizer states there are keyed by
    position in the optimizer; they are re-keyed by parameter name through the optimizer's own order.
    """
    full = StateDictOptions(full_state_dict=True)
    for name, m in modules.items():
        tensors, _ = load_state_dict(Path(ckpt) / f"{name}.safetensors")
        try:
            set_model_state_dict(m, tensors, options=full)
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(
                f"{ckpt}/{name}.safetensors does not match this run's model ({str(err).splitlines()[0]}); "
                "resume with the config the run was started with"
            ) from err
    for name, (m, opt) in optimizers.items():
        plain = torch.load(Path(ckpt) / f"{name}.pt", weights_only=True)
        fqn = {p: n for n, p in m.named_parameters()}
        order = [fqn[p] for group in opt.param_groups for p in group["params"]]
        keyed = {
            "state": {order[i]: s for i, s in plain["state"].items()},
            "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in plain["param_groups"]],
        }
        set_optimizer_state_dict(m, opt, keyed, options=full)
    return _finish_load(ckpt)


def _finish_load(ckpt: Path) -> dict:
    rng = torch.load(Path(ckpt) / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    return json.loads((Path(ckpt) / "state.json").read_text())
