"""Streaming with a prompt that may change between chunks (LongLive-style KV re-caching, docs/prompt-switch.md).

`stream_switching` is `stream_chunks` with per-chunk text conditioning. At a switch, mode "recache" rebuilds
the cache by re-writing the clean latents of the chunks the cache can still attend to with the new prompt's
text (the same `write_cache` pass that writes generated and `--init-video` chunks); mode "keep" keeps the old
cache and only conditions the new chunks on the new text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ..models.dit import DiT
from .sampler import Generators, denoise_chunk, randn, write_cache

SWITCH_MODES = ("recache", "keep")


def check_mode(mode: str) -> str:
    """`mode` if it is a switch mode; a one-line error naming the choices otherwise."""
    if mode not in SWITCH_MODES:
        raise ValueError(f"switch mode {mode!r}; choose one of {', '.join(SWITCH_MODES)}")
    return mode


def attendable(kept: list[tuple[int, torch.Tensor]], next_start: int, model: DiT) -> list[tuple[int, torch.Tensor]]:
    """The kept (first latent frame, clean latents) chunks that a chunk starting at `next_start` may attend to.

    The same rule as the cache's eviction (`KVCache.begin_chunk`): every chunk under a global window; the sink
    chunks plus the most recent ones under a rolling window.
    """
    cfg = model.cfg
    if cfg.local_attn_frames == -1:
        return kept
    recent = cfg.local_attn_frames - cfg.sink_frames - cfg.frames_per_chunk
    return [(s, x) for s, x in kept if s < cfg.sink_frames or s + x.shape[2] - 1 >= next_start - recent]


def recache(model: DiT, kept: list[tuple[int, torch.Tensor]], cond: torch.Tensor):
    """A fresh cache holding the kept chunks re-written, each at its own frame position, with text `cond`."""
    cache = model.new_cache()
    for start, x0 in kept:
        cache.next_frame = start  # RoPE and the frame embedding continue from the chunk's own position
        write_cache(model, x0, cond, cache)
    return cache


@torch.no_grad()
def stream_switching(
    model: DiT,
    num_chunks: int,
    chunk_shape: tuple[int, ...],
    sigmas: torch.Tensor,
    cond_at: Callable[[int], torch.Tensor],
    generator: Generators = None,
    init: torch.Tensor | None = None,
    mode: str = "recache",
) -> Iterator[torch.Tensor]:
    """Generate chunk by chunk like `stream_chunks`, chunk k conditioned on `cond_at(k)`.

    `cond_at` is called as chunk k starts (after chunk k−1 was yielded), so a live caller can change it between
    chunks; a switch is a different tensor from the previous chunk's (identity, as the cache's text keys). With
    one tensor throughout the frames are those of `stream_chunks`, bit for bit. `init` chunks are written with
    `cond_at(0)`.
    """
    check_mode(mode)
    fpc = model.cfg.frames_per_chunk
    if chunk_shape[2] != fpc:
        raise ValueError(f"chunk of {chunk_shape[2]} frames; the model streams {fpc}")
    cond = cond_at(0)
    cache = model.new_cache()
    kept: list[tuple[int, torch.Tensor]] = []  # what a re-cache re-writes
    if init is not None:
        if init.shape[2] % fpc or init.shape[2] == 0:
            raise ValueError(f"the given video has {init.shape[2]} latent frames; give a whole number of "
                             f"{fpc}-frame chunks")
        for k in range(init.shape[2] // fpc):
            x0 = init[:, :, k * fpc : (k + 1) * fpc].to(cond.device)
            kept.append((cache.next_frame, x0))
            write_cache(model, x0, cond, cache)
    for k in range(num_chunks):
        new = cond_at(k) if k else cond
        if new is not cond:
            cond = new
            if mode == "recache":
                kept = attendable(kept, cache.next_frame, model)
                next_frame, cache = cache.next_frame, recache(model, kept, cond)
                cache.next_frame = next_frame
        noise = randn(chunk_shape, generator).to(cond.device)
        x0 = denoise_chunk(model, noise, sigmas, cond, cache, generator)
        if k + 1 < num_chunks:  # nothing reads the last chunk's cache entry
            kept = attendable([*kept, (cache.next_frame, x0)], cache.next_frame + fpc, model)
            write_cache(model, x0, cond, cache)
        yield x0
