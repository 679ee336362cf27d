"""`stream-r1 generate`: videos for prompts, written as MP4 + npz with a manifest."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..common.weights import atomic_write
from ..toyworld.prompts import PromptError, parse_prompt
from .pipeline import VideoPipeline, to_uint8
from .timeline import Timeline, check_streamable
from .video_io import write_mp4, write_npz


def read_prompts(prompts: list[str], prompts_file: str | None, grammar: bool = True) -> list[str]:
    """Prompts from the command line and/or a file (one per line, blank lines and #comments skipped).

    With `grammar` (toy checkpoints) every prompt must parse in the toy grammar; paper-scale ones take free text.
    """
    out = list(prompts or [])
    if prompts_file:
        path = Path(prompts_file)
        if not path.exists():
            raise FileNotFoundError(f"prompts file {path} does not exist")
        out += [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not out:
        raise PromptError("no prompts given; pass --prompt TEXT or --prompts FILE")
    for p in out if grammar else []:
        parse_prompt(p)
    return out


def generate_to_dir(
    pipe: VideoPipeline, prompts: list[str], frames: int, seed: int, out: Path, steps: int | None = None,
    init_video: np.ndarray | None = None, timeline: Timeline | None = None, switch: str = "recache",
) -> list[dict]:
    """Generate prompt i with seed `seed + i` into OUT/i.mp4 and OUT/i.npz; write OUT/manifest.json.

    `init_video` (uint8 [T0, H, W, 3]): every stream continues these frames; the files hold them, then the
    `frames` new ones (the manifest's `init_frames` says how many were given). `timeline`: one video whose
    prompt switches at its frames (counted from the first new frame; `switch`: recache | keep), `prompts`
    being [its first prompt]; the manifest records it.
    """
    prompt_at = None
    if timeline is not None:
        check_streamable(timeline, pipe, frames)  # refuse before anything is written
        at = timeline.prompt_at(pipe.frames_per_chunk)
        prompt_at = lambda k: [at(k)]  # noqa: E731
    init = None
    if init_video is not None:
        init = torch.from_numpy(np.ascontiguousarray(init_video)).permute(0, 3, 1, 2).float().div(255).unsqueeze(0)
        pipe.encode_init(init)  # refuse what cannot be continued before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipe.check_frames(frames)
    causal = pipe.model.cfg.causal
    chunks_per_video = pipe.latent_shape(1, frames)[2] // pipe.model.cfg.frames_per_chunk if causal else 1
    manifest = []
    bar = tqdm(total=len(prompts) * chunks_per_video, desc="generate (chunks)", unit="chunk", dynamic_ncols=True)
    for i, prompt in enumerate(prompts):
        start = time.perf_counter()
        parts = [init[0]] if init is not None else []
        for chunk in pipe.stream([prompt], frames, seed + i, steps=steps, init_video=init, prompt_at=prompt_at,
                                 switch=switch):
            parts.append(chunk[0])
            bar.update(1)
        seconds = time.perf_counter() - start
        video = to_uint8(torch.cat(parts)).numpy()
        write_npz(out / f"{i}.npz", video)
        write_mp4(out / f"{i}.mp4", video)
        manifest.append(
            {"index": i, "prompt": prompt, "seed": seed + i, "frames": int(video.shape[0]),
             "seconds": round(seconds, 4), "npz": f"{i}.npz", "mp4": f"{i}.mp4"}
        )
        if init is not None:
            manifest[-1]["init_frames"] = int(init.shape[1])
        if timeline is not None:
            manifest[-1].update(timeline=timeline.as_list(), switch=switch)
    bar.close()
    atomic_write(out / "manifest.json", lambda p: Path(p).write_text(json.dumps(manifest, indent=1)))
    return manifest
