"""The report of `stream-r1 compare`: per-seed numbers -> intervals, paired differences, verdicts, tables, plots.

Everything here reads what the compare jobs cached (RUN_DIR/compare_eval.json, metrics.jsonl, timings);
nothing is trained or scored again, so the report is rebuilt cheaply on every invocation.
"""

from __future__ import annotations

import datetime
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import yaml

from ..common.stats import SIGN_MARKS, Interval, mean_ci, paired_difference, spearman
from ..common.weights import atomic_write
from ..runstate.train_state import read_jsonl

AXES = ("vq", "mq", "ta")
METRICS = {  # key -> column title
    "toybench/vq": "ToyBench VQ", "toybench/mq": "ToyBench MQ", "toybench/ta": "ToyBench TA",
    "toybench/total": "ToyBench total", "reward/vq": "reward VQ", "reward/mq": "reward MQ", "reward/ta": "reward TA",
}
SUBSCORE_PREFIXES = ("vq_", "mq_", "ta_")  # ToyBench detail keys that are sub-scores (the rest are checks, counts)
NEGLIGIBLE = 1e-6  # differences within ±1e-6 are float rounding (scores live in [0, 1] or are z-scores), not effects
CURVES = (  # (key, file in the run dir, what it is); the held-out lines come from the same 16 videos per point
    ("reward/vq", "metrics.jsonl", "rollouts' reward (z)"), ("reward/mq", "metrics.jsonl", "rollouts' reward (z)"),
    ("reward/ta", "metrics.jsonl", "rollouts' reward (z)"), ("inter/w_max", "metrics.jsonl", "largest inter weight"),
    ("heldout_reward/vq", "compare_curves.jsonl", "held-out reward (z), EMA"),
    ("heldout_reward/mq", "compare_curves.jsonl", "held-out reward (z), EMA"),
    ("heldout_reward/ta", "compare_curves.jsonl", "held-out reward (z), EMA"),
    ("toybench/total", "compare_curves.jsonl", "held-out ToyBench, EMA"),
    ("toybench/vq", "compare_curves.jsonl", "held-out ToyBench, EMA"),
    ("toybench/mq", "compare_curves.jsonl", "held-out ToyBench, EMA"),
    ("toybench/ta", "compare_curves.jsonl", "held-out ToyBench, EMA"),
    ("loss/dmd_unweighted", "metrics.jsonl", "unweighted DMD loss"),
)


def git_commit() -> str:
    """HEAD of the checkout this package runs from, marked when the tree has uncommitted changes."""
    here = Path(__file__).parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain"], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return sha + (" (with uncommitted changes)" if dirty else "")


def fmt(iv: Interval, digits: int = 3, signed: bool = False) -> str:
    """`mean ± half-width`; numbers too small for `digits` decimals switch to scientific notation."""
    sign = "+" if signed else ""
    tiny = 0 < max(abs(iv.mean), 0 if math.isnan(iv.half_width) else iv.half_width) < 0.5 * 10**-digits
    style = f".{digits - 1}e" if tiny else f".{digits}f"
    if math.isnan(iv.half_width):
        return f"{iv.mean:{sign}{style}} (n={iv.n})"
    return f"{iv.mean:{sign}{style}} ± {iv.half_width:{style}}"


# ---------------------------------------------------------------------------------------------
# What `compare` leaves in a run directory and in RESULTS_DIR

EVAL_FILE, CONFIG_FILE, TIME_FILE = "compare_eval.json", "compare_config.json", "compare_time.jsonl"
INVOCATIONS_FILE = "invocations.jsonl"  # RESULTS_DIR: one line per `stream-r1 compare` call (commit, jobs run)
CURVES_FILE = "compare_curves.jsonl"  # in-run held-out ToyBench and reward of the EMA student, every row alike


def train_seconds(run_dir: Path, steps: int) -> float | None:
    """Training wall time of a run: the timed segments, scaled up to all steps if one was lost to a kill."""
    path = run_dir / TIME_FILE
    if not path.exists():
        return None
    segments = read_jsonl(path)
    done = sum(s["to_step"] - s["from_step"] for s in segments)
    seconds = sum(s["seconds"] for s in segments)
    return seconds * steps / done if done else None


# ---------------------------------------------------------------------------------------------
# Numbers


def collect(s, jobs, reused: set[str]) -> dict:
    """Per row: the per-seed values of every metric, read from the cached evaluations and timings."""
    rows = {r.name: {"kind": "distilled" if r.trained else "shared checkpoint", "config": r.config, "set": r.set,
                     "model": r.model, "seeds": {}, "missing": []} for r in s.rows}
    for job in jobs:
        path = Path(job.run_dir) / EVAL_FILE
        entry = rows[job.row.name]
        if not path.exists():
            entry["missing"].append(job.seed)
            continue
        ev = json.loads(path.read_text())
        values = {f"toybench/{k}": v for k, v in ev["toybench"].items()}
        values.update({f"reward/{a}": v for a, v in ev["reward"].items()})
        detail = {k: v for k, v in ev.get("toybench_detail", {}).items() if k.startswith(SUBSCORE_PREFIXES)}
        rec = {"values": values, "subscores": detail, "videos": ev["videos"], "eval_seconds": ev.get("eval_seconds"),
               "run_dir": job.run_dir, "reused": job.label in reused}
        if job.config is not None:
            sec = train_seconds(Path(job.run_dir), job.config["train"]["steps"])
            rec["train_minutes"] = sec / 60 if sec is not None else None
            rec["steps"] = job.config["train"]["steps"]
        per_video = ev.get("per_video", {})
        rec["reliability"] = {a: spearman(per_video[f"reward/{a}"], per_video[f"toybench/{a}"]) for a in AXES
                              if len(per_video.get(f"reward/{a}", [])) > 1}
        entry["seeds"][job.seed] = rec
    return rows


def analyse(s, rows: dict) -> None:
    """Add intervals over seeds and paired differences against the baseline (in place)."""
    base = rows[s.baseline]["seeds"]
    subscores = subscore_keys(rows)
    for name, entry in rows.items():
        seeds = entry["seeds"]
        entry["metrics"] = {}
        for key in METRICS:
            vals = [seeds[k]["values"][key] for k in sorted(seeds)]
            if vals:
                entry["metrics"][key] = {**mean_ci(vals, s.confidence).as_dict(), "values": vals}
        minutes = [seeds[k]["train_minutes"] for k in sorted(seeds) if seeds[k].get("train_minutes") is not None]
        if minutes:
            entry["metrics"]["train_minutes"] = {**mean_ci(minutes, s.confidence).as_dict(), "values": minutes}
        entry["vs_baseline"], entry["subscores_vs_baseline"] = {}, {}
        if name == s.baseline or not seeds or not base:
            continue
        for key in METRICS:
            paired_into(entry["vs_baseline"], key, seeds, base, "values", s.confidence)
        for key in subscores:
            paired_into(entry["subscores_vs_baseline"], key, seeds, base, "subscores", s.confidence)


def paired_into(out: dict, key: str, seeds: dict, base: dict, field: str, confidence: float) -> None:
    """out[key] = the row's paired difference against the baseline over the seeds both have `key` in `field`."""
    a = {k: v[field][key] for k, v in seeds.items() if key in v.get(field, {})}
    b = {k: v[field][key] for k, v in base.items() if key in v.get(field, {})}
    if set(a) & set(b):
        iv = paired_difference(a, b, confidence)
        out[key] = {**iv.as_dict(), "sign": iv.sign(NEGLIGIBLE)}


def subscore_keys(rows: dict) -> list[str]:
    """ToyBench's sub-scores (e.g. `mq_freeze`, `ta_speed`) found in any evaluation, in ToyBench's order."""
    keys: dict[str, None] = {}
    for entry in rows.values():
        for rec in entry["seeds"].values():
            keys.update(dict.fromkeys(rec.get("subscores", {})))
    return list(keys)


def as_interval(d: dict) -> Interval:
    return Interval(d["mean"], d["half_width"], d["n"])


def reward_hacking(s, rows: dict) -> list[dict]:
    """Rows and axes where the reward model's score rises against the baseline but ToyBench's does not."""
    findings = []
    for name, entry in rows.items():
        vs = entry.get("vs_baseline", {})
        for axis in AXES:
            r, b = vs.get(f"reward/{axis}"), vs.get(f"toybench/{axis}")
            if r is None or b is None or r["mean"] <= NEGLIGIBLE:
                continue
            if r["sign"] > 0 and b["sign"] > 0:
                verdict = "no: the reward gain is matched by a ToyBench gain"
            elif r["sign"] > 0 and b["sign"] < 0:
                verdict = "YES: reward model says better (CI above zero), ToyBench says worse (CI below zero)"
            elif r["sign"] > 0:
                verdict = "YES (suspected): reward model says better (CI above zero), ToyBench shows no gain"
            elif b["mean"] <= NEGLIGIBLE:
                verdict = "weak sign: reward mean up, ToyBench mean not up, neither significant"
            else:
                continue
            findings.append({"row": name, "axis": axis, "reward_diff": r, "toybench_diff": b, "verdict": verdict})
    order = ("YES:", "YES (", "weak", "no:")  # the strongest evidence first
    return sorted(findings, key=lambda f: next(i for i, p in enumerate(order) if f["verdict"].startswith(p)))


def claim_verdicts(s, rows: dict) -> list[str]:
    """One sentence per row: where it is better or worse than the baseline on ToyBench; the claim's summary first."""
    lines, winners = [], []
    for r in s.rows:
        vs = rows[r.name].get("vs_baseline", {})
        if r.name == s.baseline or not vs:
            continue
        up = [METRICS[k] for k in METRICS if k.startswith("toybench") and vs.get(k, {}).get("sign", 0) > 0]
        down = [METRICS[k] for k in METRICS if k.startswith("toybench") and vs.get(k, {}).get("sign", 0) < 0]
        flat = [METRICS[k] for k in METRICS if k.startswith("toybench") and k in vs and vs[k]["sign"] == 0]
        claim = all(vs.get(f"toybench/{a}", {}).get("sign", 0) > 0 for a in AXES)
        lines.append(f"- **{r.name}** vs {s.baseline}: better on {', '.join(up) or 'nothing'}; "
                     f"worse on {', '.join(down) or 'nothing'}; no clear difference on {', '.join(flat) or 'nothing'}. "
                     f"Gains on all three ToyBench axes: **{'yes' if claim else 'no'}**.")
        if claim and r.trained:
            winners.append(r.name)
    if lines:
        lines.insert(0, "Claim under test: consistent gains over the distillation baseline on visual quality, motion "
                     "quality and text alignment. Distilled rows with all three ToyBench gains (interval above zero): "
                     f"**{', '.join(winners) or 'none'}**.\n")
    return lines


# ---------------------------------------------------------------------------------------------
# Tables


def scores_table(s, rows: dict, speed: dict) -> str:
    head = ["row", *METRICS.values(), "FPS (batch 1)", "train min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in s.rows:
        m = rows[r.name].get("metrics", {})
        cells = [fmt(as_interval(m[k])) if k in m else "—" for k in METRICS]
        fps = speed.get(r.name)
        cells.append(f"{fps['fps']:.1f}" if fps else "—")
        cells.append(fmt(as_interval(m["train_minutes"]), 1) if "train_minutes" in m else "—")
        name = f"**{r.name}** (baseline)" if r.name == s.baseline else r.name
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(s, rows: dict) -> str:
    head = ["row", *(f"Δ {t}" for t in METRICS.values())]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in s.rows:
        vs = rows[r.name].get("vs_baseline", {})
        if r.name == s.baseline or not vs:
            continue
        cells = []
        for k in METRICS:
            if k not in vs:
                cells.append("—")
                continue
            text = fmt(as_interval(vs[k]), signed=True) + SIGN_MARKS[vs[k]["sign"]]
            cells.append(f"**{text}**" if vs[k]["sign"] > 0 else text)
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def subscore_table(s, rows: dict) -> str:
    """Per ToyBench sub-score: the baseline's mean and each row's paired difference (where an axis moves, and why)."""
    others = [r for r in s.rows if r.name != s.baseline and rows[r.name].get("subscores_vs_baseline")]
    base = rows[s.baseline]["seeds"]
    if not others or not base:
        return "(no paired rows yet)"
    lines = ["| sub-score | " + s.baseline + " | " + " | ".join(f"Δ {r.name}" for r in others) + " |",
             "|---|---|" + "---|" * len(others)]
    for key in subscore_keys(rows):
        vals = [v["subscores"][key] for v in base.values() if key in v.get("subscores", {})]
        cells = []
        for r in others:
            d = rows[r.name]["subscores_vs_baseline"].get(key)
            cells.append(fmt(as_interval(d), signed=True) + SIGN_MARKS[d["sign"]] if d else "—")
        lines.append(f"| {key} | {sum(vals) / len(vals):.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed_summary(s, speed: dict) -> str:
    """How the distilled students' batch-1 speed compares with the baseline's (the 'no inference cost' claim)."""
    base = speed.get(s.baseline)
    ratios = [speed[r.name]["fps"] / base["fps"] for r in s.rows if r.trained and r.name in speed] if base else []
    if not ratios:
        return ""
    return (f"Reweighting changes only the training loss: every distilled row streams with the baseline's architecture "
            f"and sampler. Measured FPS relative to {s.baseline}: {min(ratios):.2f}–{max(ratios):.2f}.")


def speed_table(s, speed: dict) -> str:
    base = speed.get(s.baseline)
    lines = ["| row | generation | FPS (batch 1) | seconds per video | first chunk (s) | FPS / baseline |",
             "|---|---|---|---|---|---|"]
    for r in s.rows:
        sp = speed.get(r.name)
        if not sp:
            continue
        ratio = f"{sp['fps'] / base['fps']:.2f}" if base else "—"
        kind = "streamed chunk by chunk" if sp["streaming"] else "whole clip (bidirectional)"
        lines.append(f"| {r.name} | {kind} | {sp['fps']:.1f} | {sp['seconds_per_video']:.3f} | "
                     f"{sp['first_chunk_seconds']:.3f} | {ratio} |")
    return "\n".join(lines)


def reliability_table(s, rows: dict) -> str:
    """Per row and axis: Spearman ρ between the reward head and ToyBench over the row's evaluation videos."""
    lines = ["| row | " + " | ".join(f"ρ {a.upper()}" for a in AXES) + " |", "|---|" + "---|" * len(AXES)]
    for r in s.rows:
        seeds = rows[r.name]["seeds"]
        cells = []
        for a in AXES:
            vals = [v["reliability"][a] for v in seeds.values() if not math.isnan(v["reliability"].get(a, math.nan))]
            cells.append(fmt(mean_ci(vals, s.confidence), 2, signed=True) if vals else "–")
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_table(s, rows: dict) -> str:
    lines = ["| row | seed | videos | train min | eval s | reused | run dir |", "|---|---|---|---|---|---|---|"]
    for r in s.rows:
        for seed, rec in sorted(rows[r.name]["seeds"].items()):
            tm = rec.get("train_minutes")
            lines.append(f"| {r.name} | {seed} | {rec['videos']} | {f'{tm:.1f}' if tm is not None else '—'} | "
                         f"{rec['eval_seconds'] or 0:.0f} | {'yes' if rec['reused'] else 'no'} | `{rec['run_dir']}` |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bars(s, rows: dict, speed: dict, path: Path) -> None:
    """One panel per metric: a bar per row with its confidence interval; the baseline's mean dashed."""
    plt = _pyplot()
    names = [r.name for r in s.rows]
    keys = [*METRICS, "fps"]
    fig, axes = plt.subplots(2, 4, figsize=(17, 2.2 + 0.32 * len(names) * 2), sharey=True)
    for ax, key in zip(axes.flat, keys, strict=True):
        if key == "fps":
            means = [speed[n]["fps"] if n in speed else np.nan for n in names]
            errs, title = [0.0] * len(names), "frames per second, batch 1"
        else:
            ms = [rows[n].get("metrics", {}).get(key) for n in names]
            means = [m["mean"] if m else np.nan for m in ms]
            errs = [m["half_width"] if m and not math.isnan(m["half_width"]) else 0.0 for m in ms]
            title = f"{METRICS[key]} (mean ± {int(100 * s.confidence)}% CI)"
        colours = ["tab:red" if n == s.baseline else "tab:blue" for n in names]
        y = np.arange(len(names))
        ax.barh(y, means, xerr=errs if any(errs) else None, color=colours, alpha=0.75, capsize=3)
        base = means[names.index(s.baseline)]
        if not np.isnan(base):
            ax.axvline(base, color="tab:red", linestyle="--", linewidth=0.8)
        ends = [(m - e, m + e) for m, e in zip(means, errs, strict=True) if not np.isnan(m)]
        if ends and key.startswith("toybench"):  # scores live in [0, 1]: zoom onto the bars and their intervals
            ax.set_xlim(max(0.0, min(lo for lo, _ in ends) - 0.05), min(1.0, max(hi for _, hi in ends) + 0.02))
        ax.set_title(title, fontsize=9)
        ax.set_yticks(y, names, fontsize=8)
    axes.flat[0].invert_yaxis()  # the y axis is shared: one call puts the first row on top in every panel
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def row_curves(jobs, row_name: str) -> dict[str, tuple[list[int], list[float]]]:
    """Per curve key: steps and the mean over seeds of a row's logs (the last line per step wins)."""
    per_seed = []
    for job in jobs:
        if job.row.name != row_name:
            continue
        by_step: dict[str, dict[int, float]] = {}
        for key, name, _ in CURVES:
            for line in read_jsonl(Path(job.run_dir) / name):  # a resumed run logs some steps twice
                if key in line:
                    by_step.setdefault(key, {})[line["step"]] = line[key]
        per_seed.append(by_step)
    out = {}
    for key, _, _ in CURVES:
        steps = sorted({st for seed in per_seed for st in seed.get(key, {})})
        if steps:
            out[key] = (steps, [float(np.mean([seed[key][st] for seed in per_seed if st in seed.get(key, {})]))
                                for st in steps])
    return out


def plot_curves(s, jobs, path: Path) -> None:
    """Training curves of the distilled rows, mean over seeds: the rollouts' logged reward and weights, and the
    reward model and ToyBench on the same held-out videos of the EMA student."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 4, figsize=(17, 10))
    for r in s.rows:
        if not r.trained:
            continue
        curves = row_curves(jobs, r.name)
        for ax, (key, _, _) in zip(axes.flat, CURVES, strict=True):
            steps, vals = curves.get(key, ([], []))
            if steps:
                ax.plot(steps, vals, label=r.name, marker="." if len(steps) < 20 else None,
                        linewidth=2.0 if r.name == s.baseline else 1.2)
    for ax, (key, _, what) in zip(axes.flat, CURVES, strict=True):
        ax.set_title(f"{key}: {what}", fontsize=9)
        ax.set_xlabel("step")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_strip(strip: list, prompt: str, seed: int, path: Path) -> None:
    """The same prompt and noise through every row, with the saliency and W_intra each Stream-R1 row assigns."""
    from ..generation.video_io import frame_strip

    plt = _pyplot()
    lines = []
    for name, video, maps in strip:
        lines.append((name, video))
        if maps is not None:
            lines += [(f"{name}: saliency", maps[0]), (f"{name}: W_intra", maps[1])]
    if not lines:
        return
    fig, axes = plt.subplots(len(lines), 1, figsize=(12, 0.75 * len(lines) + 0.6), squeeze=False)
    for ax, (label, frames) in zip(axes[:, 0], lines, strict=True):
        ax.imshow(frame_strip([frames], scale=4))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{prompt!r}, evaluation noise of seed {seed}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def copy_weight_grids(s, jobs, out: Path) -> list[str]:
    """The last training sample grid (rollouts, saliency, W_intra) of each reweighted row's first seed."""
    copied = []
    for job in jobs:
        if job.seed != s.seeds[0] or not (job.config or {}).get("reweight", {}).get("intra", False):
            continue
        grids = sorted((Path(job.run_dir) / "samples").glob("step_*.png"))
        if grids:
            dest = out / "weight-maps" / f"{job.row.slug}.png"
            dest.parent.mkdir(exist_ok=True)
            shutil.copyfile(grids[-1], dest)
            copied.append(f"- `{dest.relative_to(out)}`: {job.row.name}, `{grids[-1].name}` of seed {job.seed}")
    return copied


# ---------------------------------------------------------------------------------------------
# The report


def write_report(s, raw: dict, out: Path, jobs, reused: set[str], speed: dict, strip: list, command: str,
                 failures: list[str], commit: str) -> Path:
    """Write results.json, results.md, bars.png, curves.png, strip.png and weight-maps/; returns results.md.

    `commit` is the code this invocation ran; RESULTS_DIR/invocations.jsonl lists every earlier one.
    """
    rows = collect(s, jobs, reused)
    analyse(s, rows)
    hacking = reward_hacking(s, rows)
    verdicts = claim_verdicts(s, rows)
    invocations = read_jsonl(out / INVOCATIONS_FILE)
    videos = len(s.eval.prompts())
    results = {"command": command, "commit": commit, "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "config": raw, "baseline": s.baseline, "confidence": s.confidence, "seeds": s.seeds,
               "videos_per_run": videos, "rows": rows, "speed": speed, "reward_hacking": hacking,
               "verdicts": verdicts, "failures": failures, "invocations": invocations}
    atomic_write(out / "results.json", lambda p: Path(p).write_text(json.dumps(results, indent=1)))
    plot_bars(s, rows, speed, out / "bars.png")
    plot_curves(s, jobs, out / "curves.png")
    plot_strip(strip, s.eval.strip_prompt, s.seeds[0], out / "strip.png")
    grids = copy_weight_grids(s, jobs, out)

    pct = int(round(100 * s.confidence))
    missing = [f"{n} seed {seed}" for n, e in rows.items() for seed in e["missing"]]
    if hacking:
        hack_lines = [f"- **{f['row']}**, {f['axis'].upper()}: "
                      f"Δ reward {fmt(as_interval(f['reward_diff']), signed=True)}, "
                      f"Δ ToyBench {fmt(as_interval(f['toybench_diff']), signed=True)} → {f['verdict']}"
                      for f in hacking]
    else:
        hack_lines = [f"- No row raises a reward-model score above {s.baseline}'s: nothing to check."]
    flagged = sorted({f["row"] for f in hacking if f["verdict"].startswith("YES")})
    hack_summary = (f"Reward hacking found (reward up, ToyBench not): {', '.join(flagged)}." if flagged else
                    "No row shows a significant reward gain without a ToyBench gain.")
    md = [
        "# stream-r1 compare: is Stream-R1 better here?", "",
        f"- command: `{command}`",
        f"- commit: `{commit}` (the code of the last invocation; every invocation that trained or evaluated "
        "something is listed under Provenance)",
        f"- date: {results['date']}",
        f"- {videos} held-out videos per (row, seed) ({s.eval.split} split, {s.eval.per_prompt} per prompt, "
        f"{s.eval.frames} frames); seeds {s.seeds}; the same prompts and evaluation noise in every row of a seed.",
        f"- intervals: mean ± {pct}% Student-t confidence interval over seeds (n − 1 degrees of freedom).",
        f"- paired differences against **{s.baseline}**: row − {s.baseline} per seed (same seed = same training "
        "prompts, rollout noise and evaluation noise), then mean ± interval; ▲ = interval above zero, ▼ = below.",
        "- ToyBench: analytic oracle scores in [0, 1] (evaluation only, never a training signal). Reward: the toy "
        "reward model's z-scored heads on the same videos — the signal Stream-R1 trains with.",
        "",
    ]
    if missing or failures:
        md += ["**Incomplete**: missing " + (", ".join(missing) or "nothing") + ". Failures: "
               + ("; ".join(failures) or "none") + ". Rerun the same command to resume.", ""]
    md += ["## Verdict (ToyBench, paired against the baseline)", "", *(verdicts or ["- (no paired rows yet)"]), "",
           f"## Scores (mean ± {pct}% CI over seeds)", "", scores_table(s, rows, speed), "",
           "train min: wall time of each run's `distill` call on one core (model loading and in-run monitoring "
           "included; scaled up to all steps if a segment was lost to a kill). FPS: see Inference cost.", "",
           f"## Paired difference against {s.baseline} (mean ± {pct}% CI over seeds)", "", paired_table(s, rows), "",
           "## Where the differences sit: ToyBench sub-scores", "",
           f"Each ToyBench axis is the mean of its sub-scores (`toyworld/bench.py`); {s.baseline}'s mean, then "
           "each row's paired difference. A row that moves an axis moves one or two of these.", "",
           subscore_table(s, rows), "",
           "## Reward hacking check", "",
           "Where a row's reward-model score rises against the baseline on an axis, does ToyBench agree?", "",
           *hack_lines, "", hack_summary, "",
           "## How reliable is the reward on these videos?", "",
           "Stream-R1 weights each rollout by the reward and each region by the reward's gradient, so it can only "
           "help where the reward ranks videos as the oracle does. Spearman ρ between each reward head and the "
           "ToyBench axis it stands for, over one (row, seed)'s evaluation videos (mean ± interval over seeds; "
           "diagnostic only, nothing is trained on it):", "",
           reliability_table(s, rows), "",
           "## Inference cost", "",
           "One held-out video (the strip's prompt) generated at batch 1, median of "
           f"{s.eval.fps_videos} runs after a warm-up, every row in the same single-threaded process.", "",
           speed_table(s, speed), "", speed_summary(s, speed), "",
           "## Plots", "",
           "- `bars.png`: every metric per row with its interval; the baseline in red, its mean dashed.",
           "- `curves.png`: training curves, mean over seeds. Top: the rollouts' reward and largest inter weight from "
           "each run's `metrics.jsonl` (only rows that score their rollouts log them, so not the DMD baseline). "
           "Middle and bottom: the reward model and ToyBench on the same held-out videos of the EMA student "
           f"(`compare_curves.jsonl`, every {s.train.get('eval_every', '?')} steps, every row alike).",
           "- `strip.png`: the same prompt and noise through every row; under each reweighted row, the fused reward "
           "saliency and the W_intra its own settings assign to that video.",
           *grids, "", "![bars](bars.png)", "", "![curves](curves.png)", "", "![strip](strip.png)", "",
           "## Runs", "", runs_table(s, rows), "",
           "## Provenance", "",
           "Each call of `stream-r1 compare` on this results directory, with the commit it ran and what it ran "
           "(a call reuses every finished (row, seed)):", "",
           *[f"- {i['started']}, commit `{i['commit']}`, {i['workers']} worker(s): "
             f"{', '.join(i['to_run']) or 'nothing to run (report only)'}" for i in invocations], "",
           "## Config", "", "Each run's resolved distillation config (base config, row overrides, shared checkpoints, "
           "train section, seed) is in its run dir as `compare_config.json`.", "",
           "```yaml", yaml.safe_dump(raw, sort_keys=False).rstrip(), "```", ""]
    path = out / "results.md"
    atomic_write(path, lambda p: Path(p).write_text("\n".join(md)))
    return path
