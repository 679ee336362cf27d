"""Wan 2.1 checkpoints in and out of our DiT (DESIGN.md §5), key by key.

Our DiT uses the parameter names of the original Wan code (`blocks.0.self_attn.q.weight`, ...), so a
Wan checkpoint loads as is; diffusers' `WanTransformer3DModel` names (`blocks.0.attn1.to_q.weight`, ...)
are renamed through one explicit table. Self-forcing-family checkpoints are torch pickles holding
`generator` / `generator_ema` / `critic` sub-dicts whose keys carry a `model.` prefix (their wrapper
holds the Wan model as `.model`); FSDP wrapper names are dropped. Everything loads from local paths.

Host memory: files are read lazily (safetensors through its memory map, torch files with mmap=True), the
DiT is built on the meta device and filled tensor by tensor on its target device, so loading costs the
model once (on the CPU) or about one tensor (on a GPU), never the file plus the model. `wan_dit_source`
hands out the empty model and its source separately, so that a parallel run can shard the empty model
first and then fill each rank's shard only (`WanSource.fill_`, FSDP2 DTensors included).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..common.weights import CheckpointError, atomic_write
from .dit import DiT, DiTConfig

WAN_HEAD_DIM = 128  # every Wan 2.1 size uses 128 channels per attention head
SUBDICTS = ("generator_ema", "generator", "critic", "model", "state_dict", "module")  # search order
WRAPPER_TOKENS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")

# diffusers name prefix -> Wan name prefix, inside one block (`blocks.{i}.` is kept)
BLOCK_RENAMES: tuple[tuple[str, str], ...] = (
    ("attn1.to_q.", "self_attn.q."),
    ("attn1.to_k.", "self_attn.k."),
    ("attn1.to_v.", "self_attn.v."),
    ("attn1.to_out.0.", "self_attn.o."),
    ("attn1.norm_q.", "self_attn.norm_q."),
    ("attn1.norm_k.", "self_attn.norm_k."),
    ("attn2.to_q.", "cross_attn.q."),
    ("attn2.to_k.", "cross_attn.k."),
    ("attn2.to_v.", "cross_attn.v."),
    ("attn2.to_out.0.", "cross_attn.o."),
    ("attn2.norm_q.", "cross_attn.norm_q."),
    ("attn2.norm_k.", "cross_attn.norm_k."),
    ("norm2.", "norm3."),  # diffusers' norm2 is the (affine) cross-attention norm, Wan's norm3
    ("ffn.net.0.proj.", "ffn.0."),
    ("ffn.net.2.", "ffn.2."),
    ("scale_shift_table", "modulation"),
)
TOP_RENAMES: tuple[tuple[str, str], ...] = (
    ("condition_embedder.time_embedder.linear_1.", "time_embedding.0."),
    ("condition_embedder.time_embedder.linear_2.", "time_embedding.2."),
    ("condition_embedder.time_proj.", "time_projection.1."),
    ("condition_embedder.text_embedder.linear_1.", "text_embedding.0."),
    ("condition_embedder.text_embedder.linear_2.", "text_embedding.2."),
    ("proj_out.", "head.head."),
    ("scale_shift_table", "head.modulation"),
    ("patch_embedding.", "patch_embedding."),
)
BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")


# ---------------------------------------------------------------------------------------------
# Key names


def _rename(key: str, block_table, top_table) -> str | None:
    """One key through the (from, to) prefix tables; None if no entry matches."""
    m = BLOCK_KEY.match(key)
    rest, table, head = (m.group(2), block_table, f"blocks.{m.group(1)}.") if m else (key, top_table, "")
    for src, dst in table:
        if rest == src or (src.endswith(".") and rest.startswith(src)):
            return head + dst + rest[len(src):]
    return None


def _rename_state(state: dict[str, torch.Tensor], blocks, top, error: str) -> dict[str, torch.Tensor]:
    """Rename every key with `_rename`; keys without a counterpart are one error listing them."""
    out, unknown = {}, []
    for k, v in state.items():
        new = _rename(k, blocks, top)
        if new is None:
            unknown.append(k)
        else:
            out[new] = v
    if unknown:
        raise CheckpointError(error.format(keys=sorted(unknown)[:8], count=len(unknown)))
    return out


def diffusers_to_wan(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename diffusers `WanTransformer3DModel` keys to Wan keys; unknown keys are an error listing them."""
    return _rename_state(state, BLOCK_RENAMES, TOP_RENAMES,
                         "diffusers Wan keys with no Wan 2.1 T2V counterpart: {keys} ({count} in all); "
                         "only text-to-video transformers convert")


def wan_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename Wan keys to diffusers `WanTransformer3DModel` keys (the inverse of `diffusers_to_wan`)."""
    return _rename_state(state, tuple((b, a) for a, b in BLOCK_RENAMES), tuple((b, a) for a, b in TOP_RENAMES),
                         "keys with no diffusers Wan counterpart: {keys}; toy extensions (conv stem/head, "
                         "frame embedding) cannot be saved in Wan layouts")


def strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop FSDP/compile wrapper tokens and a `model.`/`module.` prefix shared by every key."""
    for token in WRAPPER_TOKENS:
        state = {k.replace(token, ""): v for k, v in state.items()}
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def detect_layout(keys) -> str:
    """'wan' or 'diffusers', from the key names."""
    keys = set(keys)
    if any(k.startswith("condition_embedder.") or ".attn1." in k for k in keys):
        return "diffusers"
    if "time_embedding.0.weight" in keys or any(".self_attn." in k for k in keys):
        return "wan"
    raise CheckpointError(f"not a Wan transformer state dict (first keys {sorted(keys)[:5]}); "
                          "pass a Wan 2.1 or diffusers WanTransformer3DModel checkpoint")


# ---------------------------------------------------------------------------------------------
# Reading files


class TensorRef:
    """One tensor of a safetensors file: its shape now, its data (through the file's memory map) on `load()`."""

    def __init__(self, handle, key: str) -> None:
        self.handle, self.key = handle, key
        self.shape = torch.Size(handle.get_slice(key).get_shape())

    def load(self) -> torch.Tensor:
        return self.handle.get_tensor(self.key)


def materialize(value) -> torch.Tensor:
    """The tensor behind a state-dict entry (a TensorRef is read now; a tensor is itself)."""
    return value.load() if isinstance(value, TensorRef) else value


def _read_safetensors(path: Path, lazy: bool) -> dict:
    if not lazy:
        return load_file(str(path))
    handle = safe_open(str(path), framework="pt")
    return {k: TensorRef(handle, k) for k in handle.keys()}


def _load_file(path: Path, lazy: bool = False) -> dict:
    if path.suffix == ".safetensors":
        return _read_safetensors(path, lazy)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is the same user error
        raise CheckpointError(f"{path} could not be read as a weights-only torch file ({err}); "
                              "re-save it as a plain state dict or safetensors") from err


def read_state_dict(path: str | os.PathLike, which: str | None = None,
                    lazy: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and config.json (or {}) of a Wan transformer file or directory.

    A directory holds `*.safetensors` shards (a diffusers pipeline folder: its `transformer/`) and
    usually a config.json. A torch file may hold sub-dicts; `which` picks one (default: the first of
    generator_ema, generator, critic, model, state_dict present). With `lazy`, safetensors entries are
    TensorRefs read on demand (torch files are memory-mapped either way).
    """
    path = Path(path)
    if path.is_dir() and (path / "transformer").is_dir() and not list(path.glob("*.safetensors")):
        path = path / "transformer"
    config = {}
    if path.is_dir():
        shards = sorted(path.glob("*.safetensors"))
        if not shards:
            raise CheckpointError(f"{path} holds no *.safetensors; point at a Wan 2.1 model folder or a file")
        obj: dict = {}
        for shard in shards:
            obj.update(_read_safetensors(shard, lazy))
        if (path / "config.json").exists():
            config = json.loads((path / "config.json").read_text())
    elif path.exists():
        obj = _load_file(path, lazy)
        if (path.parent / "config.json").exists():
            config = json.loads((path.parent / "config.json").read_text())
    else:
        raise CheckpointError(f"no Wan checkpoint at {path}; download it first (README: At paper scale)")
    return _select(obj, which, path), config


def _select(obj: dict, which: str | None, path: Path) -> dict[str, torch.Tensor]:
    subs = [k for k in SUBDICTS if isinstance(obj.get(k), dict)]
    if which is not None:
        if which not in obj or not isinstance(obj[which], dict):
            raise CheckpointError(f"{path} has no sub-dict {which!r}; it has {subs or 'only tensors'}")
        obj = obj[which]
    elif subs:
        obj = obj[subs[0]]
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor | TensorRef)]
    if bad:
        raise CheckpointError(f"{path}: entries {bad[:5]} are not tensors; pick a sub-dict with which=...")
    return obj


# ---------------------------------------------------------------------------------------------
# Into and out of our DiT


def config_from_state(state: dict[str, torch.Tensor], config: dict | None = None, **overrides) -> DiTConfig:
    """DiT shapes read off a Wan-named state dict; heads from config.json (else dim / 128)."""
    config = config or {}
    try:
        w = state["patch_embedding.weight"]  # [dim, in, pt, ph, pw]
        dim, in_ch, patch = w.shape[0], w.shape[1], tuple(w.shape[2:])
        out = state["head.head.weight"].shape[0] // math.prod(patch)
        layers = 1 + max(int(m.group(1)) for k in state if (m := BLOCK_KEY.match(k)))
        derived = dict(
            in_channels=in_ch, out_channels=out, dim=dim, patch_size=patch, num_layers=layers,
            ffn_dim=state["blocks.0.ffn.0.weight"].shape[0], text_dim=state["text_embedding.0.weight"].shape[1],
            freq_dim=state["time_embedding.0.weight"].shape[1], cross_attn_norm="blocks.0.norm3.weight" in state,
        )
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"state dict lacks Wan parameters ({err}); is it a Wan 2.1 T2V transformer?") from err
    heads = config.get("num_heads", config.get("num_attention_heads", max(1, dim // WAN_HEAD_DIM)))
    derived.update(num_heads=heads, eps=config.get("eps", 1e-6))
    derived.update(overrides)
    return DiTConfig(**derived)


def empty_dit(state: dict, cfg: DiTConfig, dtype: torch.dtype | None = None) -> DiT:
    """The DiT of `cfg` on the meta device (no memory, nothing initialised), in `dtype` (default float32),
    after checking that `state` (tensors or TensorRefs) fits it key by key and shape by shape."""
    with torch.device("meta"):
        model = DiT(cfg).to(dtype or torch.float32)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = {k: (tuple(state[k].shape), tuple(own[k].shape)) for k in own if k in state
              and state[k].shape != own[k].shape}
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"checkpoint does not fit the DiT config: missing {missing[:8]} ({len(missing)}), unexpected "
            f"{unexpected[:8]} ({len(unexpected)}), shape (checkpoint, model) {dict(list(shapes.items())[:8])}; "
            "check the model size (dim/heads/layers) and that this is a Wan 2.1 T2V checkpoint")
    if any(True for _ in model.buffers()):  # to_empty would leave them uninitialised; none is in a checkpoint
        raise RuntimeError("the DiT has buffers; fill_dit must initialise them before meta loading is safe")
    return model


@torch.no_grad()
def fill_dit(model: torch.nn.Module, state: dict) -> torch.nn.Module:
    """Copy `state` into an allocated model (after `to_empty`), one tensor at a time, cast to each parameter's
    dtype and device. A parameter sharded by FSDP2 (a DTensor) receives only its own shard: every rank reads
    the full tensor from the memory-mapped file (shared page cache) and keeps its slice, no communication."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    for name, target in model.state_dict(keep_vars=True).items():
        src = materialize(state[name])
        if isinstance(target, DTensor):
            src = distribute_tensor(src.to(target.to_local().device, target.dtype), target.device_mesh,
                                    target.placements, src_data_rank=None)
        target.copy_(src)
        del src
    return model


def load_into_dit(state: dict, cfg: DiTConfig, dtype: torch.dtype | None = None,
                  device: str | torch.device = "cpu") -> DiT:
    """Build the DiT on the meta device, allocate it on `device` in `dtype` (default float32) and fill it."""
    return fill_dit(empty_dit(state, cfg, dtype).to_empty(device=device), state)


@dataclass
class WanSource:
    """A Wan transformer on disk, read lazily: its DiT config, its (renamed) entries and the dtype to load in."""

    cfg: DiTConfig
    state: dict
    dtype: torch.dtype | None = None

    def empty(self) -> DiT:
        """The model on the meta device: shard it, then `to_empty` and `fill_`."""
        return empty_dit(self.state, self.cfg, self.dtype)

    def fill_(self, model: torch.nn.Module) -> torch.nn.Module:
        return fill_dit(model, self.state)

    def load(self, device: str | torch.device = "cpu") -> DiT:
        return load_into_dit(self.state, self.cfg, self.dtype, device)


def wan_dit_source(path: str | os.PathLike, which: str | None = None, dtype: torch.dtype | None = None,
                   **overrides) -> WanSource:
    """A Wan 2.1 transformer file or folder, opened but not read: key names and shapes only."""
    state, config = read_state_dict(path, which, lazy=True)
    state = strip_wrappers(state)
    if detect_layout(state) == "diffusers":
        state = diffusers_to_wan(state)
    return WanSource(config_from_state(state, config, **overrides), state, dtype)


def load_wan_dit(path: str | os.PathLike, which: str | None = None, dtype: torch.dtype | None = None,
                 device: str | torch.device = "cpu", **overrides) -> DiT:
    """A Wan 2.1 transformer (original, self-forcing or diffusers layout) as our DiT, on `device`.

    `overrides` set DiT switches, e.g. causal=True, frames_per_chunk=3, local_attn_frames=9, sink_frames=3.
    Weights stream from the file's memory map straight into the allocated model (module docstring).
    """
    return wan_dit_source(path, which, dtype, **overrides).load(device)


def dit_from_diffusers(module) -> DiT:
    """Our DiT from an in-memory diffusers `WanTransformer3DModel` (same weights, bidirectional)."""
    c = module.config
    state = diffusers_to_wan(module.state_dict())
    cfg = config_from_state(state, {"num_heads": c.num_attention_heads, "eps": c.eps})
    return load_into_dit({k: v.detach().clone() for k, v in state.items()}, cfg)


def wan_state_dict(model: DiT, layout: str = "wan") -> dict[str, torch.Tensor]:
    """The model's tensors named for `layout` ('wan' or 'diffusers')."""
    cfg = model.cfg
    if cfg.conv_stem_channels or cfg.conv_head_channels or cfg.frame_embedding or cfg.prediction != "flow":
        raise CheckpointError("this DiT uses toy extensions (conv stem/head, frame embedding or x0 prediction) "
                              "that a Wan checkpoint cannot hold; save it with stream_r1.models.dit_io.save_dit")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if layout == "wan":
        return state
    if layout == "diffusers":
        return wan_to_diffusers(state)
    raise ValueError(f"layout must be 'wan' or 'diffusers', got {layout!r}")


def wan_config_json(cfg: DiTConfig, layout: str) -> dict:
    """config.json of a Wan model folder in the given layout."""
    if layout == "wan":
        return {"_class_name": "WanModel", "model_type": "t2v", "dim": cfg.dim, "ffn_dim": cfg.ffn_dim,
                "freq_dim": cfg.freq_dim, "in_dim": cfg.in_channels, "out_dim": cfg.out_channels,
                "num_heads": cfg.num_heads, "num_layers": cfg.num_layers, "text_dim": cfg.text_dim,
                "patch_size": list(cfg.patch_size), "eps": cfg.eps, "text_len": 512}
    return {"_class_name": "WanTransformer3DModel", "patch_size": list(cfg.patch_size),
            "num_attention_heads": cfg.num_heads, "attention_head_dim": cfg.dim // cfg.num_heads,
            "in_channels": cfg.in_channels, "out_channels": cfg.out_channels, "text_dim": cfg.text_dim,
            "freq_dim": cfg.freq_dim, "ffn_dim": cfg.ffn_dim, "num_layers": cfg.num_layers,
            "cross_attn_norm": cfg.cross_attn_norm, "qk_norm": "rms_norm_across_heads", "eps": cfg.eps,
            "image_dim": None, "added_kv_proj_dim": None, "rope_max_seq_len": 1024}


def save_wan_dit(model: DiT, out_dir: str | os.PathLike, layout: str = "wan") -> Path:
    """Write `out_dir/diffusion_pytorch_model.safetensors` + config.json in the Wan or diffusers layout."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = wan_state_dict(model, layout)
    path = out_dir / "diffusion_pytorch_model.safetensors"
    atomic_write(path, lambda tmp: save_file(state, tmp))
    text = json.dumps(wan_config_json(model.cfg, layout), indent=1)
    atomic_write(out_dir / "config.json", lambda tmp: Path(tmp).write_text(text))
    return path
