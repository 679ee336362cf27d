"""`stream-r1 convert`: a downloaded Wan 2.1 transformer as a complete stream-r1 checkpoint (README: At paper scale).

Sources: a Self-Forcing `.pt` (sub-dicts generator / generator_ema / critic), an original Wan 2.1 folder
(`WanModel` config.json + safetensors shards), a diffusers pipeline folder (`transformer/ vae/ text_encoder/
tokenizer/`) or a single transformer file. The output is one safetensors file that `generate` and `serve`
load as they are: the DiT weights (key by key through `models.wan_io`), and in its metadata the model
family, the sampler the weights were trained for and the local VAE / UMT5 / tokenizer folders.

What each source means (docs/method.md §1 for the shifted schedule):
  - Self-Forcing generator(_ema): a causal student, 3 latent frames a chunk, 4 steps [1000, 750, 500, 250]
    warped with shift 5.0, and GLOBAL causal attention (it was trained with local_attn_frames = -1, no sink);
  - a Wan 2.1 folder, a diffusers folder or Self-Forcing's critic: the bidirectional model, 50 Euler steps,
    guidance 5.0, shift 5.0 (Wan 2.1's text-to-video defaults).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..common.weights import CheckpointError
from .dit import DiT
from .dit_io import save_dit
from .wan_io import (
    _load_file,
    _select,
    config_from_state,
    detect_layout,
    diffusers_to_wan,
    load_into_dit,
    read_state_dict,
    strip_wrappers,
)

GENERATOR_SUBDICTS = ("generator_ema", "generator")
SELF_FORCING_STUDENT = {"causal": True, "frames_per_chunk": 3, "local_attn_frames": -1, "sink_frames": 0}
STUDENT_SAMPLER = {"shift": 5.0, "denoising_timesteps": [1000.0, 750.0, 500.0, 250.0]}
WAN_SAMPLER = {"steps": 50, "guidance": 5.0, "shift": 5.0}
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def source_kind(path: str | os.PathLike) -> str:
    """'self-forcing' (a torch file with generator sub-dicts), 'diffusers' (a pipeline folder), 'wan' otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; download it first (README: At paper scale)")
    if path.is_dir():
        return "diffusers" if (path / "transformer").is_dir() else "wan"
    if path.suffix in TORCH_SUFFIXES:
        obj = _load_file(path)
        if any(isinstance(obj.get(k), dict) for k in (*GENERATOR_SUBDICTS, "critic")):
            return "self-forcing"
    return "wan"


def components_of(folder: str | os.PathLike) -> dict[str, str]:
    """The VAE, UMT5 and tokenizer folders of a Wan2.1-T2V-*-Diffusers download, as absolute paths."""
    folder = Path(folder).resolve()
    paths = {name: folder / name for name in ("vae", "text_encoder", "tokenizer")}
    missing = [name for name, p in paths.items() if not p.is_dir()]
    if missing:
        raise CheckpointError(f"{folder} has no {', '.join(f'{m}/' for m in missing)}; pass --components with a "
                              "Wan-AI/Wan2.1-T2V-1.3B-Diffusers download (its vae/ text_encoder/ tokenizer/)")
    return {name: str(p) for name, p in paths.items()}


def convert(source: str | os.PathLike, out: str | os.PathLike, components: str | os.PathLike | None = None,
            which: str | None = None, frame_size: tuple[int, int] = (480, 832), max_length: int = 512,
            negative_prompt: str = "", **student) -> Path:
    """Write `out` (safetensors): the transformer of `source` as our DiT plus what `generate` needs.

    `components`: the diffusers folder whose vae/, text_encoder/ and tokenizer/ the checkpoint will use
    (default: `source` itself when it is one). `which` picks a Self-Forcing sub-dict (default generator_ema,
    else generator); `student` overrides the causal student's switches (frames_per_chunk, local_attn_frames,
    sink_frames) for checkpoints trained with another window.
    """
    kind = source_kind(source)
    if components is None:
        if kind != "diffusers":
            raise CheckpointError(f"{source} carries no VAE or text encoder in a form stream-r1 reads; pass "
                                  "--components DIR, a Wan-AI/Wan2.1-T2V-1.3B-Diffusers download")
        components = source
    parts = components_of(components)
    state, config, chosen = _read(source, kind, which)
    state = strip_wrappers(state)
    if detect_layout(state) == "diffusers":
        state = diffusers_to_wan(state)
    causal = kind == "self-forcing" and chosen != "critic"
    unknown = sorted(set(student) - set(SELF_FORCING_STUDENT))
    if unknown:
        raise CheckpointError(f"unknown student settings {unknown}; known: {sorted(SELF_FORCING_STUDENT)}")
    if student and not causal:
        raise CheckpointError(f"{source} ({chosen or kind}) is a bidirectional model; attention-window settings "
                              "apply to a causal student (a Self-Forcing generator)")
    overrides = {**SELF_FORCING_STUDENT, **student} if causal else {}
    model = load_into_dit(state, config_from_state(state, config, **overrides))
    save_dit(Path(out), model, metadata(model, parts, frame_size, max_length, negative_prompt,
                                        source=f"{Path(source).resolve()}" + (f" [{chosen}]" if chosen else "")))
    return Path(out)


def _read(source, kind: str, which: str | None) -> tuple[dict, dict, str | None]:
    """The state dict, config.json and chosen sub-dict name of a source."""
    if kind != "self-forcing":
        state, config = read_state_dict(source, which, lazy=True)  # read tensor by tensor while filling
        return state, config, which
    path = Path(source)
    obj = _load_file(path)
    chosen = which or next((k for k in GENERATOR_SUBDICTS if isinstance(obj.get(k), dict)), "critic")
    config = json.loads((path.parent / "config.json").read_text()) if (path.parent / "config.json").exists() else {}
    return _select(obj, chosen, path), config, chosen


def metadata(model: DiT, parts: dict[str, str], frame_size: tuple[int, int], max_length: int,
             negative_prompt: str, source: str) -> dict:
    """The `extra` metadata of a converted checkpoint: family, sampler, codec and text folders, frame size."""
    return {
        "family": "wan",
        "frame_size": [int(frame_size[0]), int(frame_size[1])],
        "codec": {"path": parts["vae"]},
        "text": {"path": parts["text_encoder"], "tokenizer": parts["tokenizer"], "max_length": int(max_length),
                 "negative_prompt": negative_prompt},
        "sampler": dict(STUDENT_SAMPLER if model.cfg.causal else WAN_SAMPLER),
        "converted_from": source,
    }
