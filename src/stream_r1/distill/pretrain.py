"""Teacher pretraining on the toy world: flow matching with shifted sigmas and CFG dropout.

Data is rendered on the fly from a generator seeded by (seed, step), so a resumed run sees exactly
the batches an uninterrupted one would have seen. Rendering and every random draw stay on the CPU;
the batch then moves to the config's `device` (the model trains there, under autocast for a reduced
`dtype`), so a seed gives the same batches on every device.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..common.config import ConfigError
from ..common.device import autocast, resolve_device, resolve_dtype
from ..diffusion import flow
from ..models.codec import SpaceToDepthCodec
from ..models.dit import DiT, DiTConfig
from ..models.dit_io import load_dit, save_dit
from ..models.text import ToyTextEncoder
from ..runstate.train_state import latest_checkpoint, load_training_state, save_training_state
from ..toyworld.prompts import split_prompts
from ..toyworld.render import (
    FRAME_SIZE,
    LONG_HORIZON,
    TOY_WORLD,
    WORLDS,
    check_world,
    sample_videos,
    sample_world_videos,
)
from .ema import make_ema, update_ema, warmup_decay

log = logging.getLogger(__name__)


def batch_for_step(seed: int, step: int, batch_size: int, cfg_dropout: float, world: str = TOY_WORLD):
    """Prompts (with CFG dropout applied) and rendered videos of one training step.

    In the long world each 12-frame window starts anywhere and sits at a uniform phase of a long trajectory.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    train = split_prompts("train")
    idx = torch.randint(len(train), (batch_size,), generator=gen)
    attrs = [train[i] for i in idx]
    if check_world(world) == TOY_WORLD:
        videos, _ = sample_videos(attrs, gen)
    else:
        videos, _ = sample_world_videos(attrs, gen, world, horizon=LONG_HORIZON)
    drop = torch.rand(batch_size, generator=gen) < cfg_dropout
    prompts = ["" if d else a.text for a, d in zip(attrs, drop, strict=True)]
    return prompts, videos, gen


def shift_at(tcfg: dict, step: int) -> float:
    """The training-time shift at `step`: `shift`, or the last `shift_schedule` entry [from_step, shift] reached."""
    shift = tcfg["shift"]
    for from_step, value in tcfg.get("shift_schedule") or []:
        if step >= from_step:
            shift = value
    return shift


def lr_at(tcfg: dict, step: int) -> float:
    """The learning rate at `step`: linear warmup to `lr`, then the last `lr_schedule` entry [from_step, lr] reached."""
    lr = tcfg["lr"]
    for from_step, value in tcfg.get("lr_schedule") or []:
        if step >= from_step:
            lr = value
    return lr * min(1.0, (step + 1) / tcfg["warmup_steps"])


def teacher_metadata(config: dict, step: int) -> dict:
    """What `generate` needs besides the weights: codec, frame size and default sampler (and a non-default world)."""
    meta = {"codec": dict(config["codec"]), "frame_size": FRAME_SIZE, "sampler": dict(config["sampler"]), "step": step}
    if config.get("world", TOY_WORLD) != TOY_WORLD:
        meta["world"] = config["world"]
    return meta


def trainable_parameters(model: torch.nn.Module, prefixes: list[str] | None) -> list[torch.nn.Parameter]:
    """The parameters to train: all, or only those whose names start with one of `prefixes` (the rest frozen).

    Freezing the transformer lets a stage train a small added module (e.g. `refine.`) at a fraction of the cost.
    """
    if not prefixes:
        return list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unknown:
        raise ValueError(f"train.trainable {unknown} matches no parameter; use prefixes of names like {names[0]!r}")
    chosen = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(tuple(prefixes)))
        if param.requires_grad:
            chosen.append(param)
    return chosen


def pretrain(config: dict, out: Path, resume: bool = False) -> Path:
    """Train the bidirectional teacher; returns the path of the final EMA weights."""
    out = Path(out)
    tcfg = config["train"]
    world = config.get("world", TOY_WORLD)
    if world not in WORLDS:
        raise ConfigError(f"world: {world!r} is not a toy world; set world to one of {list(WORLDS)}")
    model_cfg = DiTConfig.from_dict({**config["model"], "causal": False})
    torch.manual_seed(tcfg["seed"])
    model = DiT(model_cfg)
    if tcfg.get("init_from"):
        init, _ = load_dit(tcfg["init_from"])
        missing, unexpected = model.load_state_dict(init.state_dict(), strict=False)
        new_parts = ("frame_embedding.", "refine.")  # zero-initialised additions may be missing from the source
        if unexpected or any(not k.startswith(new_parts) for k in missing):
            raise ValueError(f"init_from {tcfg['init_from']} does not fit: missing {missing}, unexpected {unexpected}")
        log.info("initialised the teacher from %s", tcfg["init_from"])
    device, dtype = resolve_device(config.get("device", "cpu")), resolve_dtype(config.get("dtype"))
    model.to(device)
    params = trainable_parameters(model, tcfg.get("trainable"))
    ema = make_ema(model)
    opt = torch.optim.AdamW(
        params, lr=tcfg["lr"], betas=tuple(tcfg["betas"]), weight_decay=tcfg["weight_decay"]
    )
    step = 0
    ckpt = latest_checkpoint(out) if resume else None
    if resume and ckpt is None:
        log.warning("no checkpoint in %s; starting a fresh run", out)
    if ckpt is not None:
        step = load_training_state(ckpt, {"model": model, "ema": ema}, {"optimizer": opt})["step"]
        log.info("resumed from %s at step %d", ckpt, step)
    codec = SpaceToDepthCodec(config["codec"]["factor"])
    text = ToyTextEncoder(model_cfg.text_dim)
    writer = SummaryWriter(str(out / "tb"))
    total = tcfg["steps"]
    bar = tqdm(total=total, initial=step, desc="pretrain teacher", dynamic_ncols=True)
    t0, start_step = time.time(), step
    while step < total:
        lr = lr_at(tcfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        prompts, videos, gen = batch_for_step(
            tcfg["seed"], step, tcfg["batch_size"], tcfg["cfg_dropout"], world
        )
        x = codec.encode(videos)
        noise = torch.randn(x.shape, generator=gen)
        sigma = flow.sample_train_sigma(x.shape[0], shift_at(tcfg, step), gen)
        x, noise, sigma = x.to(device), noise.to(device), sigma.to(device)
        x_t = flow.add_noise(x, noise, sigma)
        with autocast(device, dtype):
            pred = model(x_t, flow.timestep(sigma), text(prompts).to(device)).float()
        loss = (pred - flow.flow_target(x, noise)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, tcfg["grad_clip"])
        opt.step()
        update_ema(ema, model, warmup_decay(step, tcfg["ema_decay"]))
        step += 1
        bar.update(1)
        if step % tcfg["log_every"] == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", it_s=f"{(step - start_step) / max(time.time() - t0, 1e-9):.2f}")
            writer.add_scalar("pretrain/loss", loss.item(), step)
            writer.add_scalar("pretrain/grad_norm", grad_norm.item(), step)
            writer.add_scalar("pretrain/lr", lr, step)
        if step % tcfg["checkpoint_every"] == 0 or step == total:
            save_training_state(out, step, {"model": model, "ema": ema}, {"optimizer": opt}, {})
            save_dit(out / "teacher.safetensors", ema, teacher_metadata(config, step))
    bar.close()
    writer.close()
    return out / "teacher.safetensors"
