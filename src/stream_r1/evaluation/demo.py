"""`stream-r1 demo`: the main job on the toy world, end to end, with a short report.

Distils a streaming student with the full Stream-R1 method (`configs/toy-stream-r1.yaml`) from the shipped
teacher, ODE-initialised student and toy reward model; then streams held-out-prompt videos with it, scores
them with ToyBench beside ground truth and the shipped students, and writes RUN_DIR/report.md with MP4s,
frame strips, the Intra-Perplexity weight maps and training curves. Rerunning resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from ..common.config import load_config
from ..common.weights import SHORT_NAMES, WEIGHTS_DIR
from ..generation.generate import generate_to_dir
from ..generation.pipeline import VideoPipeline
from ..runstate.train_state import read_jsonl
from .evaluate import evaluate_checkpoint, ground_truth_uint8, markdown_table, save_strip

log = logging.getLogger(__name__)

SAMPLE_PROMPTS = [
    "a red circle moving right on a black background",
    "a yellow triangle moving up quickly on a gray background",
    "a blue square moving left slowly on a white background",
]
SHIPPED_STUDENTS = ("toy-dmd", "toy-stream-r1")
CURVES = (  # (panel title, metric keys) drawn from the run's metrics.jsonl
    ("toy reward of the rollouts (z-score)", ("reward/vq", "reward/mq", "reward/ta")),
    ("Inter-Reliability weights exp(β·r)", ("inter/w_min", "inter/w_mean", "inter/w_max")),
    ("adaptive balance λ per axis", ("balance/lambda_vq", "balance/lambda_mq", "balance/lambda_ta")),
    ("ToyBench of the EMA student (16 held-out videos)", ("toybench/vq", "toybench/mq", "toybench/ta")),
)


def plot_curves(rows: list[dict], path: Path) -> None:
    """Training curves of the reweighting (rewards, inter weights, balance) and of ToyBench, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.2))
    for ax, (title, keys) in zip(axes, CURVES, strict=True):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=key.split("/")[-1], marker="." if len(pts) < 20 else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(
    out: Path, per_prompt: int = 1, seed: int = 0, config: str = "toy-stream-r1", overrides: list[str] | None = None
) -> Path:
    """Distil with Stream-R1, evaluate, write samples and the report; returns the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from ..distill.launch import distill

    cfg = load_config(config, overrides or [])
    run_dir = out / "distill"
    log.info("distilling a streaming student with %s into %s (resumes if interrupted)", config, run_dir)
    start = time.perf_counter()
    student = distill(cfg, run_dir, resume=True)
    minutes = (time.perf_counter() - start) / 60

    log.info("scoring the new student on the held-out prompts")
    rows, results = {}, {}
    r = evaluate_checkpoint(str(student), "heldout", per_prompt, seed)
    rows["this run (Stream-R1)"] = r["model"]
    results["this run"] = {k: v for k, v in r.items() if not k.startswith("_")}
    pick = slice(None, None, max(1, len(r["_videos"]) // 8))
    save_strip(out / "student-heldout.png", r["_videos"][pick][:8])
    save_strip(out / "ground-truth-heldout.png", ground_truth_uint8(r["_prompts"][pick][:8], seed))
    for name in SHIPPED_STUDENTS:
        if (WEIGHTS_DIR / SHORT_NAMES[name]).exists():
            shipped = evaluate_checkpoint(name, "heldout", per_prompt, seed)
            rows[f"shipped {name}"] = shipped["model"]
            results[name] = {k: v for k, v in shipped.items() if not k.startswith("_")}

    rows["ground truth"] = r["ground_truth"]
    generate_to_dir(VideoPipeline.from_checkpoint(str(student)), SAMPLE_PROMPTS, 12, seed, out / "samples")
    grids = sorted((run_dir / "samples").glob("step_*.png"))
    if grids:
        shutil.copyfile(grids[-1], out / "weight-maps.png")
    plot_curves(read_jsonl(run_dir / "metrics.jsonl"), out / "curves.png")

    ratio = r["ratio"]
    report = out / "report.md"
    report.write_text(
        "# stream-r1 demo: Stream-R1 on the toy world\n\n"
        f"Distilled `{student}` with `{config}` in {minutes:.1f} min of this invocation "
        f"(from the shipped `toy-teacher`, `toy-ode-init` and `toy-reward`).\n\n"
        f"## ToyBench, {r['videos']} held-out videos\n\n" + markdown_table(rows) + "\n\n"
        f"Ratio to ground truth: VQ {ratio['vq']:.3f}, MQ {ratio['mq']:.3f}, TA {ratio['ta']:.3f}; "
        f"{r['seconds_per_video'] * 1000:.0f} ms per video (batch 32).\n\n"
        "## Pictures\n\n"
        "- `weight-maps.png`: the last evaluation's sample grid — six student videos, then for three rollouts of "
        "the last generator step: the decoded rollout, its fused reward saliency, and the Intra-Perplexity "
        "weight W_intra (inferno: bright = more weight).\n"
        "- `curves.png`: per-axis reward, Inter-Reliability weights, balance λ and ToyBench over training.\n"
        "- `student-heldout.png` beside `ground-truth-heldout.png`: the same held-out prompts and seeds.\n"
        f"- `samples/`: MP4 + npz for {len(SAMPLE_PROMPTS)} prompts.\n"
        f"- TensorBoard: `tensorboard --logdir {run_dir / 'tb'}`.\n\n"
        "![weight maps](weight-maps.png)\n\n![curves](curves.png)\n"
    )
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return report
