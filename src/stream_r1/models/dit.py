"""The one DiT class: a Wan 2.1-style video transformer for teacher, critic and streaming student.

Architecture (Wan 2.1): 3-D patch embedding, timestep AdaLN modulation (six vectors per block),
self-attention with RMS q/k norm and 3-D RoPE, text cross-attention, GELU feed-forward. Parameter
names follow the original Wan checkpoints so that `wan_io` maps them key by key.

`causal=True` makes self-attention block-causal over chunks of `frames_per_chunk` latent frames; a
`KVCache` lets the same model stream chunk by chunk, with RoPE positions continuing across chunks and
an optional rolling window (`local_attn_frames`) that always keeps the first `sink_frames` frames.
Two optional toy-scale extensions (off at paper scale): a per-frame convolutional stem and head.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..common.config import from_section
from .kv_cache import KVCache, LayerCache


@dataclass
class DiTConfig:
    """Shapes and switches of the DiT; plain data, saved beside every checkpoint."""

    in_channels: int = 3
    out_channels: int = 3
    dim: int = 128
    ffn_dim: int = 512
    num_heads: int = 4
    num_layers: int = 6
    text_dim: int = 32
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 4, 4)
    eps: float = 1e-6
    cross_attn_norm: bool = True
    rope_theta: float = 10000.0
    causal: bool = False
    frames_per_chunk: int = 3
    local_attn_frames: int = -1  # attention window in frames incl. the current chunk; -1 = unlimited
    sink_frames: int = 0  # first frames always kept in the window
    conv_stem_channels: int = 0  # toy extension: per-frame conv stem before patch embedding (0 = off)
    conv_head_channels: int = 0  # toy extension: per-frame residual conv after unpatchify (0 = off)
    # Toy extension: a second per-frame residual conv that also sees the noise level σ as an input channel, so
    # it can sharpen edges near σ = 0 and stay out of the way at high noise (0 = off). Its last layer starts
    # at zero, so it can be added to a trained model without changing its output.
    refine_channels: int = 0
    # What the network's last layer outputs. "flow" (Wan): the flow itself. "x0": the clean latent, turned
    # into the flow (x_t − x̂0)/σ with σ floored at `x0_min_sigma`; a small pixel-space model denoises
    # far better predicting clean data than noise (the forward still returns the flow either way).
    # Toy extension: a learned embedding of each token's absolute frame index (sinusoidal features, zero-
    # initialised projection). RoPE alone is relative; the toy teacher must know where in the clip a frame
    # is to place a constant-velocity object. Streaming passes absolute indices, so the cache stays exact.
    frame_embedding: bool = False
    # Frames at index >= this share the embedding of index horizon - 1 (-1: no limit). A stream longer than
    # the clips the embedding was trained on then stays inside its range (docs/method.md §2.4).
    frame_embedding_horizon: int = -1
    # Toy extension: padding of the per-frame convs. "circular" suits the long world, whose frames wrap around
    # (an object leaving one edge enters at the opposite one); the parameters are the same either way.
    conv_padding: str = "zeros"
    prediction: str = "flow"
    x0_min_sigma: float = 0.05

    def __post_init__(self) -> None:
        self.patch_size = tuple(int(p) for p in self.patch_size)  # type: ignore[assignment]
        head_dim = self.dim // self.num_heads
        if self.dim % self.num_heads or head_dim % 2 or head_dim < 6:
            raise ValueError(f"dim {self.dim} / heads {self.num_heads} must give an even head_dim >= 6")
        if self.conv_padding not in ("zeros", "circular"):
            raise ValueError(f"conv_padding must be 'zeros' or 'circular', got {self.conv_padding!r}")
        if self.frame_embedding_horizon != -1 and self.frame_embedding_horizon < 1:
            raise ValueError(f"frame_embedding_horizon must be -1 (no limit) or >= 1, "
                             f"got {self.frame_embedding_horizon}")
        if self.prediction not in ("flow", "x0"):
            raise ValueError(f"prediction must be 'flow' or 'x0', got {self.prediction!r}")
        if self.local_attn_frames != -1 and self.local_attn_frames < self.sink_frames + self.frames_per_chunk:
            raise ValueError(
                "local_attn_frames must cover sink_frames + frames_per_chunk "
                f"({self.sink_frames}+{self.frames_per_chunk}); got {self.local_attn_frames}"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DiTConfig:
        return from_section(cls, d, "DiT config")


# ---------------------------------------------------------------------------------------------
# Embeddings


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Wan's timestep embedding: [cos | sin] of t · 10000^(-i/half), t on the 0..1000 scale."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    args = t.double().unsqueeze(-1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).float()


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """How Wan splits a head's channels between the frame, height and width axes."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_angles(
    head_dim: int, frames: torch.Tensor, height: int, width: int, theta: float
) -> torch.Tensor:
    """Rotation angles [N, head_dim/2] for tokens on a (frames × height × width) grid, frame-major.

    `frames` holds absolute frame positions, so a chunk streamed later continues the RoPE positions.
    """
    dims = rope_split(head_dim)
    device = frames.device

    def axis(pos: torch.Tensor, d: int) -> torch.Tensor:
        inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=device) / d)
        return pos.double().unsqueeze(-1) * inv

    f = axis(frames, dims[0])
    h = axis(torch.arange(height, device=device), dims[1])
    w = axis(torch.arange(width, device=device), dims[2])
    nf, nh, nw = len(frames), height, width
    grid = torch.cat(
        [
            f.view(nf, 1, 1, -1).expand(nf, nh, nw, -1),
            h.view(1, nh, 1, -1).expand(nf, nh, nw, -1),
            w.view(1, 1, nw, -1).expand(nf, nh, nw, -1),
        ],
        dim=-1,
    )
    return grid.reshape(nf * nh * nw, -1)


def rope_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Unit complex numbers e^{i·angle} [N, D/2], computed once per forward and shared by every layer."""
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def apply_rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of x [B, H, N, D] as complex numbers by `rotation` [N, D/2] (Wan's form)."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)


# ---------------------------------------------------------------------------------------------
# Layers


class RMSNorm(nn.Module):
    """RMS norm with a learned gain, as Wan's q/k norm."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype) * self.weight


class SelfAttention(nn.Module):
    """Multi-head self-attention with RMS q/k norm (over the full width) and 3-D RoPE."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, -1).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        rotation: torch.Tensor,
        mask: torch.Tensor | None,
        cache: LayerCache | None,
    ) -> torch.Tensor:
        q = apply_rope(self.heads(self.norm_q(self.q(x))), rotation)
        k = apply_rope(self.heads(self.norm_k(self.k(x))), rotation)
        v = self.heads(self.v(x))
        if cache is not None:
            k, v = cache.context(k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o(out.transpose(1, 2).flatten(2))


class CrossAttention(nn.Module):
    """Text cross-attention with RMS q/k norm (no RoPE)."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the text tokens, [B, heads, L, head_dim]."""
        b, length, _ = context.shape
        k = self.norm_k(self.k(context)).view(b, length, self.num_heads, -1).transpose(1, 2)
        v = self.v(context).view(b, length, self.num_heads, -1).transpose(1, 2)
        return k, v

    def forward(self, x: torch.Tensor, context: torch.Tensor, cache: LayerCache | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q = self.norm_q(self.q(x)).view(b, n, self.num_heads, -1).transpose(1, 2)
        if cache is not None and not torch.is_grad_enabled():
            k, v = cache.text_kv(context, self.context_kv)  # a streamed video's text is fixed: once per video
        else:
            k, v = self.context_kv(context)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o(out.transpose(1, 2).reshape(b, n, d))


class DiTBlock(nn.Module):
    """One Wan block: AdaLN-modulated self-attention, cross-attention, AdaLN-modulated FFN."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.eps)
        self.norm3 = nn.LayerNorm(dim, eps=cfg.eps) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.eps)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        x: torch.Tensor,
        e: torch.Tensor,
        context: torch.Tensor,
        rotation: torch.Tensor,
        mask: torch.Tensor | None,
        cache: LayerCache | None,
    ) -> torch.Tensor:
        # e: [B, N or 1, 6, dim] per-token modulation (tokens of a frame share their frame's timestep)
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation.unsqueeze(0) + e).unbind(2)
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + self.self_attn(h, rotation, mask, cache) * gate1
        x = x + self.cross_attn(self.norm3(x), context, cache)
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + self.ffn(h) * gate2


class Head(nn.Module):
    """Wan's output head: modulated LayerNorm, then a linear map to patch pixels."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, cfg.out_channels * math.prod(cfg.patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation.unsqueeze(0) + e.unsqueeze(2)).unbind(2)
        return self.head(self.norm(x) * (1 + scale) + shift)


class FrameConv(nn.Module):
    """Per-frame 2-D convolutions (no temporal mixing, so causality is untouched).

    The last layer starts at zero: used as a residual, it can be added to a trained model without changing it.
    """

    def __init__(self, in_ch: int, hidden: int, out_ch: int, padding_mode: str = "zeros") -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 3, padding=1, padding_mode=padding_mode),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode=padding_mode),
            nn.GELU(),
            nn.Conv2d(hidden, out_ch, 3, padding=1, padding_mode=padding_mode),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        y = self.net(x.transpose(1, 2).reshape(b * f, c, h, w))
        return y.view(b, f, -1, h, w).transpose(1, 2)


# ---------------------------------------------------------------------------------------------
# The model


@dataclass
class _Grid:
    frames: int
    height: int
    width: int
    start_frame: int = 0

    @property
    def tokens_per_frame(self) -> int:
        return self.height * self.width


class DiT(nn.Module):
    """Wan 2.1-style flow-prediction transformer over latent video [B, C, F, H, W]."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        stem_out = cfg.in_channels
        if cfg.conv_stem_channels:
            self.conv_stem = FrameConv(
                cfg.in_channels, cfg.conv_stem_channels, cfg.conv_stem_channels, cfg.conv_padding
            )
            stem_out = cfg.conv_stem_channels
        self.patch_embedding = nn.Conv3d(stem_out, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        if cfg.frame_embedding:
            self.frame_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.num_layers)])
        self.head = Head(cfg)
        if cfg.conv_head_channels:
            self.conv_head = FrameConv(cfg.out_channels * 2, cfg.conv_head_channels, cfg.out_channels, cfg.conv_padding)
        if cfg.refine_channels:
            self.refine = FrameConv(
                cfg.out_channels * 2 + 1, cfg.refine_channels, cfg.out_channels, cfg.conv_padding
            )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        nn.init.zeros_(self.head.head.weight)
        nn.init.zeros_(self.head.head.bias)
        if self.cfg.frame_embedding:  # starts as a no-op, so it can be added to a trained model
            nn.init.zeros_(self.frame_embedding[2].weight)

    # -- helpers ---------------------------------------------------------------------------

    def _timestep_modulation(self, t: torch.Tensor, grid: _Grid, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token time embedding e [B, N, dim] and block modulation e0 [B, N, 6, dim].

        When every frame shares one timestep (samplers, the teacher) both keep a token axis of 1 and
        broadcast: the same values, without materialising N copies.
        """
        if t.dim() == 0:
            t = t.expand(batch)
        if t.dim() == 1:
            e = self.time_embedding(sinusoidal_embedding(t, self.cfg.freq_dim))  # [B, dim]
            return e.unsqueeze(1), self.time_projection(e).view(batch, 1, 6, -1)
            t = t.unsqueeze(1).expand(batch, grid.frames)
        if t.shape != (batch, grid.frames):
            raise ValueError(f"timestep must be [B] or [B, F={grid.frames}], got {tuple(t.shape)}")
        e = self.time_embedding(sinusoidal_embedding(t.reshape(-1), self.cfg.freq_dim))  # [B*F, dim]
        e0 = self.time_projection(e).view(batch, grid.frames, 6, -1)
        e = e.view(batch, grid.frames, -1)
        tpf = grid.tokens_per_frame
        return e.repeat_interleave(tpf, dim=1), e0.repeat_interleave(tpf, dim=1)

    def attention_mask(self, grid: _Grid, device: torch.device) -> torch.Tensor | None:
        """Block-causal (and windowed) boolean mask for a full-sequence forward; None if bidirectional."""
        if not self.cfg.causal:
            return None
        frame = torch.arange(grid.frames, device=device) + grid.start_frame
        vis = frame_visibility(frame, frame, self.cfg)
        return vis.repeat_interleave(grid.tokens_per_frame, 0).repeat_interleave(grid.tokens_per_frame, 1)

    def unpatchify(self, x: torch.Tensor, grid: _Grid) -> torch.Tensor:
        """[B, N, prod(patch)*C] -> [B, C, F*pt, H*ph, W*pw] in Wan's (p, q, r, c) order."""
        pt, ph, pw = self.cfg.patch_size
        b = x.shape[0]
        c = self.cfg.out_channels
        x = x.view(b, grid.frames, grid.height, grid.width, pt, ph, pw, c)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)
        return x.reshape(b, c, grid.frames * pt, grid.height * ph, grid.width * pw)

    # -- forward ---------------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        kv_cache: KVCache | None = None,
        start_frame: int = 0,
    ) -> torch.Tensor:
        """Predict the flow (noise − data) for latent x [B, C, F, H, W] at timesteps t (0..1000).

        With `kv_cache`, x is one chunk that attends to the cached frames and to itself; the cache is
        written only while `kv_cache.writing` is on. Without a cache a causal model applies the
        block-causal mask over the whole sequence, whose first frame sits at `start_frame`.
        """
        cfg = self.cfg
        b = x.shape[0]
        if x.shape[1] != cfg.in_channels:
            raise ValueError(f"input has {x.shape[1]} channels, the model expects {cfg.in_channels}")
        latent = x
        if cfg.conv_stem_channels:
            x = self.conv_stem(x)
        x = self.patch_embedding(x)  # [B, dim, F', H', W']
        if kv_cache is not None:
            start_frame = kv_cache.next_frame
        grid = _Grid(x.shape[2], x.shape[3], x.shape[4], start_frame)
        x = x.flatten(2).transpose(1, 2)  # [B, N, dim]
        e, e0 = self._timestep_modulation(t, grid, b)
        if kv_cache is not None and not torch.is_grad_enabled():
            ctx = kv_cache.embed_text(context, self.text_embedding)
        else:
            ctx = self.text_embedding(context)
        frames = torch.arange(grid.frames, device=x.device) + grid.start_frame
        if cfg.frame_embedding:
            index = frames if cfg.frame_embedding_horizon == -1 else frames.clamp(max=cfg.frame_embedding_horizon - 1)
            fe = self.frame_embedding(sinusoidal_embedding(index.float(), cfg.freq_dim))  # [F, dim]
            x = x + fe.repeat_interleave(grid.tokens_per_frame, dim=0).unsqueeze(0)
        angles = rope_angles(cfg.dim // cfg.num_heads, frames, grid.height, grid.width, cfg.rope_theta)
        rotation = rope_rotation(angles)
        mask = None
        if kv_cache is None:
            mask = self.attention_mask(grid, x.device)
        else:
            kv_cache.begin_chunk(frames, grid.tokens_per_frame, cfg)
        for i, block in enumerate(self.blocks):
            layer_cache = kv_cache.layer(i) if kv_cache is not None else None
            x = block(x, e0, ctx, rotation, mask, layer_cache)
        if kv_cache is not None:
            kv_cache.end_chunk()
        out = self.unpatchify(self.head(x, e), grid)
        if cfg.conv_head_channels:
            out = out + self.conv_head(torch.cat([out, latent], dim=1))
        if cfg.refine_channels:
            sigma = self._frame_sigma(t, b, out.shape[2]).expand(b, 1, *out.shape[2:])
            out = out + self.refine(torch.cat([out, latent, sigma], dim=1))
        if cfg.prediction == "x0":
            sigma = self._frame_sigma(t, b, out.shape[2]).clamp_min(cfg.x0_min_sigma)
            out = (latent - out) / sigma
        return out

    @staticmethod
    def _frame_sigma(t: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """σ = t/1000 broadcast to [B, 1, F, 1, 1] from t of shape [], [B] or [B, F]."""
        t = t.float() / 1000.0
        if t.dim() == 0:
            t = t.expand(batch)
        if t.dim() == 1:
            t = t.unsqueeze(1).expand(batch, frames)
        return t.view(batch, 1, frames, 1, 1)

    def new_cache(self) -> KVCache:
        """An empty KV cache for streaming this (causal) model chunk by chunk."""
        if not self.cfg.causal:
            raise ValueError("a KV cache needs a causal model; build the DiT with causal=True")
        return KVCache(self.cfg.num_layers)


def frame_visibility(query_frames: torch.Tensor, key_frames: torch.Tensor, cfg: DiTConfig) -> torch.Tensor:
    """Which key frames a query frame may attend to under the block-causal, windowed rule.

    A query in chunk c sees every frame up to the end of chunk c; with a rolling window of
    `local_attn_frames` it keeps the `sink_frames` first frames and the most recent past frames so
    that sink + past + current chunk fit the window.
    """
    fpc = cfg.frames_per_chunk
    q_chunk = (query_frames // fpc).unsqueeze(1)
    k_chunk = (key_frames // fpc).unsqueeze(0)
    vis = k_chunk <= q_chunk
    if cfg.local_attn_frames != -1:
        chunk_start = q_chunk * fpc
        recent = cfg.local_attn_frames - cfg.sink_frames - fpc
        kf = key_frames.unsqueeze(0)
        in_window = (kf >= chunk_start - recent) | (kf < cfg.sink_frames)
        vis = vis & in_window
    return vis
