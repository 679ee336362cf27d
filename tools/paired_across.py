"""Paired differences between rows of `stream-r1 compare` results (results.json), seed by seed.

Two results directories can be paired when a row they share reproduces exactly (the runs are seeded): e.g.
the LR control of one comparison against the faithful row of another. A side may name several results files
joined by commas: the row's seeds are merged (a seed recorded in two of them must agree). Prints one markdown
table; --subscores adds a table of the ToyBench sub-scores, --reward one of the evaluation reward's scores (set
beside the ToyBench table, it shows reward hacking: the reward up where ToyBench is not). With --means the words
come in twos and each row is summarised alone: its seeds' mean ± 95% CI per axis and the mean Spearman ρ of the
reward on its videos.

    python tools/paired_across.py A/results.json "row a" B/results.json,C/results.json "row b" [...more pairs]
    python tools/paired_across.py ... --plot pairs.png   # the same pairs as a forest plot
    python tools/paired_across.py --means A/results.json "row a" B/results.json,C/results.json "row b" [...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stream_r1.common.stats import SIGN_MARKS, mean_ci, paired_difference
from stream_r1.evaluation.compare_report import fmt

METRICS = ("toybench/vq", "toybench/mq", "toybench/ta", "toybench/total")
REWARD_METRICS = ("reward/vq", "reward/mq", "reward/ta")  # compare's evaluation reward (z-scores), per axis
AXIS_ORDER = ("vq", "mq", "ta")  # sub-scores are named <axis>_<what>


def row_seeds(results: str, row: str) -> dict[str, dict]:
    """{seed: that seed's record} of one row, merged over comma-separated results files."""
    merged: dict[str, dict] = {}
    files = {path: json.loads(Path(path).read_text())["rows"] for path in results.split(",")}
    if not any(row in rows for rows in files.values()):
        raise SystemExit(f"{results}: no row {row!r}; rows are {sorted(set().union(*files.values()))}")
    for rows in files.values():
        for seed, rec in rows.get(row, {}).get("seeds", {}).items():
            if "values" not in rec:
                continue
            if seed in merged and merged[seed]["values"] != rec["values"]:
                raise SystemExit(f"{row!r} seed {seed} differs between the files of {results}; pair one of them")
            merged[seed] = rec
    return merged


def metric_values(seeds: dict[str, dict], metric: str) -> dict[str, float]:
    """{seed: value} of one ToyBench axis (toybench/...) or sub-score (its bare name)."""
    out = {}
    for s, rec in seeds.items():
        value = rec["values"].get(metric, rec.get("subscores", {}).get(metric))
        if value is not None:
            out[s] = value
    return out


def cell(a: dict[str, float], b: dict[str, float]) -> tuple[str, int]:
    iv = paired_difference(a, b)
    return fmt(iv, signed=True) + SIGN_MARKS[iv.sign()], iv.n


def table(pairs: list[tuple[str, dict, dict]], metrics: list[str], header: list[str]) -> str:
    """One markdown row per (label, seeds of row a, seeds of row b), one paired cell per metric."""
    lines = ["| paired Δ (mean ± 95% CI, seeds) | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for label, sa, sb in pairs:
        cells = [cell(metric_values(sa, m), metric_values(sb, m)) for m in metrics]
        lines.append(f"| {label} ({cells[0][1]}) | " + " | ".join(c for c, _ in cells) + " |")
    return "\n".join(lines)


def means_table(rows: list[tuple[str, dict]]) -> str:
    """One markdown row per (label, seeds): mean ± CI of each ToyBench axis, then ρ of the reward per axis (mean
    over seeds; compare records it per run as `reliability`)."""
    lines = ["| row (seeds) | VQ | MQ | TA | total | ρ VQ / MQ / TA |", "|---" * 6 + "|"]
    for label, seeds in rows:
        cells = [fmt(mean_ci(list(metric_values(seeds, m).values()))) for m in METRICS]
        rho = [[rec["reliability"][axis] for rec in seeds.values() if "reliability" in rec] for axis in AXIS_ORDER]
        rho_cell = " / ".join(f"{sum(r) / len(r):.2f}" for r in rho) if all(rho) else "–"
        lines.append(f"| {label} ({len(seeds)}) | " + " | ".join(cells) + f" | {rho_cell} |")
    return "\n".join(lines)


def forest_plot(pairs: list[tuple[str, dict, dict]], path: Path) -> dict[str, list]:
    """One panel per ToyBench axis: each pair's paired mean with its 95% interval, zero dashed (a forest plot).
    Returns the intervals drawn, per axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = {}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 1.2 + 0.4 * len(pairs)),
                             sharex=True, sharey=True)  # one scale: the axes' intervals compare at a glance
    y = list(range(len(pairs)))
    for ax, metric in zip(axes, METRICS, strict=True):
        ivs = drawn[metric] = [paired_difference(metric_values(sa, metric), metric_values(sb, metric))
                               for _, sa, sb in pairs]
        colours = ["tab:green" if iv.sign() > 0 else "tab:red" if iv.sign() < 0 else "tab:gray" for iv in ivs]
        for yi, iv, colour in zip(y, ivs, colours, strict=True):
            ax.errorbar(iv.mean, yi, xerr=0 if iv.n < 2 else iv.half_width, fmt="o", color=colour, capsize=3)
        ax.axvline(0, color="black", linestyle="--", linewidth=0.8)
        ax.set_title(f"Δ ToyBench {metric.split('/')[1]} (paired, 95% CI)", fontsize=9)
        ax.set_yticks(y, [f"{label} ({iv.n})" for (label, _, _), iv in zip(pairs, ivs, strict=True)], fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn


def load_pairs(words: list[str], only: set[str] | None = None) -> list[tuple[str, dict, dict]]:
    """(label, seeds of a, seeds of b) per RESULTS_A ROW_A RESULTS_B ROW_B, each file read once; `only` cuts the
    seeds of a (pairing then uses the seeds both sides hold)."""
    pairs = []
    for ra, a, rb, b in (words[i : i + 4] for i in range(0, len(words), 4)):
        sa = row_seeds(ra, a)
        if only is not None:
            sa = {k: v for k, v in sa.items() if k in only}
        pairs.append((f"{a} − {b}", sa, row_seeds(rb, b)))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", help="RESULTS_A ROW_A RESULTS_B ROW_B, repeated (with --means: RESULTS ROW)")
    ap.add_argument("--subscores", action="store_true", help="also print the ToyBench sub-scores, paired")
    ap.add_argument("--reward", action="store_true", help="also print the evaluation reward's scores, paired")
    ap.add_argument("--plot", type=Path, help="also draw the pairs' ToyBench differences as a forest plot (PNG)")
    ap.add_argument("--seeds", help="pair on these seeds only (comma-separated), e.g. to match another table's")
    ap.add_argument("--means", action="store_true", help="words are RESULTS ROW pairs; print each row's means")
    args = ap.parse_args()
    if args.means:
        if len(args.pairs) % 2:
            raise SystemExit("with --means give RESULTS ROW, two words each")
        print(means_table([(row, row_seeds(res, row)) for res, row in
                           zip(args.pairs[::2], args.pairs[1::2], strict=True)]))
        return
    if len(args.pairs) % 4:
        raise SystemExit("give the pairs as RESULTS_A ROW_A RESULTS_B ROW_B, four words each")
    pairs = load_pairs(args.pairs, set(args.seeds.split(",")) if args.seeds else None)
    print(table(pairs, list(METRICS), ["VQ", "MQ", "TA", "total"]))
    if args.plot:
        forest_plot(pairs, args.plot)
    if args.reward:
        print()
        print(table(pairs, list(REWARD_METRICS), ["reward VQ", "reward MQ", "reward TA"]))
    if args.subscores:
        first = next(iter(pairs[0][1].values()))
        names = sorted(first.get("subscores", {}), key=lambda n: (AXIS_ORDER.index(n.split("_")[0]), n))
        print()
        print(table(pairs, names, names))


if __name__ == "__main__":
    main()
