"""LoRA adapters on the generator and the critic (`train.lora`, README "Fewer GPUs"), through peft.

The base weights are frozen and stored in `base_dtype` (bf16 by default: half the memory, and no gradients or
AdamW state for them); only the low-rank adapters (float32) train. The exported student is the EMA with its
adapters merged into the base weights in float32, a plain DiT that `generate` loads like any other.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..common.config import ConfigError, from_section
from ..common.device import resolve_dtype

# Linear layers of every block: attention projections (self and cross) and the feed-forward network.
DEFAULT_TARGETS = ("q", "k", "v", "o", "ffn.0", "ffn.2")


@dataclass
class LoraSettings:
    """The optional `train.lora` section: {rank, alpha, targets, base_dtype}."""

    rank: int = 16
    alpha: float = 16.0  # the adapter's output is scaled by alpha / rank
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))  # module names (suffix match)
    base_dtype: str = "bfloat16"  # the frozen base weights

    @classmethod
    def from_dict(cls, d: dict) -> LoraSettings:
        s = from_section(cls, d, "train.lora")
        if s.rank < 1 or not s.targets:
            raise ConfigError(f"train.lora: rank={s.rank}, targets={s.targets}; give rank >= 1 and at least one "
                              f"target module name (e.g. {list(DEFAULT_TARGETS)})")
        resolve_dtype(s.base_dtype)
        return s

    @property
    def low_precision(self) -> bool:
        """Whether the bases are stored below float32 (their forward then runs under bf16 autocast)."""
        return resolve_dtype(self.base_dtype).itemsize < 4


def add_lora(model: nn.Module, s: LoraSettings, seed: int) -> nn.Module:
    """`model` with LoRA adapters on its `targets` (a peft model): base frozen in `base_dtype`, adapters float32.

    The adapters' random initialisation is drawn from `seed` (not the global RNG), so a run is reproducible.
    """
    from peft import LoraConfig, get_peft_model

    model.requires_grad_(False).to(resolve_dtype(s.base_dtype))
    config = LoraConfig(r=s.rank, lora_alpha=s.alpha, target_modules=list(s.targets), lora_dropout=0.0)
    try:  # autocast_adapter_dtype (the default) keeps the adapters in float32 over bf16 bases
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return get_peft_model(model, config)
    except ValueError as err:
        raise ConfigError(f"train.lora.targets={s.targets}: {str(err).splitlines()[0]}") from err


def is_lora(model: nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def merged(model: nn.Module) -> nn.Module:
    """A copy of a LoRA model with the adapters merged into float32 base weights (the plain model)."""
    return copy.deepcopy(model).float().merge_and_unload()
