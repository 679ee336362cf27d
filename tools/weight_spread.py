"""What the rollout weights and the balancer did in distillation runs, read from their metrics.jsonl.

Per run: the mean over logged steps of the batch's mean / largest / smallest rollout weight (inter/w_*), the
median of largest/smallest, how often the per-axis balancer's MQ share left 1/3 (by more than 0.01), and the
global-penalty balancer's penalty (mean, largest, share of steps where it is above 0):
    python tools/weight_spread.py runs/compare-small-11/runs/*/seed_*
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def spread(metrics: Path) -> dict:
    """Summary of one run's metrics.jsonl (keys absent when the run logged no rollout weight / no λ)."""
    recs = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    out: dict = {"steps": max(r["step"] for r in recs)}
    w = [(r["inter/w_mean"], r["inter/w_max"], r["inter/w_min"]) for r in recs if "inter/w_max" in r]
    if w:
        out |= {"w_mean": statistics.mean(x[0] for x in w), "w_max": statistics.mean(x[1] for x in w),
                "w_min": statistics.mean(x[2] for x in w), "max_over_min": statistics.median(x[1] / x[2] for x in w)}
    lam = [r["balance/lambda_mq"] for r in recs if "balance/lambda_mq" in r]
    if lam:
        out |= {"lambda_mq_mean": statistics.mean(lam), "lambda_mq_min": min(lam), "lambda_mq_max": max(lam),
                "lambda_moved": sum(abs(x - 1 / 3) > 0.01 for x in lam) / len(lam)}
    penalty = [r["balance/global_penalty"] for r in recs if "balance/global_penalty" in r]
    if any(penalty):
        out |= {"penalty_mean": statistics.mean(penalty), "penalty_max": max(penalty),
                "penalty_on": sum(x > 0 for x in penalty) / len(penalty)}
    return out


def line(run: Path, s: dict) -> str:
    text = f"{run}: {s['steps']} steps"
    if "w_mean" in s:
        text += (f"; rollout weight mean {s['w_mean']:.3f}, max {s['w_max']:.2f}, min {s['w_min']:.2f},"
                 f" median max/min {s['max_over_min']:.1f}x")
    if "lambda_moved" in s and s["lambda_mq_min"] == s["lambda_mq_max"]:
        text += f"; lambda_mq fixed at {s['lambda_mq_min']:.3f}"
    elif "lambda_moved" in s:
        text += (f"; lambda_mq mean {s['lambda_mq_mean']:.3f} (range {s['lambda_mq_min']:.2f}-{s['lambda_mq_max']:.2f},"
                 f" off 1/3 on {100 * s['lambda_moved']:.0f}% of steps)")
    if "penalty_on" in s:
        text += (f"; global penalty mean {s['penalty_mean']:.3f}, max {s['penalty_max']:.3f},"
                 f" above 0 on {100 * s['penalty_on']:.0f}% of steps")
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories holding metrics.jsonl")
    for run in ap.parse_args().runs:
        if not (run / "metrics.jsonl").is_file():
            raise SystemExit(f"{run}: no metrics.jsonl; give run directories of `stream-r1 distill` (its --out)")
        print(line(run, spread(run / "metrics.jsonl")))


if __name__ == "__main__":
    main()
