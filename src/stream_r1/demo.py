"""`stream-r1 demo`: the main job on the toy world, end to end, with a short report.

Generates held-out-prompt videos with every shipped checkpoint (the bidirectional teacher samples the
whole clip; streaming students go chunk by chunk through the KV cache), scores them with ToyBench
next to ground-truth renders, and writes RUN_DIR/report.md with MP4s and frame strips.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .checkpoint import GENERATORS, SHORT_NAMES, WEIGHTS_DIR
from .evaluate import evaluate_checkpoint, ground_truth_uint8, markdown_table, save_strip
from .generate import generate_to_dir
from .pipeline import VideoPipeline

log = logging.getLogger(__name__)

SAMPLE_PROMPTS = [
    "a red circle moving right on a black background",
    "a yellow triangle moving up quickly on a gray background",
    "a blue square moving left slowly on a white background",
]


def run_demo(out: Path, per_prompt: int = 2, seed: int = 0) -> Path:
    """Evaluate every shipped checkpoint on the held-out prompts and write the report; returns its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in GENERATORS if (WEIGHTS_DIR / SHORT_NAMES[n]).exists()]
    if not names:
        raise FileNotFoundError(f"no shipped weights in {WEIGHTS_DIR}; reinstall the package")
    summaries, lines, results = {}, [], {}
    gt_strip = None
    for name in names:
        log.info("evaluating %s on the held-out prompts", name)
        r = evaluate_checkpoint(name, "heldout", per_prompt, seed)
        summaries[name] = r["model"]
        summaries["ground truth"] = r["ground_truth"]
        results[name] = {k: v for k, v in r.items() if not k.startswith("_")}
        save_strip(out / f"{name}-heldout.png", r["_videos"][:: max(1, len(r["_videos"]) // 8)][:8])
        if gt_strip is None:
            gt_strip = out / "ground-truth-heldout.png"
            prompts = r["_prompts"][:: max(1, len(r["_prompts"]) // 8)][:8]
            save_strip(gt_strip, ground_truth_uint8(prompts, seed))
        generate_to_dir(VideoPipeline.from_checkpoint(name), SAMPLE_PROMPTS, 12, seed, out / name)
        lines.append(f"- `{name}`: {r['seconds_per_video'] * 1000:.0f} ms per video; "
                     f"ratio to ground truth VQ {r['ratio']['vq']:.3f}, MQ {r['ratio']['mq']:.3f}, "
                     f"TA {r['ratio']['ta']:.3f}; samples in `{name}/` (MP4 + npz), strip `{name}-heldout.png`")
    report = out / "report.md"
    report.write_text(
        "# stream-r1 demo: toy world\n\n"
        f"ToyBench on {results[names[0]]['videos']} videos of the 48 held-out prompts, "
        "each model beside ground-truth renders of the same prompts:\n\n"
        + markdown_table(summaries)
        + "\n\n"
        + "\n".join(lines)
        + "\n\nGround truth strip: `ground-truth-heldout.png` (same prompts and seeds as the model strips).\n"
    )
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return report
