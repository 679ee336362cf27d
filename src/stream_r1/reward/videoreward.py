"""VideoReward at paper scale (DESIGN.md §5, docs/method.md §5.2–5.3): Qwen2-VL + one linear head.

VideoAlign's VideoReward reads a bias-free linear head `rm_head` at the three special tokens
<|VQ_reward|>, <|MQ_reward|>, <|TA_reward|> of its prompt template; the score of axis a is the head's
output at axis a's token (column a when the head has 3 outputs). The video goes through our torch
preprocessing (`qwen2vl_video`), so scores are differentiable w.r.t. the pixels, and every sample of
the batch is scored. Like the official model, the language model runs with plain 1-D positions (its
forward never built Qwen2-VL's 3-D M-RoPE positions). Raw scores are z-scored with the reward model's
own statistics (`ZScoredReward`), giving the project's reward protocol (reward/base.py).

The prompt template is read from the user's copy of VideoAlign's `prompt_template.py` (or a text file)
rather than shipped here. transformers is imported lazily (the `paper` extra); nothing downloads.
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..common.config import from_section
from ..common.weights import CheckpointError
from .base import AXES, ZScoredReward
from .qwen2vl_video import preprocess_video, sample_frame_indices

SPECIAL_TOKENS = ("<|VQ_reward|>", "<|MQ_reward|>", "<|TA_reward|>")  # in AXES order
TEMPLATE_VARIABLE = "DETAILED_PROMPT_WITH_SPECIAL_TOKEN"  # VideoAlign's template for special-token reading
# Stand-in for tests and --dry-run only (no official text ships with this package).
STAND_IN_TEMPLATE = ('Rate the video generated for "{text_prompt}". Visual quality: <|VQ_reward|> '
                     "Motion quality: <|MQ_reward|> Text alignment: <|TA_reward|>")
# Z-score statistics published with VideoReward (its inference config); overridable in the config.
OFFICIAL_MEAN = {"vq": 3.6757, "mq": 1.1646, "ta": 2.8105}
OFFICIAL_STD = {"vq": 2.2476, "mq": 1.3811, "ta": 2.5121}


@dataclass
class VideoRewardSettings:
    """The `reward` section at paper scale."""

    family: str = "videoreward"
    path: str | None = None  # VideoReward checkpoint: a VideoAlign folder, or one state-dict file
    base: str | None = None  # local Qwen2-VL-2B-Instruct folder: config, tokenizer (and weights under LoRA)
    prompt_template: str | None = None  # VideoAlign's prompt_template.py, or a .txt with {text_prompt}
    fps: float | None = 2.0  # frames sampled per second of video (None: every frame)
    video_fps: float = 16.0  # frame rate of the decoded videos
    min_pixels: int = 128 * 28 * 28
    max_pixels: int = 448 * 448
    mean: dict = field(default_factory=lambda: dict(OFFICIAL_MEAN))
    std: dict = field(default_factory=lambda: dict(OFFICIAL_STD))
    dtype: str = "bfloat16"
    gradient_checkpointing: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> VideoRewardSettings:
        return from_section(cls, d, "reward")


# ---------------------------------------------------------------------------------------------
# Prompt text


def load_prompt_template(path: str | os.PathLike | None) -> str:
    """The template text from VideoAlign's prompt_template.py (parsed, never executed) or a text file."""
    if path is None:
        raise ValueError("reward.prompt_template is not set; point it at prompt_template.py of a VideoAlign "
                         "checkout (github KwaiVGI/VideoAlign) or a text file holding the template")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no prompt template at {path}; see README 'At paper scale'")
    text = path.read_text()
    if path.suffix == ".py":
        found = None
        for node in ast.parse(text).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == TEMPLATE_VARIABLE for t in node.targets):
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    found = node.value.value
        if found is None:
            raise ValueError(f"{path} defines no string {TEMPLATE_VARIABLE}; is it VideoAlign's prompt_template.py?")
        text = found
    missing = [t for t in ("{text_prompt}", *SPECIAL_TOKENS) if t not in text]
    if missing:
        raise ValueError(f"prompt template {path} lacks {missing}; it needs {{text_prompt}} and the 3 reward tokens")
    return text


def chat_text(user_text: str) -> str:
    """Qwen2-VL's chat rendering of one user turn [video, text] with the assistant turn opened."""
    return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|><|video_pad|><|vision_end|>{user_text}<|im_end|>\n<|im_start|>assistant\n")


# ---------------------------------------------------------------------------------------------
# The model


class VideoRewardModel(nn.Module):
    """Qwen2-VL backbone (`model`: visual + language_model) and the reward head `rm_head`; raw scores."""

    def __init__(self, config, tokenizer, template: str, settings: VideoRewardSettings, output_dim: int = 1):
        super().__init__()
        from transformers import Qwen2VLModel

        self.model = Qwen2VLModel(config)
        self.rm_head = nn.Linear(config.text_config.hidden_size, output_dim, bias=False)
        self.tokenizer = tokenizer
        self.template = template
        self.s = settings
        ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
        if any(i is None or i == tokenizer.unk_token_id for i in ids):
            raise ValueError(f"tokenizer lacks the reward tokens {SPECIAL_TOKENS}; add them as special tokens")
        self.reward_ids = ids
        self.video_token_id = config.video_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def tokenize(self, prompts: list[str], video_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [B, L] (right-padded) with the video placeholder expanded to `video_tokens` ids, and mask."""
        rows = []
        for p in prompts:
            ids = self.tokenizer(chat_text(self.template.format(text_prompt=p)), add_special_tokens=False)["input_ids"]
            if ids.count(self.video_token_id) != 1:
                raise ValueError("the chat text must hold one <|video_pad|>; check the tokenizer's special tokens")
            at = ids.index(self.video_token_id)
            rows.append(ids[:at] + [self.video_token_id] * video_tokens + ids[at + 1:])
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
        return ids, mask

    def sampled_frames(self, frames: int) -> torch.Tensor:
        """The indices of the pixel frames the model reads from a `frames`-frame clip (at `fps`; all without)."""
        return sample_frame_indices(frames, self.s.video_fps, self.s.fps)

    def forward(self, pixels: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Raw scores {axis: [B]} of pixels [B, T, 3, H, W] in [0, 1]; differentiable w.r.t. the pixels."""
        s = self.s
        b = pixels.shape[0]
        device = self.rm_head.weight.device
        dtype = self.rm_head.weight.dtype
        index = self.sampled_frames(pixels.shape[1])
        rows, grid = preprocess_video(pixels.float(), s.min_pixels, s.max_pixels, index)
        grid_thw = torch.tensor([grid] * b, device=device)
        vision = self.model.visual(rows.reshape(-1, rows.shape[-1]).to(device, dtype), grid_thw=grid_thw)
        video_embeds = vision.pooler_output  # [B·N/4, hidden], video after video
        ids, mask = self.tokenize(prompts, video_embeds.shape[0] // b)
        ids, mask = ids.to(device), mask.to(device)
        lm = self.model.language_model
        embeds = lm.embed_tokens(ids)
        slots = (ids == self.video_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(slots, video_embeds.to(embeds.dtype))
        # 1-D positions, as trained; no KV cache (a checkpointed layer re-run in backward would append to it twice)
        hidden = lm(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        logits = self.rm_head(hidden).float()  # [B, L, out]
        out = {}
        for k, (axis, token) in enumerate(zip(AXES, self.reward_ids, strict=True)):
            hits = ids == token
            if not bool((hits.sum(1) == 1).all()):
                raise ValueError(f"every prompt must hold {SPECIAL_TOKENS[k]} exactly once; check the template")
            at = hits.float().argmax(1)
            picked = logits[torch.arange(b, device=device), at]  # [B, out]
            out[axis] = picked[:, k] if picked.shape[1] == len(AXES) else picked[:, 0]
        return out


def videoreward(model: VideoRewardModel, settings: VideoRewardSettings) -> ZScoredReward:
    """The reward protocol around a VideoRewardModel: per-axis z-scored scores [B], frozen weights."""
    model.requires_grad_(False).eval()
    if settings.gradient_checkpointing:
        checkpoint_reward_layers(model)
    return ZScoredReward(model, settings.mean, settings.std)


def checkpoint_reward_layers(model: VideoRewardModel) -> None:
    """Checkpoint every vision block and language-model decoder layer for the saliency backward.

    transformers' own switch (`gradient_checkpointing_enable`) checkpoints a layer only in training mode, and
    the frozen reward runs in eval(): it would be silently off. torch's non-reentrant checkpoint wrapper works
    in any mode and changes no output (same kernels, and in eval no dropout to replay); state-dict keys stay.
    """
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for layers in (model.model.visual.blocks, model.model.language_model.layers):
        for i, layer in enumerate(layers):
            layers[i] = checkpoint_wrapper(layer)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def remap_official_keys(state: dict[str, torch.Tensor], lora_scale: float | None = None) -> dict[str, torch.Tensor]:
    """VideoAlign / transformers-4.45 key names -> this module's names (transformers 5 layout).

    Drops a PEFT `base_model.model.` prefix, merges LoRA pairs into their base weights
    (W + scale·B·A), renames `visual.*` -> `model.visual.*` and `model.*` -> `model.language_model.*`,
    and drops `lm_head.weight` (the reward never reads the language-model head).
    """
    state = {re.sub(r"^base_model\.model\.", "", k): v for k, v in state.items()}
    state = _merge_lora(state, lora_scale)
    out = {}
    for k, v in state.items():
        k = k.replace(".modules_to_save.default.", ".").replace(".base_layer.", ".")
        if k == "lm_head.weight" or ".original_module." in k:
            continue
        if k.startswith("visual."):
            k = "model." + k
        elif k.startswith("model.") and not k.startswith(("model.language_model.", "model.visual.")):
            k = "model.language_model." + k[len("model."):]
        out[k] = v
    return out


def _merge_lora(state: dict[str, torch.Tensor], scale: float | None) -> dict[str, torch.Tensor]:
    pairs = [k for k in state if re.search(r"\.lora_A(\.default)?\.weight$", k)]
    if not pairs:
        return state
    if scale is None:
        raise CheckpointError("the checkpoint holds LoRA weights but no LoRA scale is known; "
                              "keep model_config.json (peft_lora_config) beside the checkpoint")
    state = dict(state)
    for a_key in pairs:
        b_key = a_key.replace(".lora_A", ".lora_B")
        module = re.sub(r"\.lora_A(\.default)?\.weight$", "", a_key)
        base_key = next((k for k in (module + ".base_layer.weight", module + ".weight") if k in state), None)
        if base_key is None or b_key not in state:
            raise CheckpointError(f"LoRA pair for {module} is incomplete (base weight or lora_B missing); "
                                  "give reward.base (Qwen2-VL-2B-Instruct) so the base weights are present")
        base = state[base_key]
        delta = state[b_key].float() @ state.pop(a_key).float()
        state[base_key] = (base.float() + scale * delta).to(base.dtype)
        state.pop(b_key)
    return state


def _read_any(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def read_videoreward_state(path: str | os.PathLike, base: str | os.PathLike | None = None) -> dict:
    """All tensors of a VideoReward checkpoint, in this module's key names.

    `path` is a state-dict file, or a VideoAlign folder (model_config.json + checkpoint-N/ holding model.pth,
    or adapter_model.safetensors + non_lora_state_dict.pth, merged onto the base weights in `base`).
    """
    path = Path(path)
    if path.is_file():
        return remap_official_keys(_read_any(path))
    if not path.is_dir():
        raise FileNotFoundError(f"no VideoReward checkpoint at {path}; download KwaiVGI/VideoReward (README)")
    steps = sorted(path.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    folder = steps[-1] if steps else path
    if (folder / "model.pth").exists():
        return remap_official_keys(_read_any(folder / "model.pth"))
    if not (folder / "adapter_model.safetensors").exists():
        raise CheckpointError(f"{folder} holds neither model.pth nor adapter_model.safetensors")
    lora_cfg = json.loads((path / "model_config.json").read_text()).get("peft_lora_config", {})
    r, alpha = lora_cfg.get("lora_r", 16), lora_cfg.get("lora_alpha", 32)
    scale = alpha / (r ** 0.5 if lora_cfg.get("use_rslora") else r)
    if base is None:
        raise CheckpointError("a LoRA VideoReward checkpoint needs reward.base (local Qwen2-VL-2B-Instruct)")
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(Path(base).glob("*.safetensors")):
        state.update({f"base_model.model.{k}": v for k, v in load_file(str(shard)).items()})
    state.update(_read_any(folder / "non_lora_state_dict.pth"))
    lora = {re.sub(r"\.lora_([AB])\.weight$", r".lora_\1.default.weight", k): v
            for k, v in load_file(str(folder / "adapter_model.safetensors")).items()}
    for k in lora:
        module = re.sub(r"\.lora_[AB]\.default\.weight$", "", k)
        if module + ".weight" in state and module + ".base_layer.weight" not in state:
            state[module + ".base_layer.weight"] = state.pop(module + ".weight")
    state.update(lora)
    return remap_official_keys(state, scale)


def load_state_into(model: VideoRewardModel, state: dict[str, torch.Tensor]) -> None:
    """Strict load with a one-line error naming missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"VideoReward checkpoint does not fit: missing {missing[:6]} ({len(missing)}), "
                              f"unexpected {unexpected[:6]} ({len(unexpected)}), wrong shapes {shapes[:6]}")
    model.load_state_dict(state, assign=True)


def load_videoreward(settings: VideoRewardSettings) -> ZScoredReward:
    """VideoReward from local files: Qwen2-VL config + tokenizer from `base`, weights from `path`."""
    from transformers import AutoConfig, AutoTokenizer

    if not settings.base or not os.path.isdir(settings.base):
        raise FileNotFoundError(f"reward.base={settings.base!r} is not a folder; download Qwen/Qwen2-VL-2B-Instruct")
    template = load_prompt_template(settings.prompt_template)
    tokenizer = AutoTokenizer.from_pretrained(settings.base, local_files_only=True)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    state = read_videoreward_state(settings.path, settings.base)
    config = AutoConfig.from_pretrained(settings.base, local_files_only=True)
    config.text_config.vocab_size = state["model.language_model.embed_tokens.weight"].shape[0]
    output_dim = state["rm_head.weight"].shape[0]
    from accelerate import init_empty_weights

    # parameters on the meta device (filled from the checkpoint), buffers real: the rotary embeddings' inv_freq
    # is not in any checkpoint, so a meta buffer would stay empty (the real-layout test caught this)
    with init_empty_weights(include_buffers=False):
        model = VideoRewardModel(config, tokenizer, template, settings, output_dim)
    dtype = getattr(torch, settings.dtype)
    load_state_into(model, {k: v.to(dtype) for k, v in state.items()})
    return videoreward(model, settings)


# ---------------------------------------------------------------------------------------------
# Tiny random instance (tests, --dry-run)


def tiny_qwen2vl_tokenizer():
    """A byte-level tokenizer built locally with Qwen2-VL's special tokens and the three reward tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_vocab = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(byte_vocab))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>", *SPECIAL_TOKENS]
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    fast.add_special_tokens({"additional_special_tokens": specials[1:]})
    return fast


def tiny_videoreward(settings: VideoRewardSettings | None = None, seed: int = 0, output_dim: int = 1,
                     template: str = STAND_IN_TEMPLATE) -> ZScoredReward:
    """A random Qwen2-VL VideoReward of toy width with the official layout (tests, --dry-run)."""
    from transformers import Qwen2VLConfig

    settings = settings or VideoRewardSettings()
    tok = tiny_qwen2vl_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                      "<|vision_end|>")}
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         bos_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, in_channels=3,
                           patch_size=14, temporal_patch_size=2, spatial_merge_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = VideoRewardModel(config, tok, template, settings, output_dim)
        nn.init.normal_(model.rm_head.weight, std=0.5)
    model.float()
    return videoreward(model, settings)
