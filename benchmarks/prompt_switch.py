"""Prompt switching (not a test): how fast a switched stream takes the new colour, and how far the object jumps.

For each checkpoint, PAIRS prompt pairs A -> B that differ in colour only (A: the held-out prompts in order,
B: A with another colour, seeded), streamed for FRAMES frames with the prompt switching at SWITCH_AT, in both
switch modes (recache: the cache re-written with B's text; keep: the old cache kept), and without a switch
(A throughout) as the reference for the motion. Measured with a small pixel analysis of its own: object =
pixels far from the prompt's background colour; a chunk's colour = the named colour nearest the mean colour
of its object pixels (and its distance from B's named colour, in the first chunk after the switch); the
jump = the object's centroid step from the last frame before the switch to the
first after it, against the median step over the chunks before it.

    python benchmarks/prompt_switch.py --out docs/prompt-switch.json --strip docs/prompt-switch-strip.png
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from stream_r1.generation.pipeline import VideoPipeline, to_uint8
from stream_r1.toyworld.prompts import BACKGROUNDS, COLOURS, parse_prompt, split_prompts

OBJECT_DISTANCE = 0.35  # RGB distance (0..1 channels) from the background that makes a pixel the object's
STEP_CHUNKS = 4  # chunks before the switch whose frame-to-frame steps give the typical step
BAR_CHUNKS, BAR_JUMP = 2, 2.0  # the bars: new colour within 2 chunks, jump at most 2 px


def prompt_pairs(count: int, seed: int) -> list[tuple[str, str]]:
    """(A, B): A cycles through the held-out prompts, B is A with a different colour chosen by `seed`."""
    rng, prompts = random.Random(seed), split_prompts("heldout")
    pairs = []
    for i in range(count):
        a = prompts[i % len(prompts)]
        b = replace(a, colour=rng.choice([c for c in COLOURS if c != a.colour]))
        pairs.append((a.text, b.text))
    return pairs


def object_mask(video: np.ndarray, background: str) -> np.ndarray:
    """[T, H, W] True where a pixel of uint8 frames [T, H, W, 3] is far from the background colour."""
    x = video.astype(np.float64) / 255
    return np.linalg.norm(x - np.array(BACKGROUNDS[background]), axis=-1) > OBJECT_DISTANCE


def nearest_colour(rgb: np.ndarray) -> str:
    """The named toy colour nearest an RGB triple (0..1); 'none' for an empty object."""
    if np.isnan(rgb).any():
        return "none"
    return min(COLOURS, key=lambda c: float(np.linalg.norm(rgb - np.array(COLOURS[c]))))


def chunk_means(video: np.ndarray, mask: np.ndarray, fpc: int) -> list[np.ndarray]:
    """The mean RGB (0..1) of each chunk's object pixels; NaN for a chunk without any."""
    out = []
    for s in range(0, len(video), fpc):
        pixels = video[s : s + fpc][mask[s : s + fpc]].astype(np.float64) / 255
        out.append(pixels.mean(0) if len(pixels) else np.full(3, np.nan))
    return out


def centroids(mask: np.ndarray) -> np.ndarray:
    """The object's centroid (x, y) per frame [T, 2]; NaN in a frame without object pixels."""
    ys, xs = np.mgrid[: mask.shape[1], : mask.shape[2]]
    n = mask.sum((1, 2)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([(mask * xs).sum((1, 2)) / n, (mask * ys).sum((1, 2)) / n], axis=1)


def measure(video: np.ndarray, before: str, after: str, switch_at: int, fpc: int) -> dict:
    """Chunks from the switch until the colour is B's (1 = the first chunk with B; None: never), whether it
    stays B's to the end, the jump at the switch and the typical step before it (px)."""
    mask = object_mask(video, parse_prompt(before).background)
    means = chunk_means(video, mask, fpc)[switch_at // fpc :]
    colours = [nearest_colour(m) for m in means]
    want = parse_prompt(after).colour
    right = [c == want for c in colours]
    reached = right.index(True) + 1 if any(right) else None
    wrong = [i for i, ok in enumerate(right) if not ok]
    settled = None if not right[-1] else (wrong[-1] + 2 if wrong else 1)
    steps = np.linalg.norm(np.diff(centroids(mask), axis=0), axis=1)
    return {
        "reached": reached, "settled": settled, "colours": colours,
        "colour_error": float(np.linalg.norm(means[0] - np.array(COLOURS[want]))),  # first chunk after the switch
        "jump_px": float(steps[switch_at - 1]),
        "step_px": float(np.nanmedian(steps[switch_at - 1 - STEP_CHUNKS * fpc : switch_at - 1])),
    }


def stream(pipe: VideoPipeline, pairs: list[tuple[str, str]], frames: int, switch_at: int | None, mode: str,
           seed: int) -> np.ndarray:
    """uint8 videos [N, T, H, W, 3]; pair i uses seed `seed + i`; no switch when `switch_at` is None."""
    a, b = [p for p, _ in pairs], [q for _, q in pairs]
    fpc = pipe.frames_per_chunk
    prompt_at = None if switch_at is None else (lambda k: a if k * fpc < switch_at else b)
    video = torch.cat(list(pipe.stream(a, frames, seed, prompt_at=prompt_at, switch=mode)), dim=1)
    return np.stack([to_uint8(v).numpy() for v in video])


def summary(rows: list[dict]) -> dict:
    """Median, 90th percentile and the fraction meeting each bar (a never-reached colour counts as failing)."""
    chunks = np.array([r["reached"] if r["reached"] is not None else np.inf for r in rows], dtype=np.float64)
    settled = np.array([r["settled"] if r["settled"] is not None else np.inf for r in rows], dtype=np.float64)
    jumps = np.array([r["jump_px"] for r in rows])
    steps = np.array([r["step_px"] for r in rows])
    finite = lambda v: v[np.isfinite(v)]  # noqa: E731
    return {
        "n": len(rows),
        "chunks_to_colour": {"median": float(np.median(chunks)), "p90": float(np.percentile(chunks, 90)),
                             "never": int(np.isinf(chunks).sum())},
        "chunks_to_settle": {"median": float(np.median(settled)), "p90": float(np.percentile(settled, 90)),
                             "never": int(np.isinf(settled).sum())},
        "jump_px": {"median": float(np.nanmedian(jumps)), "p90": float(np.nanpercentile(jumps, 90)),
                    "nan": int(np.isnan(jumps).sum())},
        "step_before_px": {"median": float(np.nanmedian(steps)), "p90": float(np.nanpercentile(steps, 90))},
        "colour_within_bar": float((chunks <= BAR_CHUNKS).mean()),
        "jump_within_bar": float((np.nan_to_num(jumps, nan=np.inf) <= BAR_JUMP).mean()),
        "both_bars": float(((chunks <= BAR_CHUNKS) & (np.nan_to_num(jumps, nan=np.inf) <= BAR_JUMP)).mean()),
        "colour_error_median": float(np.nanmedian([r["colour_error"] for r in rows])),
        "jump_over_step_median": float(np.nanmedian(finite(jumps / np.maximum(steps, 1e-6)))),
    }


def strip(videos: dict[str, np.ndarray], picks: list[int], switch_at: int, fpc: int, path: Path,
          scale: int = 6) -> None:
    """A PNG: per picked pair one row per mode, the 4 chunks before and after the switch, a gap at the switch."""
    import imageio.v3 as iio

    lo, hi = switch_at - 4 * fpc, switch_at + 4 * fpc
    rows = []
    for i in picks:
        for name in videos:
            v = videos[name][i, lo:hi]
            gap = np.full((v.shape[1], 3, 3), 255, np.uint8)
            tiles = [np.concatenate([f, np.zeros((f.shape[0], 1, 3), np.uint8)], axis=1) for f in v]
            rows.append(np.concatenate([*tiles[: switch_at - lo], gap, *tiles[switch_at - lo :]], axis=1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    img = np.concatenate(rows).repeat(scale, 0).repeat(scale, 1)
    iio.imwrite(path, img)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", action="append", help="causal toy students (default toy-dmd, toy-stream-r1)")
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--frames", type=int, default=72)
    ap.add_argument("--switch-at", type=int, default=36)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the result as JSON here")
    ap.add_argument("--strip", help="a PNG of frames around the switch (first checkpoint; suffix per checkpoint)")
    args = ap.parse_args()
    torch.manual_seed(0)
    pairs = prompt_pairs(args.pairs, args.seed)
    result = {"pairs": args.pairs, "frames": args.frames, "switch_at": args.switch_at, "seed": args.seed,
              "object_distance": OBJECT_DISTANCE, "checkpoints": {}}
    for ckpt in args.checkpoint or ["toy-dmd", "toy-stream-r1"]:
        pipe = VideoPipeline.from_checkpoint(ckpt, "cpu")
        fpc = pipe.frames_per_chunk
        videos = {"no switch (A)": stream(pipe, pairs, args.frames, None, "recache", args.seed)}
        entry = {"frames_per_chunk": fpc, "window": pipe.model.cfg.local_attn_frames,
                 "sink_frames": pipe.model.cfg.sink_frames}
        for mode in ("recache", "keep"):
            videos[mode] = stream(pipe, pairs, args.frames, args.switch_at, mode, args.seed)
            rows = [measure(videos[mode][i], a, b, args.switch_at, fpc) for i, (a, b) in enumerate(pairs)]
            entry[mode] = {"summary": summary(rows), "per_pair": rows}
        reference = [measure(videos["no switch (A)"][i], a, a, args.switch_at, fpc) for i, (a, _) in enumerate(pairs)]
        entry["no_switch"] = {"summary": summary(reference)}  # A throughout: its jump is the motion's own step
        result["checkpoints"][ckpt] = entry
        print(f"\n{ckpt} ({fpc} frames/chunk, window {entry['window']}): {args.pairs} pairs, switch at "
              f"frame {args.switch_at} of {args.frames}")
        print("| mode | chunks to colour (median / p90 / never) | within 2 chunks | jump px (median / p90) "
              "| jump ≤ 2 px | both | step before px (median) | colour error, 1st chunk (median) |")
        for mode, s in [(m, entry[m]["summary"]) for m in ("recache", "keep", "no_switch")]:
            c, j = s["chunks_to_colour"], s["jump_px"]
            print(f"| {mode} | {c['median']:g} / {c['p90']:g} / {c['never']} | {s['colour_within_bar']:.3f} | "
                  f"{j['median']:.2f} / {j['p90']:.2f} | {s['jump_within_bar']:.3f} | {s['both_bars']:.3f} | "
                  f"{s['step_before_px']['median']:.2f} | {s['colour_error_median']:.3f} |")
        if args.strip:
            path = Path(args.strip)
            path = path if ckpt == (args.checkpoint or ["toy-dmd"])[0] else path.with_stem(f"{path.stem}-{ckpt}")
            worst = sorted(range(len(pairs)), key=lambda i: -np.nan_to_num(entry["recache"]["per_pair"][i]["jump_px"]))
            picks = [0, 1, *[i for i in worst if i > 1][:2]]  # two ordinary pairs, then re-cache's two largest jumps
            strip(videos, picks, args.switch_at, fpc, path)
            print(f"strip: {path} (pairs {picks}; rows per pair: {', '.join(videos)})")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
