"""Which initialisation fits a small critic best: its flow-matching loss on the student's own rollouts.

The critic of DMD must model the generator's distribution (docs/method.md §2.2); at step 0 of distillation
the better start is the candidate with the lower critic loss on the student's samples. Candidates (issue 20):
teacher blocks 0, 2, 5 bidirectional, and the ODE-init student's weights with causal attention off; the full
teacher is printed for reference. Training prompts only; ToyBench is not used.

    python tools/critic_init_probe.py STUDENT.safetensors [--layers 0 2 5] [--videos 32] [--draws 8]
"""

from __future__ import annotations

import argparse

import torch

from stream_r1.diffusion.sampler import denoising_sigmas
from stream_r1.distill.dmd import DMDSettings, critic_flow_loss
from stream_r1.distill.rollout import self_forcing_rollout
from stream_r1.models.dit_io import load_dit
from stream_r1.models.text import ToyTextEncoder
from stream_r1.toyworld.prompts import split_prompts


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("student")
    p.add_argument("--teacher", default="toy-teacher")
    p.add_argument("--layers", type=int, nargs="+", default=[0, 2, 5])
    p.add_argument("--videos", type=int, default=32)
    p.add_argument("--draws", type=int, default=8, help="σ and noise draws per video")
    p.add_argument("--frames", type=int, default=12)
    args = p.parse_args()
    student, extra = load_dit(args.student)
    student.eval()
    text = ToyTextEncoder(student.cfg.text_dim)
    train = split_prompts("train")
    g = torch.Generator().manual_seed(0)
    prompts = [train[int(i)].text for i in torch.randint(len(train), (args.videos,), generator=g)]
    cond = text(prompts)
    sigmas = denoising_sigmas(extra["sampler"]["denoising_timesteps"], extra["sampler"]["shift"])
    size = extra.get("frame_size", 16)
    shape = (args.videos, student.cfg.in_channels, args.frames, size, size)
    x = self_forcing_rollout(student, shape, sigmas, cond, len(sigmas) - 1, g, grad=False)
    candidates = {
        f"teacher blocks {args.layers}": lambda: load_dit(args.teacher, layers=args.layers)[0],
        "ODE-init student, causal off": lambda: load_dit(args.student, causal=False)[0],
        "full teacher (reference)": lambda: load_dit(args.teacher)[0],
    }
    for name, build in candidates.items():
        critic = build().eval()
        losses = []
        for d in range(args.draws):
            gens = [torch.Generator().manual_seed(1000 * d + i) for i in range(args.videos)]
            losses.append(critic_flow_loss(critic, x, cond, DMDSettings(), gens).item())
        t = torch.tensor(losses)
        params = sum(q.numel() for q in critic.parameters())
        print(f"{name:34s} params {params / 1e6:.2f}M  critic loss {t.mean():.4f} ± {t.std() / len(t) ** 0.5:.4f}")


if __name__ == "__main__":
    main()
