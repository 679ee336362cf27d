"""Memory planner of a distillation run (`stream-r1 memory`; README "Memory at paper scale").

Per GPU and per host: parameters, gradients, AdamW state, EMA, the frozen teacher, text encoder, reward and
VAE, FSDP blocks gathered in flight, activations, the KV cache and the reward's saliency pass; then the peak
of one training step and a verdict that names the term to change.

Model sizes are counted on the meta device from the real architectures. Activations are measured, not
guessed: one DiT block of the config's own width runs on fake tensors (FakeTensorMode: real shapes and
dtypes, no arithmetic, no memory) at the real chunk length against a KV cache of the real context length,
and the tensors autograd saves for backward are counted with `saved_tensors_hooks`; the bytes are then
summed over layers and chunks. Transients (the teacher's CFG forward, the VAE decode, a block's backward)
are the peak of live tensor bytes counted by `LiveBytes`, the CPU analogue of torch.cuda.max_memory_allocated.
The reward (Qwen2-VL) runs for real at 1/16 and 1/8 of its width and at two depths, then is extrapolated.
"""

from __future__ import annotations

import functools
import gc
import math
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..common.config import ConfigError
from ..models.dit import DiT, DiTBlock, DiTConfig, frame_visibility
from ..models.kv_cache import KVCache, LayerCache

GB = 1e9
HEADROOM = 0.9  # share of a GPU's memory the plan may use: the rest is CUDA context, allocator slack, NCCL buffers
WAN_BASE = dict(in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, patch_size=(1, 2, 2))
WAN_SIZES = {  # Wan 2.1 T2V transformer widths (the checkpoints' config.json)
    "14B": dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40),
    "1.3B": dict(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
}
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                feed_forward_proj="gated-gelu", relative_attention_num_buckets=32)
QWEN2VL_2B = dict(  # Qwen2-VL-2B-Instruct, VideoReward's backbone
    text=dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
              num_key_value_heads=2, vocab_size=151936, mrope_section=[16, 24, 24]),
    vision=dict(depth=32, embed_dim=1280, hidden_size=1536, mlp_ratio=4, num_heads=16))
WAN_VAE = {}  # AutoencoderKLWan's defaults are Wan 2.1's VAE
LORA_TARGETS = ["q", "k", "v", "o", "ffn.0", "ffn.2"]  # used when train.lora names no targets
AC_MODES = ("none", "full", "every_n")


# ---------------------------------------------------------------------------------------------
# Counting memory


class LiveBytes(TorchDispatchMode):
    """Live and peak bytes of tensor storages made by ops under this mode (and of `existing` tensors).

    Each storage is counted once (views share it) and leaves the count when it is freed (a weak reference).
    Works on real and fake tensors alike.
    """

    def __init__(self, existing=()) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._refs: dict[int, weakref.ref] = {}
        for t in existing:
            self.track(t)

    def track(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        key = id(st)
        if key in self._refs:
            return
        n = st.nbytes()
        self._refs[key] = weakref.ref(st, functools.partial(self._free, key, n))
        self.live += n
        self.peak = max(self.peak, self.live)

    def _free(self, key: int, n: int, _ref) -> None:
        if self._refs.pop(key, None) is not None:
            self.live -= n

    def reset_peak(self) -> None:
        self.peak = self.live

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.track(t)
        return out


def live_tensors() -> list[torch.Tensor]:
    """Every tensor the garbage collector can see (parameters, gradients, optimizer state, buffers, caches)."""
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.device.type != "meta"]


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors`."""
    seen: dict[int, int] = {}
    for t in tensors:
        st = t.untyped_storage()
        seen[id(st)] = st.nbytes()
    return sum(seen.values())


class SavedBytes:
    """Bytes autograd saves for backward inside this context, parameters excluded, each storage once."""

    def __init__(self, exclude=()) -> None:
        self.exclude = {id(p.untyped_storage()) for p in exclude}
        self.saved: dict[int, int] = {}
        self._keep: list = []

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if id(st) not in self.exclude:
            self.saved[id(st)] = st.nbytes()
            self._keep.append(st)  # keeps ids unique while counting
        return t

    def __enter__(self) -> SavedBytes:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.saved.values())


def _fake_mode():
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode(allow_non_fake_inputs=True)


def _build(cls, cfg, dtype: torch.dtype):
    """`cls(cfg)` with parameters made in `dtype` (fake tensors cannot be converted by `.to` afterwards)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return cls(cfg)
    finally:
        torch.set_default_dtype(old)


def _autocast(dtype: torch.dtype | None):
    import contextlib

    return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# What the planner needs to know


@dataclass
class RunSettings:
    """The parts of a distillation config that decide memory."""

    micro_batch: int = 1
    batch_size: int = 1
    pixel_frames: int = 81
    height: int = 480
    width: int = 832
    cfg_guidance: bool = True  # teacher runs cond + uncond as one batch
    ac: str = "none"  # train.activation_checkpointing
    ac_every: int = 1
    lora: dict | None = None
    compile: bool = False
    teacher: str = "shard"  # distributed.teacher: shard | offload
    precision: str = "fp32"  # distributed.mixed_precision
    reweight: bool = True
    intra: bool = True
    reward: dict = field(default_factory=dict)  # the reward section (fps, pixels, dtype, gradient_checkpointing)
    dry_run: bool = False

    @classmethod
    def from_config(cls, config: dict, dry_run: bool = False) -> RunSettings:
        t, d, v = config.get("train", {}), config.get("distributed") or {}, config.get("video", {})
        if dry_run:
            from .components import DRY_RUN_SHAPES, dry_run_config

            t = dry_run_config(config)["train"]
            v = {"height": DRY_RUN_SHAPES["height"], "width": DRY_RUN_SHAPES["width"]}
        ac = t.get("activation_checkpointing", "none") or "none"
        if ac not in AC_MODES:
            raise ConfigError(f"train.activation_checkpointing={ac!r}; choose one of {AC_MODES}")
        teacher = d.get("teacher", "shard")
        if teacher not in ("shard", "offload"):
            raise ConfigError(f"distributed.teacher={teacher!r}; choose shard or offload")
        reward = config.get("reward") or {}
        reward = dict(reward) if isinstance(reward, dict) else {"path": reward}
        if dry_run:
            reward.update(fps=None, min_pixels=28 * 28 * 4, max_pixels=56 * 56)
        rw = config.get("reweight") or {}
        return cls(micro_batch=int(t.get("micro_batch_size", 1)), batch_size=int(t.get("batch_size", 1)),
                   pixel_frames=int(t.get("frames", 81)), height=int(v.get("height", 480)),
                   width=int(v.get("width", 832)),
                   cfg_guidance=float(config.get("dmd", {}).get("guidance", 3.0)) != 1.0,
                   ac=ac, ac_every=int(t.get("activation_checkpointing_every", 1)), lora=t.get("lora") or None,
                   compile=bool(t.get("compile", False)), teacher=teacher,
                   precision=str(d.get("mixed_precision", "fp32")),
                   reweight=bool(rw), intra=bool(rw.get("intra", True)) if rw else False, reward=reward,
                   dry_run=dry_run)


@dataclass
class ModelSpec:
    """Shapes and sizes of the run's networks: counted from the real architectures or from built modules."""

    student: DiTConfig
    critic: DiTConfig
    teacher: DiTConfig
    params: dict[str, int]  # student, critic, teacher, text, reward, vae
    bytes_per_param: dict[str, int]  # frozen models: as loaded (teacher, text, reward, vae)
    latent_channels: int = 16
    time_factor: int = 4
    space_factor: int = 8
    text_dim: int = 4096
    reward_model: object = None  # a built reward to measure directly (small models)
    reward_config: dict | None = None  # else Qwen2-VL widths to build reduced copies of
    codec: object = None  # a built codec to measure directly, else the Wan VAE on fake tensors
    teacher_autocast: torch.dtype | None = torch.bfloat16
    text_len: int = 512
    causal_time: bool = True  # Wan VAE: T = time_factor·(F − 1) + 1 pixel frames for F latent frames

    def latent_frames(self, pixel_frames: int) -> int:
        if self.causal_time:
            return (pixel_frames - 1) // self.time_factor + 1
        return pixel_frames // self.time_factor

    def pixel_frames(self, latent_frames: int) -> int:
        return self.time_factor * (latent_frames - 1) + 1 if self.causal_time else self.time_factor * latent_frames


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def dit_params(cfg: DiTConfig) -> int:
    """Parameters of our DiT at `cfg`, built on the meta device."""
    with torch.device("meta"):
        return count_params(DiT(cfg))


def wan_size(path: str, role: str) -> dict:
    """The Wan 2.1 width of a checkpoint: its config.json, else 14B / 1.3B in its name (Self-Forcing is 1.3B)."""
    import json

    p = Path(path)
    for cfg_file in (p / "config.json", p / "transformer" / "config.json"):
        if cfg_file.is_file():
            c = json.loads(cfg_file.read_text())
            heads = c.get("num_heads") or c.get("num_attention_heads")
            dim = c.get("dim") or heads * c.get("attention_head_dim", 128)
            return dict(dim=dim, ffn_dim=c["ffn_dim"], num_heads=heads, num_layers=c["num_layers"])
    name = p.name.lower()
    for size in WAN_SIZES:
        if size.lower() in name:
            return WAN_SIZES[size]
    if "self_forcing" in name or "self-forcing" in name:
        return WAN_SIZES["1.3B"]
    raise ConfigError(f"{role}={path!r}: cannot tell its Wan size; put its config.json there, or name it "
                      "with 14B or 1.3B (e.g. checkpoints/Wan2.1-T2V-14B)")


def _entry_path(entry) -> str:
    return entry["path"] if isinstance(entry, dict) else entry


def paper_model_spec(config: dict) -> ModelSpec:
    """ModelSpec of a `family: wan` config from the real architectures, without reading any weights."""
    from transformers import Qwen2VLModel, UMT5Config, UMT5EncoderModel

    student_extra = {k: v for k, v in (config.get("student") or {}).items()}
    teacher = DiTConfig(**WAN_BASE, **wan_size(_entry_path(config["teacher"]), "teacher"))
    critic_path = _entry_path(config.get("critic_init") or config["teacher"])
    critic = DiTConfig(**WAN_BASE, **wan_size(critic_path, "critic_init"))
    student = DiTConfig(**{**WAN_BASE, **wan_size(_entry_path(config["student_init"]), "student_init"),
                           "causal": True, **student_extra})
    frozen = 2 if str(config.get("dtype", "bfloat16")) in ("bfloat16", "bf16", "float16") else 4
    with torch.device("meta"):
        text = count_params(UMT5EncoderModel(UMT5Config(**UMT5_XXL)))
        reward = 0
        if config.get("reweight") and config.get("reward"):
            head = 3 * QWEN2VL_2B["text"]["hidden_size"]  # rm_head: one linear map to 3 axes, no bias
            reward = count_params(Qwen2VLModel(qwen2vl_config(1.0, QWEN2VL_2B))) + head
        vae = count_params(_vae(**WAN_VAE))
    section = config.get("reward")
    rdt = section.get("dtype", "bfloat16") if isinstance(section, dict) else "bfloat16"
    params = {"student": dit_params(student), "critic": dit_params(critic), "teacher": dit_params(teacher),
              "text": text, "reward": reward, "vae": vae}
    return ModelSpec(student, critic, teacher, params=params,
                     bytes_per_param={"teacher": frozen, "text": frozen, "vae": 4,
                                      "reward": 2 if rdt in ("bfloat16", "bf16") else 4},
                     reward_config=QWEN2VL_2B if reward else None,
                     text_len=int((config.get("text") or {}).get("max_length", 512)))


def _vae(**kwargs):
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(**kwargs)


def spec_from_modules(teacher: nn.Module, critic: DiT, generator: DiT, text, codec, reward=None) -> ModelSpec:
    """ModelSpec of built networks: exact parameter counts and dtypes (tests, benchmarks, small runs)."""
    from .components import Autocast

    inner = teacher.module if isinstance(teacher, Autocast) else teacher

    def nbytes(m) -> int:
        ps = list(m.parameters()) if isinstance(m, nn.Module) else []
        return ps[0].element_size() if ps else 4

    modules = {"text": text, "reward": reward, "vae": codec}
    params = {"student": count_params(generator), "critic": count_params(critic), "teacher": count_params(inner)}
    params.update({k: count_params(m) if isinstance(m, nn.Module) else 0 for k, m in modules.items()})
    params["reward"] = params["reward"] if reward is not None else 0
    bpp = {"teacher": nbytes(inner), **{k: nbytes(m) for k, m in modules.items()}}
    with torch.no_grad():
        probe = text([""])  # [1, L, text_dim]: the length cross-attention sees
    return ModelSpec(generator.cfg, critic.cfg, inner.cfg, params, bpp,
                     latent_channels=codec.latent_channels, time_factor=codec.time_factor,
                     space_factor=codec.space_factor, text_dim=int(probe.shape[-1]), reward_model=reward, codec=codec,
                     teacher_autocast=teacher.dtype if isinstance(teacher, Autocast) else None,
                     text_len=int(probe.shape[1]), causal_time=hasattr(codec, "latent_frames"))


def model_spec(config: dict, dry_run: bool = False) -> ModelSpec:
    """The config's networks: paper-scale sizes by name, or (toy, --dry-run) the built small networks."""
    from .components import build_components, build_reward, family_of

    if family_of(config) == "wan" and not dry_run:
        return paper_model_spec(config)
    parts = build_components(config, dry_run)
    reward = None
    if config.get("reweight") and config.get("reward"):
        reward = build_reward(config, dry_run)
    return spec_from_modules(parts.teacher, parts.critic, parts.generator, parts.text, parts.codec, reward)


# ---------------------------------------------------------------------------------------------
# Measurements (one DiT block, fake tensors)


@dataclass
class BlockMeasure:
    """Bytes of one DiT block for one forward of B samples (measured on fake tensors)."""

    saved: int  # tensors saved for backward (parameters excluded)
    block_input: int  # the block's input x: what a checkpointed block keeps
    backward_extra: int  # peak live bytes of the block's backward (its weight gradients excluded)


@dataclass(frozen=True)
class Precision:
    """Parameter dtype and autocast dtype a network runs with (FSDP2 bf16: both bf16)."""

    params: torch.dtype = torch.float32
    autocast: torch.dtype | None = None

    @classmethod
    def named(cls, name: str) -> Precision:
        return cls(torch.bfloat16, torch.bfloat16) if name == "bf16" else cls()


_CACHE: dict = {}


def _cached(fn):
    """Memoise a measurement on the repr of its arguments (DiTConfig is a plain, unhashable dataclass)."""

    @functools.wraps(fn)
    def wrapper(*args):
        key = (fn.__name__, repr(args))
        if key not in _CACHE:
            _CACHE[key] = fn(*args)
        return _CACHE[key]

    return wrapper


def _block_inputs(cfg: DiTConfig, batch: int, tokens: int, text_len: int, dtype: torch.dtype):
    hd = cfg.dim // cfg.num_heads
    x = torch.randn(batch, tokens, cfg.dim, dtype=dtype, requires_grad=True)
    e0 = torch.randn(batch, 1, 6, cfg.dim, dtype=dtype)
    ctx = torch.randn(batch, text_len, cfg.dim, dtype=dtype)
    rotation = torch.randn(tokens, hd // 2, dtype=torch.complex64)
    return x, e0, ctx, rotation


def _kv_dtype(cfg: DiTConfig, block: DiTBlock, batch: int, tpf: int, text_len: int, prec: Precision) -> torch.dtype:
    """The dtype the block writes into its KV cache (found by one cache-writing forward)."""
    owner = KVCache(1)
    owner.writing = True
    x, e0, ctx, rot = _block_inputs(cfg, batch, tpf, text_len, prec.params)
    with torch.no_grad(), _autocast(prec.autocast):
        block(x, e0, ctx, rot, None, owner.layer(0))
    return owner.layer(0).k.dtype


def _read_only_cache(cfg: DiTConfig, batch: int, frames: int, tpf: int, dtype: torch.dtype) -> LayerCache | None:
    """A read-only layer cache holding `frames` frames of keys and values (None when empty)."""
    if not frames:
        return None
    layer = KVCache(1).layer(0)
    hd = cfg.dim // cfg.num_heads
    layer.k = torch.randn(batch, cfg.num_heads, frames * tpf, hd, dtype=dtype)
    layer.v = torch.randn(batch, cfg.num_heads, frames * tpf, hd, dtype=dtype)
    return layer


@_cached
def measure_block(cfg: DiTConfig, batch: int, tokens: int, text_len: int, context: int, tpf: int,
                  prec: Precision) -> BlockMeasure:
    """One block's forward and backward on fake tensors: `tokens` queries against `context` cached frames."""
    with _fake_mode():
        block = _build(DiTBlock, cfg, prec.params)
        cache = _read_only_cache(cfg, batch, context, tpf, _kv_dtype(cfg, block, batch, tpf, text_len, prec))
        x, e0, ctx, rot = _block_inputs(cfg, batch, tokens, text_len, prec.params)
        with SavedBytes(exclude=block.parameters()) as saved, _autocast(prec.autocast):
            y = block(x, e0, ctx, rot, None, cache)
        grad_out = torch.randn_like(y)
        weight_grads = sum(p.numel() * p.element_size() for p in block.parameters())
        with LiveBytes() as live:
            y.backward(grad_out)
        return BlockMeasure(saved.total, x.numel() * x.element_size(), max(0, live.peak - weight_grads))


@_cached
def measure_block_no_grad(cfg: DiTConfig, batch: int, tokens: int, text_len: int, prec: Precision) -> int:
    """Peak live bytes of one block's forward without grad (the teacher's and the critic's DMD scores)."""
    with _fake_mode():
        block = _build(DiTBlock, cfg, prec.params)
        x, e0, ctx, rot = _block_inputs(cfg, batch, tokens, text_len, prec.params)
        x.requires_grad_(False)
        with LiveBytes() as live, torch.no_grad(), _autocast(prec.autocast):
            block(x, e0, ctx, rot, None, None)
    return live.peak


@_cached
def kv_bytes_per_frame(cfg: DiTConfig, batch: int, tpf: int, text_len: int, prec: Precision) -> int:
    """Cached keys + values of one frame in one layer, in the dtype the block writes them."""
    with _fake_mode():
        kv = _kv_dtype(cfg, _build(DiTBlock, cfg, prec.params), batch, tpf, text_len, prec)
    return 2 * batch * cfg.dim * tpf * torch.empty((), dtype=kv).element_size()


@_cached
def measure_outside_blocks(cfg: DiTConfig, batch: int, frames: int, h: int, w: int, text_len: int,
                           prec: Precision) -> tuple[int, int]:
    """Saved bytes of the DiT outside its blocks (embeddings, head) for one forward, and its no-grad peak."""
    bare = replace(cfg, num_layers=0, causal=False)
    with _fake_mode():
        model = _build(DiT, bare, prec.params)
        x = torch.randn(batch, cfg.in_channels, frames, h, w)
        t = torch.full((batch,), 500.0)
        ctx = torch.randn(batch, text_len, cfg.text_dim)
        with SavedBytes(exclude=model.parameters()) as saved, _autocast(prec.autocast):
            model(x, t, ctx)
        with LiveBytes() as live, torch.no_grad(), _autocast(prec.autocast):
            model(x, t, ctx)
    return saved.total, live.peak


def context_frames(cfg: DiTConfig, chunk: int) -> int:
    """Frames in the KV cache when chunk `chunk` runs (the block-causal window rule of dit.frame_visibility)."""
    start = chunk * cfg.frames_per_chunk
    if start == 0:
        return 0
    vis = frame_visibility(torch.tensor([start]), torch.arange(start), cfg)
    return int(vis.sum())


# ---------------------------------------------------------------------------------------------
# Frozen-model passes


@_cached
def measure_vae_decode(spec: ModelSpec, latent_shape: tuple[int, ...]) -> int:
    """Peak bytes of decoding one micro-batch of latents to pixels (output included), no graph."""
    if spec.codec is not None:
        z = torch.randn(latent_shape)
        with LiveBytes() as live, torch.no_grad():
            spec.codec.decode(z)
        return live.peak
    with _fake_mode():
        vae = _vae(**WAN_VAE)
        z = torch.randn(latent_shape)
        with LiveBytes() as live, torch.no_grad():
            vae.decode(z)
    return live.peak


def qwen2vl_config(scale: float, widths: dict, vision_depth: int | None = None, text_depth: int | None = None,
                   tokenizer=None):
    """A Qwen2-VL config at `scale` of the 2B's widths (text heads kept, vision head width kept)."""
    from transformers import Qwen2VLConfig

    t, v = widths["text"], widths["vision"]
    hidden = int(t["hidden_size"] * scale)
    head_dim = hidden // t["num_attention_heads"]
    full_hd = t["hidden_size"] // t["num_attention_heads"]
    mrope = [max(1, int(m * head_dim / full_hd)) for m in t["mrope_section"]]
    mrope[0] += head_dim // 2 - sum(mrope)
    vision_heads = max(1, int(v["num_heads"] * scale))
    ids = {}
    if tokenizer is not None:
        ids = {f"{n}_token_id": tokenizer.convert_tokens_to_ids(tok) for n, tok in
               (("image", "<|image_pad|>"), ("video", "<|video_pad|>"), ("vision_start", "<|vision_start|>"),
                ("vision_end", "<|vision_end|>"))}
    vocab = len(tokenizer) if tokenizer is not None else t["vocab_size"]
    return Qwen2VLConfig(
        text_config=dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=int(t["intermediate_size"] * scale),
                         num_hidden_layers=text_depth or t["num_hidden_layers"],
                         num_attention_heads=t["num_attention_heads"], num_key_value_heads=t["num_key_value_heads"],
                         max_position_embeddings=32768,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope}),
        vision_config=dict(depth=vision_depth or v["depth"],
                           embed_dim=vision_heads * (v["embed_dim"] // v["num_heads"]),
                           hidden_size=hidden, num_heads=vision_heads, mlp_ratio=v["mlp_ratio"], in_channels=3,
                           patch_size=14, temporal_patch_size=2, spatial_merge_size=2),
        **ids)


def _reward_pass_bytes(model: nn.Module, settings: dict, pixel_shape: tuple[int, ...], intra: bool) -> int:
    """Peak live bytes of one reward forward and its three saliency backwards, above the pixels themselves."""
    from ..reward.base import ZScoredReward
    from ..reward.videoreward import OFFICIAL_MEAN, OFFICIAL_STD
    from ..reweight.reweighter import StreamR1Reweighter
    from ..reweight.settings import ReweightSettings

    reward = model if isinstance(model, ZScoredReward) else ZScoredReward(
        model, settings.get("mean", OFFICIAL_MEAN), settings.get("std", OFFICIAL_STD))
    rw = StreamR1Reweighter(reward, lambda p: p, ReweightSettings(intra=intra))
    pixels = torch.rand(pixel_shape)
    prompts = ["a red fox runs through the snow at dusk"] * pixel_shape[0]
    with LiveBytes() as live:
        rw.score_and_saliency(pixels, prompts)
    return live.peak


def measure_reward(spec: ModelSpec, s: RunSettings, pixel_shape: tuple[int, ...]) -> tuple[int, str]:
    """Peak bytes of the reward's scoring + saliency pass for one micro-batch, and how it was obtained."""
    if spec.reward_model is not None:
        return _reward_pass_bytes(spec.reward_model, s.reward, pixel_shape, s.intra), "measured on the model itself"
    if spec.reward_config is None:
        return 0, "no reward"
    from ..reward.qwen2vl_video import sample_frame_indices, smart_resize
    from ..reward.videoreward import STAND_IN_TEMPLATE, VideoRewardModel, VideoRewardSettings, tiny_qwen2vl_tokenizer

    known = set(VideoRewardSettings.__dataclass_fields__)
    settings = VideoRewardSettings(**{k: v for k, v in s.reward.items() if k in known})
    dtype = torch.bfloat16 if settings.dtype in ("bfloat16", "bf16") else torch.float32
    tok = tiny_qwen2vl_tokenizer()
    widths = spec.reward_config
    b, t, _, h, w = pixel_shape
    # The model sees the sampled frames resized: feed exactly those (same token count, no pixel-space work).
    n = len(sample_frame_indices(t, settings.video_fps, settings.fps))
    rh, rw = smart_resize(h, w, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
    reduced = {**s.reward, "fps": None}

    def run(scale: float, vd: int, td: int) -> int:
        config = qwen2vl_config(scale, widths, vd, td, tok)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = VideoRewardModel(config, tok, STAND_IN_TEMPLATE, replace(settings, fps=None), 3).to(dtype)
        model.requires_grad_(False)
        if settings.gradient_checkpointing:  # as it must run (transformers checkpoints in training mode only)
            model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()
        return _reward_pass_bytes(model, reduced, (b, n, 3, rh, rw), s.intra)

    s1, s2 = 1 / 16, 1 / 8
    base1, base2 = run(s1, 1, 1), run(s2, 1, 1)
    base = base1 + (base2 - base1) * (1 - s1) / (s2 - s1)  # linear in width
    vis = (run(s2, 2, 1) - base2) / s2  # a layer's bytes grow with width
    lm = (run(s2, 1, 2) - base2) / s2
    model_part = base + (widths["vision"]["depth"] - 1) * vis + (widths["text"]["num_hidden_layers"] - 1) * lm
    pixel_part = 4 * b * t * h * w * (3 + 3)  # one pixel gradient and the three saliency maps beside the pixels
    how = ("Qwen2-VL classes at 1/16 and 1/8 width and 1-2 layers on the real token count, extrapolated linearly "
           "in width and depth" + (", gradient checkpointing on" if settings.gradient_checkpointing else "")
           + "; + a pixel gradient and 3 saliency maps")
    return int(max(model_part, 0) + pixel_part), how


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass
class Term:
    """One line of the plan: bytes per GPU (and per host) and the phases of a step that hold it."""

    name: str
    gpu: float
    host: float = 0.0
    note: str = ""
    phases: tuple[str, ...] = ()  # () = held through the whole step


PHASES = ("rollout", "generator", "critic")


@dataclass
class Plan:
    gpus: int
    gpu_memory: float  # GB
    terms: list[Term]
    phases: dict[str, float]  # peak bytes per GPU of each phase of a step
    host_steady: float
    host_loading: float
    notes: list[str] = field(default_factory=list)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phases.get)

    @property
    def peak(self) -> float:
        return self.phases[self.peak_phase]

    @property
    def held(self) -> float:
        return sum(t.gpu for t in self.terms if not t.phases)

    @property
    def fits(self) -> bool:
        return self.peak <= HEADROOM * self.gpu_memory * GB

    def biggest(self) -> Term:
        """The largest term present at the peak (terms held all step are always present)."""
        return max((t for t in self.terms if not t.phases or self.peak_phase in t.phases), key=lambda t: t.gpu)

    def verdict(self) -> str:
        big = self.biggest()
        usable = HEADROOM * self.gpu_memory
        head = (f"peak {self.peak / GB:.1f} GB per GPU ({self.peak_phase} phase), {usable:.0f} GB usable "
                f"({HEADROOM:.0%} of {self.gpu_memory:g} GB); largest term: {big.name} ({big.gpu / GB:.1f} GB)")
        if self.fits:
            return "fits: " + head
        return f"does not fit: {head}; to change it: {FIXES.get(big.name, 'use more GPUs')}"


FIXES = {
    "activations: rollout": "set train.activation_checkpointing: full (or a smaller train.micro_batch_size)",
    "activations: critic flow loss": "set train.activation_checkpointing: full (or a smaller train.micro_batch_size)",
    "student": "more GPUs (--gpus) or train.lora",
    "student grads + AdamW": "more GPUs (--gpus) or train.lora",
    "critic": "more GPUs (--gpus) or train.lora",
    "critic grads + AdamW": "more GPUs (--gpus) or train.lora",
    "EMA": "more GPUs (--gpus) or train.lora",
    "teacher": "set distributed.teacher: offload, or use more GPUs",
    "text encoder": "more GPUs (the encoder is sharded)",
    "reward pass": "set reward.gradient_checkpointing: true, or lower reward.max_pixels / reward.fps",
    "reward": "reward.dtype: bfloat16",
    "KV cache": "a smaller student.local_attn_frames",
    "teacher CFG forward": "a smaller train.micro_batch_size",
    "VAE decode": "a smaller train.micro_batch_size",
    "backward transient": "a smaller train.micro_batch_size",
}


def lora_params(cfg: DiTConfig, lora: dict) -> int:
    """Adapter parameters: rank·(in + out) per targeted Linear of the DiT blocks (peft's LoRA)."""
    rank = int(lora.get("rank", 16))
    targets = list(lora.get("targets") or LORA_TARGETS)
    with torch.device("meta"):
        block = DiTBlock(cfg)
    n = 0
    for name, m in block.named_modules():
        if isinstance(m, nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
            n += rank * (m.in_features + m.out_features)
    return n * cfg.num_layers


def _block_params(cfg: DiTConfig) -> tuple[int, int]:
    """Parameters of one block, and of everything outside the blocks."""
    total = dit_params(cfg)
    with torch.device("meta"):
        one = count_params(DiTBlock(cfg))
    return one, total - one * cfg.num_layers


def plan(config: dict, gpus: int, gpu_memory: float = 80.0, gpus_per_host: int = 8, dry_run: bool = False,
         spec: ModelSpec | None = None, settings: RunSettings | None = None) -> Plan:
    """The memory plan of one training step of `config` on `gpus` GPUs of `gpu_memory` GB each."""
    spec = spec or model_spec(config, dry_run)
    s = settings or RunSettings.from_config(config, dry_run)
    return build_plan(spec, s, gpus, gpu_memory, gpus_per_host)


def _state_terms(spec: ModelSpec, s: RunSettings, w: int, gpus_per_host: int) -> list[Term]:
    """Parameters, gradients, AdamW state, EMA, frozen networks and FSDP's gathered blocks."""
    sharded, per, p = w > 1, 1 / w, spec.params
    terms: list[Term] = []
    for role, cfg in (("student", spec.student), ("critic", spec.critic)):
        n = p[role]
        if s.lora:
            k = lora_params(cfg, s.lora)
            terms.append(Term(role, (2 * n + 4 * k) * per, note=f"{n:,} frozen base parameters bf16 + {k:,} LoRA "
                              "adapter parameters fp32" + (", sharded" if sharded else "")))
            terms.append(Term(f"{role} grads + AdamW", 12 * k * per, note="adapters only: fp32 grad + 2 AdamW moments"))
            if role == "student":
                terms.append(Term("EMA", (2 * n + 4 * k) * per, note="a copy of the LoRA student (bf16 base + fp32 "
                                  "adapters)"))
        else:
            terms.append(Term(role, 4 * n * per, note=f"{n:,} parameters, fp32 master weights"
                              + (", sharded" if sharded else "")))
            terms.append(Term(f"{role} grads + AdamW", 12 * n * per,
                              note="fp32 grad 4 B + exp_avg 4 B + exp_avg_sq 4 B"))
            if role == "student":
                terms.append(Term("EMA", 4 * n * per, note="fp32 copy of the student"))
    tb = spec.bytes_per_param["teacher"]
    if s.teacher == "offload":
        terms.append(Term("teacher", 0.0, tb * p["teacher"] * per * min(w, gpus_per_host),
                          note=f"{p['teacher']:,} parameters, {tb} B, offloaded to the host"))
    else:
        terms.append(Term("teacher", tb * p["teacher"] * per,
                          note=f"{p['teacher']:,} parameters, frozen, {tb} B" + (", sharded" if sharded else "")))
    terms.append(Term("text encoder", spec.bytes_per_param["text"] * p["text"] * per,
                      note=f"{p['text']:,} parameters, frozen, {spec.bytes_per_param['text']} B"
                      + (", sharded" if sharded else "")))
    if s.reweight and p["reward"]:
        terms.append(Term("reward", spec.bytes_per_param["reward"] * p["reward"],
                          note=f"{p['reward']:,} parameters, frozen, {spec.bytes_per_param['reward']} B, replicated"))
    terms.append(Term("VAE", spec.bytes_per_param["vae"] * p["vae"],
                      note=f"{p['vae']:,} parameters, {spec.bytes_per_param['vae']} B, replicated"))
    if sharded:
        compute = 2 if s.precision == "bf16" else 4
        inflight, who = 0, ""
        nets = (("student", spec.student, True, compute), ("critic", spec.critic, True, compute),
                ("teacher", spec.teacher, False, tb))
        for role, cfg, trainable, pb in nets:
            one, outside = _block_params(cfg)
            need = (outside + 2 * one) * pb + (4 * one if trainable and not s.lora else 0)
            if need > inflight:
                inflight, who = need, role
        terms.append(Term("gathered blocks in flight", inflight,
                          note=f"the {who}'s root + current and prefetched block unsharded"
                          + (" + one block's fp32 gradient" if who != "teacher" and not s.lora else "")))
    return terms


def build_plan(spec: ModelSpec, s: RunSettings, gpus: int, gpu_memory: float = 80.0,
               gpus_per_host: int = 8) -> Plan:
    """Every term of `spec` trained as `s` says on `gpus` GPUs (FSDP2 shards over all of them when > 1)."""
    w = gpus
    b = max(1, min(s.micro_batch, s.batch_size // w)) if w > 1 else s.micro_batch
    terms = _state_terms(spec, s, w, gpus_per_host)
    prec = Precision.named(s.precision)
    t16 = spec.bytes_per_param["teacher"] == 2
    teacher_prec = Precision(torch.bfloat16 if t16 else torch.float32,
                             spec.teacher_autocast or (torch.bfloat16 if t16 else None))
    c, f = spec.latent_channels, spec.latent_frames(s.pixel_frames)
    h, wd = s.height // spec.space_factor, s.width // spec.space_factor
    st, cc, tc = spec.student, spec.critic, spec.teacher
    _, ph, pw = st.patch_size
    tpf = (h // ph) * (wd // pw)
    fpc = st.frames_per_chunk
    if f % fpc:
        raise ConfigError(f"{f} latent frames is not a whole number of chunks of {fpc}; change train.frames")
    chunks, text_len = f // fpc, spec.text_len
    on = s.ac != "none"

    def checkpointed(layers: int) -> int:
        return {"none": 0, "full": layers, "every_n": math.ceil(layers / max(1, s.ac_every))}[s.ac]

    # Rollout: each chunk's exit-step forward keeps its saved tensors until the generator's backward.
    ctx_frames = [context_frames(st, k) for k in range(chunks)]
    kv_frame = kv_bytes_per_frame(st, b, tpf, text_len, prec)
    outside, _ = measure_outside_blocks(st, b, fpc, h, wd, text_len, prec)
    n_ck = checkpointed(st.num_layers)
    rollout = recompute = roll_bwd = 0
    for n_ctx in ctx_frames:
        m = measure_block(st, b, fpc * tpf, text_len, n_ctx, tpf, prec)
        kept = m.block_input + n_ctx * kv_frame  # a checkpointed block keeps its input and the cache it read
        rollout += outside + (st.num_layers - n_ck) * m.saved + n_ck * kept
        recompute, roll_bwd = max(recompute, m.saved), max(roll_bwd, m.backward_extra)
    rollout_bwd = roll_bwd + (recompute if on else 0)
    kv_cache = st.num_layers * (max(ctx_frames) + fpc) * kv_frame

    # Critic: flow loss on the whole clip, bidirectional.
    tokens = f * tpf
    mc = measure_block(cc, b, tokens, text_len, 0, tpf, prec)
    c_out, _ = measure_outside_blocks(cc, b, f, h, wd, text_len, prec)
    c_ck = checkpointed(cc.num_layers)
    critic = c_out + (cc.num_layers - c_ck) * mc.saved + c_ck * mc.block_input
    critic_bwd = mc.backward_extra + (mc.saved if on else 0)

    # DMD scores without grad: the teacher with CFG (cond and uncond as one batch), the critic.
    cfg_b = (2 if s.cfg_guidance else 1) * b
    t_block = measure_block_no_grad(tc, cfg_b, tokens, text_len, teacher_prec)
    _, t_out = measure_outside_blocks(tc, cfg_b, f, h, wd, text_len, teacher_prec)
    c_block = measure_block_no_grad(cc, b, tokens, text_len, prec)
    scores = max(t_block, t_out, c_block)
    latent = 4 * b * c * f * h * wd
    vae = measure_vae_decode(spec, (b, c, f, h, wd))
    reward_pass, how = 0, ""
    if s.reweight and spec.params["reward"]:
        pixel_shape = (b, spec.pixel_frames(f), 3, s.height, s.width)
        reward_pass, how = _cached(measure_reward)(spec, s, pixel_shape)
        reward_pass += 4 * math.prod(pixel_shape)  # the decoded pixels stay alive through the pass
    ac_note = {"none": "no activation checkpointing", "full": "every block checkpointed",
               "every_n": f"every {s.ac_every}th block checkpointed"}[s.ac]
    terms += [
        Term("activations: rollout", rollout, phases=("rollout", "generator"),
             note=f"{chunks} chunks x {st.num_layers} layers x {fpc * tpf} tokens, micro-batch {b}, {ac_note}"
                  + ("; a checkpointed block keeps its input and the KV context it read" if on else "")),
        Term("KV cache", kv_cache, phases=("rollout",),
             note=f"{st.num_layers} layers x {max(ctx_frames) + fpc} frames x {tpf} tokens, keys + values"),
        Term("teacher CFG forward", scores, phases=("generator",),
             note=f"no-grad peak of one block over {cfg_b} x {tokens} tokens"),
        Term("VAE decode", vae, phases=("generator",), note=f"no-grad peak decoding {f} latent frames"),
    ]
    if reward_pass:
        terms.append(Term("reward pass", reward_pass, phases=("generator",),
                          note=f"decoded pixels + forward + 3 saliency backwards; {how}"))
    terms += [
        Term("backward transient", max(rollout_bwd, critic_bwd), phases=("generator", "critic"),
             note="one block's backward" + (" and its recompute" if on else "")),
        Term("activations: critic flow loss", critic, phases=("critic",),
             note=f"{cc.num_layers} layers x {tokens} tokens, micro-batch {b}, {ac_note}"),
    ]
    held = sum(t.gpu for t in terms if not t.phases)
    # The generator's tail (DMD scores, decode, reward) and its backward come one after another, all while the
    # rollout's activations are held; latent-sized float32 tensors (x, noise, x_t, p_real, p_fake, g) beside them.
    phases = {"rollout": held + rollout + kv_cache,
              "generator": held + rollout + max(scores, vae, reward_pass, rollout_bwd) + 6 * latent,
              "critic": held + critic + critic_bwd + 3 * latent}
    host_steady = sum(t.host for t in terms)
    p, tb = spec.params, spec.bytes_per_param
    # Loading (Distiller.lazy_roles): the Wan DiTs are built on the meta device and each rank reads only its shard;
    # text encoder and reward load whole before sharding (or replication), and so do student and critic under LoRA.
    whole = [tb["text"] * p["text"], tb["reward"] * p["reward"] if s.reweight else 0]
    largest = max(whole + ([4 * p["student"], 4 * p["critic"]] if s.lora else []))
    notes = []
    if s.compile:
        notes.append("train.compile is on: the plan does not count what compilation saves or adds")
    if s.lora:
        notes.append("LoRA: activations are measured without the adapters (their rank-sized tensors are small)")
    return Plan(gpus, gpu_memory, terms, phases, host_steady, host_steady + largest, notes)


def smallest_gpu_count(spec: ModelSpec, s: RunSettings, gpu_memory: float = 80.0, most: int = 64) -> int | None:
    """The fewest GPUs of `gpu_memory` GB (dividing the global batch) on which the run fits; None beyond `most`."""
    for n in range(1, most + 1):
        if s.batch_size % n == 0 and build_plan(spec, s, n, gpu_memory).fits:
            return n
    return None


def format_plan(plan: Plan) -> str:
    """The plan as a markdown table (GB = 10^9 bytes) and its verdict."""
    rows = ["| term | per GPU | per host | what |", "|---|---|---|---|"]
    for t in plan.terms:
        when = f" [{', '.join(t.phases)}]" if t.phases else ""
        host = f"{t.host / GB:.2f} GB" if t.host else ""
        rows.append(f"| {t.name} | {t.gpu / GB:.2f} GB | {host} | {t.note}{when} |")
    rows.append(f"| **held all step** | **{plan.held / GB:.2f} GB** | | weights, gradients, AdamW, EMA, frozen "
                "networks |")
    for name, v in plan.phases.items():
        rows.append(f"| peak of the {name} phase | {v / GB:.2f} GB | | held + the terms marked [{name}] |")
    rows.append(f"| **peak per GPU** | **{plan.peak / GB:.2f} GB** | | the {plan.peak_phase} phase |")
    rows.append(f"| host, steady / while loading | | {plan.host_steady / GB:.1f} / {plan.host_loading / GB:.1f} GB | "
                "offloaded shards; + the largest network a rank reads whole (DiTs are read shard by shard) |")
    out = "\n".join(rows) + f"\n\n{plan.gpus} GPU(s) of {plan.gpu_memory:g} GB: {plan.verdict()}"
    for n in plan.notes:
        out += f"\nnote: {n}"
    return out
