"""Stream-R1's settings, checked when the config loads, and the reward axes it weighs (docs/method.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..common.config import from_section

AXES = ("vq", "mq", "ta")


EPS = 1e-8


@dataclass
class ReweightSettings:
    """The `reweight` section of a config; each component can be switched off."""

    inter: bool = True
    intra: bool = True
    balance: str = "per_axis"  # "none" | "global_penalty" (public code) | "per_axis"
    inter_axes: list[str] = field(default_factory=lambda: list(AXES))  # ["mq"] = Reward Forcing style
    beta: float = 2.0
    weight_mode: str = "self_normalized"  # "faithful" | "clamp" | "self_normalized"
    inter_scope: str = "batch"  # "batch" (as specified) | "prompt": self-normalise among rollouts of one prompt
    shuffle_weights: bool = False  # control: each rollout gets another rollout's w_inter and W_intra (no information)
    shuffle_which: str = "both"  # with shuffle_weights: "both" | "inter" | "intra" (which weight is dealt wrongly)
    reward_clip: float = 3.0  # |r| bound of the "clamp" mode
    max_exponent: float = 30.0  # the only guard of the "faithful" mode: exp never overflows float32
    fusion_temperature: float = 1.0
    axis_norm: str = "none"  # "none" (as specified) | "mean": each axis' saliency scaled to mean 1 first
    temporal_strength: float = 1.0
    temporal_floor: float = 0.2
    spatial_floor: float = 0.15
    saliency_from: str = "zscores"  # "zscores": ∂r/∂v of the z-scored score | "logits": of the raw head output
    window: int = 50  # optimizer steps the balancer remembers (one entry each)
    penalty_lambda: float = 0.5
    balance_rate: float = 0.3  # per-axis balancer: log-weight an axis loses per standard error of improvement
    balance_threshold: float = 3.0  # per-axis balancer: improvement within this many standard errors is noise

    @classmethod
    def from_dict(cls, d: dict) -> ReweightSettings:
        s = from_section(cls, d, "reweight")
        choices = {"balance": ("none", "global_penalty", "per_axis"),
                   "weight_mode": ("faithful", "clamp", "self_normalized"), "axis_norm": ("none", "mean"),
                   "inter_scope": ("batch", "prompt"), "shuffle_which": ("both", "inter", "intra"),
                   "saliency_from": ("zscores", "logits")}
        for key, allowed in choices.items():
            if getattr(s, key) not in allowed:
                raise ValueError(f"reweight.{key}={getattr(s, key)!r}; choose one of {allowed}")
        if s.inter_scope == "prompt" and s.weight_mode != "self_normalized":
            raise ValueError("reweight.inter_scope=prompt compares rollouts of one prompt, which only the "
                             "self_normalized weight_mode does; set weight_mode: self_normalized")
        bad = [a for a in s.inter_axes if a not in AXES]
        if bad or not s.inter_axes:
            raise ValueError(f"reweight.inter_axes={s.inter_axes}; use a non-empty subset of {AXES}")
        return s
