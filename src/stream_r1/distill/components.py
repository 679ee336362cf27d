"""What a distillation needs besides its settings, built per model family (DESIGN.md §5).

`family: toy` (the default) loads the shipped toy teacher/student, the fixed toy text encoder and
codec and the toy reward model, exactly as the trainer always did. `family: wan` loads Wan 2.1
checkpoints into our DiT (`models.wan_io`), the Wan VAE, UMT5 and VideoReward from local paths; with
`dry_run` it builds the same classes with tiny random weights instead, so that the whole paper-scale
pipeline runs one step on a CPU without any download. The trainer only wires what comes back.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..common.config import ConfigError
from ..models.dit_io import load_dit

FAMILIES = ("toy", "wan")


@dataclass
class Components:
    """The networks and adapters of one run (teacher and reward frozen)."""

    teacher: nn.Module
    critic: nn.Module
    generator: nn.Module
    text: object  # prompts -> [B, L, text_dim]
    codec: object  # encode / decode / latent_channels / space_factor / latent_frames
    frame_size: tuple[int, int]  # pixel (height, width)
    prompts: list[str]
    metadata: dict = field(default_factory=dict)  # what an exported student needs to rebuild its pipeline
    sources: dict = field(default_factory=dict)  # role -> WanSource of a model left on the meta device (empty=True)


class Autocast(nn.Module):
    """Runs a frozen model under autocast (e.g. the bf16 14B teacher) and returns float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module, self.dtype = module, dtype

    @property
    def cfg(self):
        return self.module.cfg

    def forward(self, *args, **kwargs) -> torch.Tensor:
        device = next(self.module.parameters()).device.type
        with torch.autocast(device_type=device, dtype=self.dtype):
            return self.module(*args, **kwargs).float()


def family_of(config: dict) -> str:
    family = config.get("family", "toy")
    if family not in FAMILIES:
        raise ConfigError(f"family={family!r}; choose one of {FAMILIES}")
    return family


def build_components(config: dict, dry_run: bool = False, empty: Collection[str] = ()) -> Components:
    """The run's components for the config's `family`; the Wan DiTs named in `empty` stay on the meta device."""
    if family_of(config) == "toy":
        if dry_run:
            raise ConfigError("--dry-run is for paper-scale configs (family: wan); toy runs are already small")
        return toy_components(config)
    return tiny_wan_components(config) if dry_run else wan_components(config, empty)


def build_reward(config: dict, dry_run: bool = False):
    """The reward model of the config's `reward` section (a RewardModel), frozen."""
    if family_of(config) == "toy":
        from ..reward.toy import load_toy_reward

        return load_toy_reward(config["reward"])
    from ..reward.videoreward import VideoRewardSettings, load_videoreward, tiny_videoreward

    section = dict(config["reward"]) if isinstance(config["reward"], dict) else {"path": config["reward"]}
    settings = VideoRewardSettings.from_dict(section)
    if dry_run:
        settings.fps, settings.min_pixels, settings.max_pixels = None, 28 * 28 * 4, 56 * 56
        return tiny_videoreward(settings)
    return load_videoreward(settings)


# ---------------------------------------------------------------------------------------------
# Toy


def toy_components(config: dict) -> Components:
    """The embedded toy world (the order of loads is the trainer's historical one: RNG use unchanged)."""
    from ..models.codec import SpaceToDepthCodec
    from ..models.text import ToyTextEncoder
    from ..toyworld.prompts import split_prompts
    from ..toyworld.render import FRAME_SIZE

    teacher, extra = load_dit(config["teacher"])
    codec = SpaceToDepthCodec(extra.get("codec", {}).get("factor", 1))
    size = extra.get("frame_size", FRAME_SIZE)
    # `critic:` overrides (issue 20): e.g. {layers: [0, 2, 5]} for a critic of the small student's size, or
    # {causal: false} with critic_init = the ODE-init student.
    critic, _ = load_dit(config.get("critic_init") or config["teacher"], **config.get("critic", {}))
    generator, _ = load_dit(config["student_init"], causal=True, **config.get("student", {}))
    return Components(teacher, critic, generator, ToyTextEncoder(teacher.cfg.text_dim), codec, (size, size),
                      [p.text for p in split_prompts("train")],
                      {"codec": {"factor": codec.space_factor}, "frame_size": size,
                       **({"world": extra["world"]} if "world" in extra else {})})


# ---------------------------------------------------------------------------------------------
# Wan 2.1 (paper scale)


def _source(entry) -> tuple[str, str | None]:
    """A checkpoint entry: a path, or {path, which}."""
    if isinstance(entry, dict):
        return entry["path"], entry.get("which")
    return entry, None


def _read_prompts(config: dict) -> list[str]:
    path = config.get("data", {}).get("prompts")
    if not path or not Path(path).exists():
        raise FileNotFoundError(f"data.prompts={path!r}: give a text file with one training prompt per line")
    prompts = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


def wan_components(config: dict, empty: bool | Collection[str] = False) -> Components:
    """Wan 2.1 teacher (bf16, autocast), critic and self-forcing student from local files.

    With `empty` (True: all three DiTs, or a collection of the roles teacher / critic / generator) those DiTs
    stay on the meta device (no host memory) and `sources` holds their files: shard them first, then
    `fill_components` (or the trainer's `fill_lazy`) allocates and reads each rank's share only.
    """
    from ..common.device import resolve_dtype
    from ..models.umt5 import UMT5TextEncoder
    from ..models.wan_io import wan_dit_source
    from ..models.wan_vae import WanVAECodec

    dtype = resolve_dtype(config.get("dtype"), torch.bfloat16)
    sources = {"teacher": wan_dit_source(*_source(config["teacher"]), dtype=dtype),
               "critic": wan_dit_source(*_source(config.get("critic_init") or config["teacher"])),
               "generator": wan_dit_source(*_source(config["student_init"]),  # the preset's student names causal
                                           **{**config.get("student", {}), "causal": True})}
    lazy = set(sources) if empty is True else set(empty or ())
    if lazy - set(sources):
        raise ValueError(f"empty={sorted(lazy)}: the roles are {sorted(sources)}")
    models = {role: src.empty() if role in lazy else src.load() for role, src in sources.items()}
    teacher = Autocast(models["teacher"].requires_grad_(False), dtype)
    critic, generator = models["critic"], models["generator"]
    text_cfg = dict(config["text"])
    text = UMT5TextEncoder.from_pretrained(text_cfg.pop("path"), text_cfg.pop("tokenizer"), dtype=dtype, **text_cfg)
    codec = WanVAECodec.from_pretrained(config["codec"]["path"], dtype=torch.float32)
    video = config.get("video", {})
    size = (int(video.get("height", 480)), int(video.get("width", 832)))
    meta = {"family": "wan", "frame_size": list(size), "text": dict(config["text"]), "codec": dict(config["codec"])}
    return Components(teacher, critic, generator, text, codec, size, _read_prompts(config), meta,
                      {role: sources[role] for role in lazy})


def fill_components(parts: Components, device: str | torch.device = "cpu") -> None:
    """Allocate on `device` and read from file every DiT that `wan_components(empty=True)` left on the meta
    device; call it after sharding them (FSDP2), so that each rank allocates and keeps its own shard only."""
    for role, source in parts.sources.items():
        module = getattr(parts, role)
        inner = module.module if isinstance(module, Autocast) else module
        source.fill_(inner.to_empty(device=device))
    parts.sources = {}


DRY_RUN_SHAPES = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2, freq_dim=32, text_dim=16, latent_channels=16,
                      height=32, width=32)
# the teacher is wider and deeper than the student and critic, as Wan 14B is beside Wan 1.3B (same latents, text)
DRY_RUN_TEACHER = dict(DRY_RUN_SHAPES, dim=48, ffn_dim=96, num_heads=3, num_layers=3)
DRY_RUN_PROMPTS = ["a red fox runs through snow", "a paper boat drifts on a calm lake",
                   "city lights at night seen from a moving train", "a hummingbird hovers near a flower"]


def tiny_wan_components(config: dict) -> Components:
    """The paper-scale classes (DiT in Wan layout, AutoencoderKLWan, UMT5) with tiny random weights.

    As at paper scale the teacher (DRY_RUN_TEACHER) is wider and deeper than the student; the critic
    starts from the student-sized model and the causal student from the same weights.
    """
    from ..models.dit import DiT, DiTConfig
    from ..models.umt5 import tiny_umt5
    from ..models.wan_io import dit_from_diffusers
    from ..models.wan_vae import WanVAECodec, tiny_wan_vae

    s = DRY_RUN_SHAPES
    words = sorted({w for p in DRY_RUN_PROMPTS for w in p.split()})
    negative = str(config.get("text", {}).get("negative_prompt", ""))
    text = tiny_umt5(words + negative.split(), d_model=s["text_dim"], negative_prompt=negative)
    codec = WanVAECodec(tiny_wan_vae(z_dim=s["latent_channels"]))
    from ..common.device import resolve_dtype

    with torch.random.fork_rng():
        torch.manual_seed(0)
        teacher = dit_from_diffusers(_tiny_diffusers_wan(DRY_RUN_TEACHER)).requires_grad_(False)
        critic = dit_from_diffusers(_tiny_diffusers_wan(s))
    dtype = resolve_dtype(config.get("dtype"), torch.bfloat16)
    student_cfg = {**critic.cfg.to_dict(), "causal": True, **config.get("student", {})}
    generator = DiT(DiTConfig(**student_cfg))
    generator.load_state_dict(critic.state_dict())
    meta = {"family": "wan", "frame_size": [s["height"], s["width"]], "dry_run": True}
    return Components(Autocast(teacher, dtype), critic, generator, text, codec, (s["height"], s["width"]),
                      list(DRY_RUN_PROMPTS), meta)


def _tiny_diffusers_wan(s: dict) -> nn.Module:
    """A random diffusers WanTransformer3DModel of toy width (its weights become the dry run's teacher)."""
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=s["num_heads"], attention_head_dim=s["dim"] // s["num_heads"],
        in_channels=s["latent_channels"], out_channels=s["latent_channels"], text_dim=s["text_dim"],
        freq_dim=s["freq_dim"], ffn_dim=s["ffn_dim"], num_layers=s["num_layers"], rope_max_seq_len=64)
    with torch.no_grad():  # diffusers zero-initialises nothing we need, but make the head carry signal
        model.proj_out.weight.normal_(std=0.02)
    return model


def dry_run_config(config: dict) -> dict:
    """The config with a CPU-sized train section: 2 prompts as 2 micro-batches, 21 frames (2 chunks), one step."""
    config = {**config, "train": dict(config.get("train", {}))}
    config["train"].update(batch_size=2, micro_batch_size=1, frames=21, steps=1, log_every=1,
                           checkpoint_every=1, eval_every=10**9)
    return config
