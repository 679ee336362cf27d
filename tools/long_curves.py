"""ToyBench over time of several students side by side (issue 18's long-horizon bar).

Reads `stream-r1 evaluate --frames N --out FILE.json` results, plots each axis's ratio to ground truth per
12-frame segment (one panel per axis, one line per model) and prints a markdown table with the bar:
the last segment's score per axis against the first's (bar: >= 0.9x).

    python tools/long_curves.py --out docs/long/curves.png toy-dmd-long=docs/long/toy-dmd-long-120.json ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

AXES = ("vq", "mq", "ta")


def load_curve(path: Path) -> dict:
    """The `over_time` section of an evaluate result, with a one-line error if the run was a single segment."""
    result = json.loads(Path(path).read_text())
    if "over_time" not in result:
        raise SystemExit(f"{path} has no ToyBench over time; evaluate with --frames 24 or more")
    return result["over_time"]


def bar_rows(curves: dict[str, dict]) -> str:
    """Markdown: per model and axis, first and last segment's score and their ratio (bar >= 0.9)."""
    lines = ["| model | " + " | ".join(f"{a.upper()} first → last (ratio)" for a in AXES) + " | bar |",
             "|---|" + "---|" * (len(AXES) + 1)]
    for name, over in curves.items():
        first, last = over["model"][0], over["model"][-1]
        ratios = [last[a] / first[a] if first[a] > 0 else float("nan") for a in AXES]
        cells = [f"{first[a]:.3f} → {last[a]:.3f} ({r:.3f})" for a, r in zip(AXES, ratios, strict=True)]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'met' if min(ratios) >= 0.9 else 'not met'} |")
    return "\n".join(lines)


def plot(curves: dict[str, dict], path: Path) -> None:
    """One panel per axis: each model's score per segment over ground truth's (dashed grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, panels = plt.subplots(1, len(AXES), figsize=(11, 3.4), dpi=100, sharey=True)
    for ax, axis in zip(panels, AXES, strict=True):
        for name, over in curves.items():
            x = [row["first_frame"] for row in over["model"]]
            ax.plot(x, [row[axis] for row in over["model"]], "-o", ms=3, label=name)
        truth = next(iter(curves.values()))["ground_truth"]
        ax.plot([r["first_frame"] for r in truth], [r[axis] for r in truth], "--", color="grey", label="ground truth")
        ax.set_title(f"ToyBench {axis.upper()} per 12-frame segment", fontsize=9)
        ax.set_xlabel("first frame of the segment")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    panels[0].set_ylabel("score")
    panels[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="NAME=evaluate.json")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = p.parse_args()
    curves = {}
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"{item!r}: give NAME=FILE.json")
        curves[name] = load_curve(Path(path))
    plot(curves, args.out)
    print(bar_rows(curves))


if __name__ == "__main__":
    main()
