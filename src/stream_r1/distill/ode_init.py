"""ODE-regression initialisation of the causal student (docs/method.md §2.3).

1. The teacher samples deterministic ODE trajectories (Euler, CFG) on a grid that contains the
   student's denoising levels; the latents at those levels and the final x0 are recorded.
2. The causal student, started from the teacher's weights, learns to jump from each recorded level
   straight to the trajectory's x0, chunk by chunk, with the clean x0 of earlier chunks in its KV cache
   (the context it sees at inference time).
Both run on the config's `device` (under autocast for a reduced `dtype`); noise and batch draws stay on
CPU generators, and the trajectory set is kept on the CPU, so a seed gives the same run on every device.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..common.device import autocast, resolve_device, resolve_dtype
from ..common.weights import load_state_dict, save_state_dict
from ..diffusion import flow
from ..diffusion.sampler import denoising_sigmas, guided_flow, predict_x0, write_cache
from ..models.codec import SpaceToDepthCodec
from ..models.dit import DiT
from ..models.dit_io import load_dit, save_dit
from ..models.text import ToyTextEncoder
from ..runstate.train_state import latest_checkpoint, load_training_state, save_training_state
from ..toyworld.prompts import split_prompts
from ..toyworld.render import FRAME_SIZE, NUM_FRAMES

log = logging.getLogger(__name__)


def teacher_grid(student_sigmas: torch.Tensor, steps: int, shift: float) -> torch.Tensor:
    """A decreasing σ grid of about `steps` Euler steps that passes through every student level."""
    grid = torch.cat([flow.sampling_sigmas(steps, shift), student_sigmas])
    return torch.unique(grid.round(decimals=6)).flip(0)


@torch.no_grad()
def ode_trajectories(
    teacher: DiT,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    noise: torch.Tensor,
    student_sigmas: torch.Tensor,
    steps: int,
    shift: float,
    guidance: float,
) -> torch.Tensor:
    """Latents at each student level plus the final x0: [B, K + 1, C, F, h, w]."""
    grid = teacher_grid(student_sigmas.cpu(), steps, shift).to(noise.device)
    wanted = {round(float(s), 6) for s in student_sigmas}
    x, saved = noise, []
    b = x.shape[0]
    for s, s_next in zip(grid[:-1], grid[1:], strict=True):
        if round(float(s), 6) in wanted:
            saved.append(x)
        x = x + (s_next - s) * guided_flow(teacher, x, flow.timestep(s).expand(b), cond, uncond, guidance)
    return torch.stack([*saved, x], dim=1)


def build_dataset(config: dict, teacher: DiT, text: ToyTextEncoder, sigmas: torch.Tensor, shape,
                  device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    """Trajectories for `data.trajectories` seeded training prompts, in batches, with a progress bar (on the CPU)."""
    dcfg = config["data"]
    n, bs = dcfg["trajectories"], dcfg["batch_size"]
    gen = torch.Generator().manual_seed(dcfg["seed"])
    train = split_prompts("train")
    idx = torch.randint(len(train), (n,), generator=gen)
    prompts = [train[i].text for i in idx]
    trajs = []
    for start in tqdm(range(0, n, bs), desc="ode-init: teacher trajectories", dynamic_ncols=True):
        batch = prompts[start : start + bs]
        noise = torch.randn((len(batch), *shape[1:]), generator=gen).to(device)
        with autocast(device, dtype):
            trajs.append(
                ode_trajectories(teacher, text(batch).to(device), text([""] * len(batch)).to(device), noise, sigmas,
                                 dcfg["teacher_steps"], config["shift"], config["guidance"]).float().cpu()
            )
    return {"trajectories": torch.cat(trajs), "prompt_index": idx}


def regression_loss(student: DiT, traj: torch.Tensor, cond: torch.Tensor, sigmas: torch.Tensor,
                    levels: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the student's x0 from level levels[c] of chunk c, clean past in the cache."""
    fpc = student.cfg.frames_per_chunk
    target = traj[:, -1]
    cache = student.new_cache()
    losses = []
    for c, start in enumerate(range(0, target.shape[2], fpc)):
        k = int(levels[c])
        x_k = traj[:, k, :, start : start + fpc]
        pred = predict_x0(student, x_k, sigmas[k], cond, cache)
        losses.append((pred - target[:, :, start : start + fpc]).pow(2).mean())
        write_cache(student, target[:, :, start : start + fpc], cond, cache)
    return torch.stack(losses).mean()


def ode_init(config: dict, run_dir: Path, resume: bool = False) -> Path:
    """Build (or reuse) the trajectory set, regress the causal student on it, export it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tcfg = config["train"]
    device, dtype = resolve_device(config.get("device", "cpu")), resolve_dtype(config.get("dtype"))
    teacher, extra = load_dit(config["teacher"])
    teacher.requires_grad_(False).eval().to(device)
    codec = SpaceToDepthCodec(extra.get("codec", {}).get("factor", 1))
    frame_size = extra.get("frame_size", FRAME_SIZE)
    text = ToyTextEncoder(teacher.cfg.text_dim)
    sigmas = denoising_sigmas(config["denoising_timesteps"], config["shift"])
    f = codec.space_factor
    shape = (1, codec.latent_channels, NUM_FRAMES // codec.time_factor, frame_size // f, frame_size // f)
    data_path = run_dir / "trajectories.safetensors"
    if data_path.exists():
        data, _ = load_state_dict(data_path)
    else:
        data = build_dataset(config, teacher, text, sigmas, shape, device, dtype)
        save_state_dict(data_path, data, {"format": "stream-r1-ode-trajectories"})
    trajs, prompt_index = data["trajectories"], data["prompt_index"]
    prompts = [p.text for p in split_prompts("train")]

    torch.manual_seed(tcfg["seed"])
    student, _ = load_dit(config["teacher"], causal=True, **config.get("student", {}))
    student.to(device)
    del teacher  # the trajectories are all the student learns from
    opt = torch.optim.AdamW(student.parameters(), lr=tcfg["lr"], betas=tuple(tcfg["betas"]))
    step = 0
    ckpt = latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        step = load_training_state(ckpt, {"student": student}, {"optimizer": opt})["step"]
    writer = SummaryWriter(str(run_dir / "tb"))
    bar = tqdm(total=tcfg["steps"], initial=step, desc="ode-init: regression", dynamic_ncols=True)
    t0 = time.time()
    n_chunks = shape[2] // student.cfg.frames_per_chunk
    while step < tcfg["steps"]:
        g = torch.Generator().manual_seed(tcfg["seed"] * 1_000_003 + step)
        idx = torch.randint(len(trajs), (tcfg["batch_size"],), generator=g)
        levels = torch.randint(len(sigmas), (n_chunks,), generator=g)
        cond = text([prompts[i] for i in prompt_index[idx]]).to(device)
        with autocast(device, dtype):
            loss = regression_loss(student, trajs[idx].to(device), cond, sigmas.to(device), levels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), tcfg["grad_clip"])
        opt.step()
        step += 1
        bar.update(1)
        if step % tcfg["log_every"] == 0:
            writer.add_scalar("ode_init/loss", loss.item(), step)
            bar.set_postfix(loss=f"{loss.item():.4f}", it_s=f"{(bar.n - bar.initial) / (time.time() - t0):.2f}")
        if step % tcfg["checkpoint_every"] == 0 or step == tcfg["steps"]:
            save_training_state(run_dir, step, {"student": student}, {"optimizer": opt}, {})
    bar.close()
    writer.close()
    path = run_dir / "student.safetensors"
    meta = {
        "codec": {"factor": codec.space_factor},
        "frame_size": frame_size,
        "sampler": {"shift": config["shift"], "denoising_timesteps": list(config["denoising_timesteps"])},
        "step": step,
        **({"world": extra["world"]} if "world" in extra else {}),  # a long-world teacher's student streams there
    }
    save_dit(path, student, meta)
    return path
