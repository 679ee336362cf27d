"""Key/value cache for streaming a causal DiT chunk by chunk.

Keys are stored already rotated by RoPE at their absolute frame positions, so later chunks continue
the positions. With a rolling window the cache evicts every frame that the next chunk may not see
(the same rule as `dit.frame_visibility`), keeping the sink frames.
"""

from __future__ import annotations

from typing import Protocol

import torch


class WindowConfig(Protocol):
    """What the cache reads of a model's config (a `DiTConfig` is one): chunk size and attention window."""

    frames_per_chunk: int
    local_attn_frames: int
    sink_frames: int


class LayerCache:
    """Cached keys and values of one attention layer, [B, heads, N_cached, head_dim]."""

    def __init__(self, owner: KVCache) -> None:
        self.owner = owner
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self._text: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None

    def text_kv(self, context: torch.Tensor, compute) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys/values of `context`, computed once and reused while the context is the same."""
        if self._text is None or self._text[0] is not context:
            self._text = (context, compute(context))
        return self._text[1]

    def context(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values the current chunk attends to: cached ones then its own; store them if writing."""
        if self.k is None:
            full_k, full_v = k, v
        else:
            full_k = torch.cat([self.k, k], dim=2)
            full_v = torch.cat([self.v, v], dim=2)
        if self.owner.writing:
            self.k, self.v = full_k.detach(), full_v.detach()
        return full_k, full_v

    def frozen(self) -> LayerCache:
        """A read-only copy of this layer's cache as it is now (for a checkpointed block's recompute).

        The recompute in backward runs after later chunks wrote to and evicted from the cache; this copy gives
        it the keys/values its forward read, and never writes. It shares the tensors: the cache never changes a
        stored tensor in place (a write or an eviction replaces it).
        """
        view = LayerCache(_READ_ONLY)
        view.k, view.v, view._text = self.k, self.v, self._text
        return view

    def keep(self, index: torch.Tensor) -> None:
        if self.k is not None:
            self.k = self.k.index_select(2, index)
            self.v = self.v.index_select(2, index)


class KVCache:
    """Per-layer caches plus the frame bookkeeping shared by all layers.

    Use: run a chunk's denoising steps with `writing=False` (read-only), then re-run the finished
    chunk with `writing=True` to append its keys/values and advance `next_frame`.
    """

    def __init__(self, num_layers: int) -> None:
        self.layers = [LayerCache(self) for _ in range(num_layers)]
        self.frames: list[int] = []  # absolute frame index of each cached frame, in order
        self.tokens_per_frame = 0
        self.next_frame = 0
        self.writing = False
        self._pending: list[int] = []
        self._text: tuple[torch.Tensor, torch.Tensor] | None = None

    def embed_text(self, context: torch.Tensor, embed) -> torch.Tensor:
        """The embedded text of a streamed video, computed once while `context` stays the same tensor."""
        if self._text is None or self._text[0] is not context:
            self._text = (context, embed(context))
        return self._text[1]

    def layer(self, i: int) -> LayerCache:
        return self.layers[i]

    def begin_chunk(self, frames: torch.Tensor, tokens_per_frame: int, cfg: WindowConfig) -> None:
        """Evict frames outside the window of the chunk starting at frames[0]."""
        if self.tokens_per_frame and tokens_per_frame != self.tokens_per_frame:
            raise ValueError("every chunk streamed through one cache must have the same frame size")
        self.tokens_per_frame = tokens_per_frame
        if len(frames) % cfg.frames_per_chunk:
            raise ValueError(
                f"a streamed chunk must hold a multiple of frames_per_chunk={cfg.frames_per_chunk} frames"
            )
        start = int(frames[0])
        if cfg.local_attn_frames != -1 and self.frames:
            recent = cfg.local_attn_frames - cfg.sink_frames - cfg.frames_per_chunk
            keep_frames = [i for i, f in enumerate(self.frames) if f < cfg.sink_frames or f >= start - recent]
            if len(keep_frames) < len(self.frames):
                index = torch.tensor(
                    [i * tokens_per_frame + j for i in keep_frames for j in range(tokens_per_frame)],
                    dtype=torch.long,
                )
                for layer in self.layers:
                    layer.keep(index.to(layer.k.device))
                self.frames = [self.frames[i] for i in keep_frames]
        self._pending = [int(f) for f in frames]

    def end_chunk(self) -> None:
        if self.writing:
            self.frames.extend(self._pending)
            self.next_frame = self._pending[-1] + 1
        self._pending = []

    @property
    def num_cached_frames(self) -> int:
        return len(self.frames)


_READ_ONLY = KVCache(0)  # the owner of frozen layer caches: never writing
