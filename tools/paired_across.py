"""Paired differences between rows of `stream-r1 compare` results (results.json), seed by seed.

Two results directories can be paired when a row they share reproduces exactly (the runs are seeded): e.g.
the LR control of one comparison against the faithful row of another. A side may name several results files
joined by commas: the row's seeds are merged (a seed recorded in two of them must agree). Prints one markdown
table; --subscores adds a table of the ToyBench sub-scores.

    python tools/paired_across.py A/results.json "row a" B/results.json,C/results.json "row b" [...more pairs]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stream_r1.common.stats import paired_difference

METRICS = ("toybench/vq", "toybench/mq", "toybench/ta", "toybench/total")
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
    mark = {1: " ▲", -1: " ▼", 0: ""}[iv.sign()]
    return f"{iv.mean:+.3f} ± {iv.half_width:.3f}{mark}", iv.n


def table(pairs: list[tuple[str, str, str, str]], metrics: list[str], header: list[str],
          only: set[str] | None = None) -> str:
    lines = ["| paired Δ (mean ± 95% CI, seeds) | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for ra, a, rb, b in pairs:
        sa, sb = row_seeds(ra, a), row_seeds(rb, b)
        if only is not None:
            sa = {k: v for k, v in sa.items() if k in only}
        cells = [cell(metric_values(sa, m), metric_values(sb, m)) for m in metrics]
        lines.append(f"| {a} − {b} ({cells[0][1]}) | " + " | ".join(c for c, _ in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", help="RESULTS_A ROW_A RESULTS_B ROW_B, repeated")
    ap.add_argument("--subscores", action="store_true", help="also print the ToyBench sub-scores, paired")
    ap.add_argument("--seeds", help="pair on these seeds only (comma-separated), e.g. to match another table's")
    args = ap.parse_args()
    if len(args.pairs) % 4:
        raise SystemExit("give the pairs as RESULTS_A ROW_A RESULTS_B ROW_B, four words each")
    pairs = [tuple(args.pairs[i : i + 4]) for i in range(0, len(args.pairs), 4)]
    only = set(args.seeds.split(",")) if args.seeds else None
    print(table(pairs, list(METRICS), ["VQ", "MQ", "TA", "total"], only))
    if args.subscores:
        first = next(iter(row_seeds(pairs[0][0], pairs[0][1]).values()))
        names = sorted(first.get("subscores", {}), key=lambda n: (AXIS_ORDER.index(n.split("_")[0]), n))
        print()
        print(table(pairs, names, names, only))


if __name__ == "__main__":
    main()
