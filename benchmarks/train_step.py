"""Wall time of one distillation step, split into its parts; DMD and Stream-R1 side by side.

Parts of a generator step: rollout (self-forcing, with grad), real score (teacher with CFG),
fake score (critic), reward pass (Stream-R1 only: decode, reward forward, per-axis saliency),
generator backward + optimizer step. A critic step: rollout without grad + critic update.
Both configurations run in one process on the same inputs, interleaved, so the ratio is what to quote.

    python benchmarks/train_step.py --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from stream_r1.common.config import load_config
from stream_r1.distill.dmd import critic_flow_loss, dmd_elementwise_loss, dmd_gradient
from stream_r1.distill.rollout import self_forcing_rollout
from stream_r1.distill.trainer import PHASE_CRITIC, PHASE_GENERATOR, Distiller, sample_generators


@contextmanager
def clock(times: dict[str, list[float]], key: str):
    start = time.perf_counter()
    yield
    times.setdefault(key, []).append(time.perf_counter() - start)


def timed_step(d: Distiller, step: int, times: dict[str, list[float]]) -> None:
    """One generator update and one critic update of `d`, each part timed."""
    prompts, exit_step = d.step_prompts(step)
    n = len(prompts)
    gens = sample_generators(d.s.seed, step, PHASE_GENERATOR, range(n))
    cond, uncond = d.text(prompts), d.text([""] * n)
    with clock(times, "total"):
        with clock(times, "rollout"):
            x = self_forcing_rollout(d.generator, d.latent_shape(n), d.sigmas, cond, exit_step, gens)
        with clock(times, "real+fake score"):
            g, _ = dmd_gradient(x, d.teacher, d.critic, cond, uncond, d.dmd, gens)
        w_inter, w_intra = torch.ones(n), torch.ones_like(x[:, :1])
        if d.reweighter is not None:
            with clock(times, "reward pass"):
                w_inter, w_intra, _ = d.reweighter(x.detach(), prompts, step)
        with clock(times, "generator backward+step"):
            per_sample = (w_intra * dmd_elementwise_loss(x, g)).mean(dim=(1, 2, 3, 4))
            d.opt_g.zero_grad(set_to_none=True)
            ((w_inter * per_sample).sum() / n).backward()
            d.opt_g.step()
        with clock(times, "critic update"):
            cg = sample_generators(d.s.seed, step, PHASE_CRITIC, range(n))
            with torch.no_grad():
                xc = self_forcing_rollout(d.generator, d.latent_shape(n), d.sigmas, cond, exit_step, cg, grad=False)
            d.opt_c.zero_grad(set_to_none=True)
            critic_flow_loss(d.critic, xc, cond, d.dmd, cg).backward()
            d.opt_c.step()


def split_table(name: str, times: dict[str, list[float]]) -> list[str]:
    total = statistics.median(times["total"])
    rows = [f"| {name} | {k} | {1000 * statistics.median(v):.0f} | {100 * statistics.median(v) / total:.0f}% |"
            for k, v in times.items() if k != "total"]
    return rows + [f"| {name} | **total** | **{1000 * total:.0f}** | 100% |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dmd-config", default="toy-dmd")
    parser.add_argument("--stream-r1-config", default="toy-stream-r1")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override both configs, e.g. student_init=toy-teacher before toy-ode-init ships")
    parser.add_argument("--out", default="docs/benchmarks")
    args = parser.parse_args()
    configs = {"DMD": load_config(args.dmd_config, args.set)}
    try:
        configs["Stream-R1"] = load_config(args.stream_r1_config, args.set)
    except Exception as err:  # the Stream-R1 config may not exist yet in an older checkout
        print(f"skipping Stream-R1: {err}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: Distiller(cfg, Path(tmp) / name) for name, cfg in configs.items()}
        times: dict[str, dict[str, list[float]]] = {name: {} for name in runs}
        for d in runs.values():  # warm-up
            timed_step(d, 0, {})
        for step in range(1, args.steps + 1):  # interleaved so drift hits both alike
            for name, d in runs.items():
                timed_step(d, step, times[name])
    lines = ["| config | part | median ms | share |", "|---|---|---|---|"]
    for name, t in times.items():
        lines += split_table(name, t)
    if "Stream-R1" in times:
        med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
        ratio = med["Stream-R1"]["total"] / med["DMD"]["total"]
        every = runs["DMD"].s.generator_every
        cycle = {n: m["total"] + (every - 1) * m["critic update"] for n, m in med.items()}
        amortised = cycle["Stream-R1"] / cycle["DMD"]
        lines.append(f"\nStream-R1 / DMD, a step with both updates: **{ratio:.3f}x**; averaged over a "
                     f"{every}-step cycle (generator every {every}th step): **{amortised:.3f}x**")
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    text = f"Machine: {machine}; batch {runs['DMD'].s.batch_size}, {args.steps} timed steps each\n\n" + "\n".join(lines)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_step.md").write_text(text + "\n")
    (out / "train_step.json").write_text(json.dumps(times, indent=1))
    print(text)


if __name__ == "__main__":
    main()
