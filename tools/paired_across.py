"""Paired differences between rows of two `stream-r1 compare` results (results.json), seed by seed.

Two results directories can be paired when a row they share reproduces exactly (the runs are seeded): e.g.
the LR control of one comparison against the faithful row of another. Prints one markdown table.

    python tools/paired_across.py A/results.json "row a" B/results.json "row b" [...more pairs]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stream_r1.common.stats import paired_difference

METRICS = ("toybench/vq", "toybench/mq", "toybench/ta", "toybench/total")


def seed_values(results: Path, row: str, metric: str) -> dict[str, float]:
    rows = json.loads(results.read_text())["rows"]
    if row not in rows:
        raise SystemExit(f"{results}: no row {row!r}; rows are {sorted(rows)}")
    return {s: v["values"][metric] for s, v in rows[row]["seeds"].items() if metric in v.get("values", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", help="RESULTS_A ROW_A RESULTS_B ROW_B, repeated")
    args = ap.parse_args()
    if len(args.pairs) % 4:
        raise SystemExit("give the pairs as RESULTS_A ROW_A RESULTS_B ROW_B, four words each")
    print("| paired Δ (mean ± 95% CI, seeds) | VQ | MQ | TA | total |\n|---|---|---|---|---|")
    for i in range(0, len(args.pairs), 4):
        ra, a, rb, b = args.pairs[i : i + 4]
        cells = []
        for m in METRICS:
            iv = paired_difference(seed_values(Path(ra), a, m), seed_values(Path(rb), b, m))
            mark = {1: " ▲", -1: " ▼", 0: ""}[iv.sign()]
            cells.append(f"{iv.mean:+.3f} ± {iv.half_width:.3f}{mark}")
        print(f"| {a} − {b} ({iv.n}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
