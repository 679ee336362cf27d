"""Tiny random models saved in the folder layouts a user downloads (README: At paper scale), for the real loaders.

    Wan2.1-T2V-1.3B-Diffusers/   model_index.json, transformer/ vae/ text_encoder/ tokenizer/  (diffusers, transformers)
    Wan2.1-T2V-1.3B/             config.json (WanModel) + diffusion_pytorch_model.safetensors   (the critic's init)
    Wan2.1-T2V-14B/              config.json + 2 safetensors shards + their index                (wider, deeper teacher)
    self_forcing_dmd.pt          {generator, generator_ema, critic}, keys with the wrapper's `model.` prefix
    VideoReward/                 model_config.json, checkpoint-N/{adapter_model.safetensors, adapter_config.json,
                                 non_lora_state_dict.pth}                                     (VideoAlign's LoRA save)
    Qwen2-VL-2B-Instruct/        config.json (flat, transformers-4.45 style), tokenizer files, model.safetensors
                                 with the hub's key names (model.layers.*, visual.*)
    VideoAlign/prompt_template.py, prompts.txt

Shapes are toy; names, files and formats are the real ones. `expected_reward` is the VideoReward the folders
should load into, built in memory for comparison.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

STUDENT = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2, freq_dim=32, text_dim=16, latent_channels=16)
TEACHER = dict(STUDENT, dim=48, ffn_dim=96, num_heads=3, num_layers=3)  # the 14B beside the 1.3B, scaled down
WORDS = "a red fox runs through snow paper boat drifts on calm lake city lights at night".split()
PROMPTS = ["a red fox runs through snow", "a paper boat drifts on a calm lake", "city lights at night"]
LORA = {"r": 4, "alpha": 8}
LORA_TARGETS = ("model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj")
TEMPLATE = ('DETAILED_PROMPT_WITH_SPECIAL_TOKEN = """\nJudge the video for "{text_prompt}".\nVisual quality: '
            '<|VQ_reward|>\nMotion quality: <|MQ_reward|>\nText alignment: <|TA_reward|>\n"""\n')


def _randomize(module: torch.nn.Module, seed: int, std: float = 0.02) -> torch.nn.Module:
    """Perturb every parameter (diffusers zero-initialises some), so every weight carries signal."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen))
    return module


def diffusers_wan(shapes: dict, seed: int):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=shapes["num_heads"],
        attention_head_dim=shapes["dim"] // shapes["num_heads"], in_channels=shapes["latent_channels"],
        out_channels=shapes["latent_channels"], text_dim=shapes["text_dim"], freq_dim=shapes["freq_dim"],
        ffn_dim=shapes["ffn_dim"], num_layers=shapes["num_layers"], rope_max_seq_len=64)
    return _randomize(model, seed)


def wan_folder(state: dict, cfg, out: Path, shards: int = 1) -> None:
    """An original Wan 2.1 folder: WanModel config.json and the weights in `shards` safetensors files."""
    from stream_r1.models.wan_io import wan_config_json

    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(wan_config_json(cfg, "wan")))
    keys = sorted(state)
    if shards == 1:
        save_file({k: state[k].contiguous() for k in keys}, str(out / "diffusion_pytorch_model.safetensors"))
        return
    weight_map = {}
    for i in range(shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[i::shards]}
        save_file(part, str(out / name))
        weight_map.update(dict.fromkeys(part, name))
    (out / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def qwen2vl_tokenizer():
    """A byte-level BPE tokenizer with Qwen2-VL's special tokens and without the reward tokens (as downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    fast.add_special_tokens({"additional_special_tokens": [
        "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]})
    return fast


def qwen2vl_config_json(tok) -> dict:
    """Qwen2-VL-2B-Instruct's config.json form (flat text settings, `vision_config`), at toy width."""
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                      "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl", "torch_dtype": "bfloat16",
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "vocab_size": len(tok) + 8, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "tie_word_embeddings": True, "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        "image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
        "vision_config": {"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
                          "in_chans": 3, "patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2},
    }


def hub_names(state: dict) -> dict:
    """This project's Qwen2-VL names (transformers 5) -> the hub's (model.layers.*, visual.*)."""
    out = {}
    for k, v in state.items():
        if k.startswith("model.visual."):
            k = k[len("model."):]
        elif k.startswith("model.language_model."):
            k = "model." + k[len("model.language_model."):]
        out[k] = v
    return out


def build_videoreward(root: Path, settings) -> dict:
    """Qwen2-VL base folder + VideoAlign LoRA checkpoint folder + prompt template; returns the expected state."""
    from transformers import AutoConfig

    from stream_r1.reward.videoreward import SPECIAL_TOKENS, VideoRewardModel, load_prompt_template

    base, ckpt = root / "Qwen2-VL-2B-Instruct", root / "VideoReward" / "checkpoint-1200"
    base.mkdir(parents=True)
    ckpt.mkdir(parents=True)
    (root / "VideoAlign").mkdir()
    (root / "VideoAlign" / "prompt_template.py").write_text(TEMPLATE)
    tok = qwen2vl_tokenizer()
    tok.save_pretrained(base)
    (base / "config.json").write_text(json.dumps(qwen2vl_config_json(tok)))
    config = AutoConfig.from_pretrained(base, local_files_only=True)
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})  # what VideoAlign adds
    template = load_prompt_template(root / "VideoAlign" / "prompt_template.py")
    torch.manual_seed(5)
    model = _randomize(VideoRewardModel(config, tok, template, settings, output_dim=3), 5, std=0.1)
    hub = hub_names({k: v.detach().clone() for k, v in model.state_dict().items()})
    rm_head = hub.pop("rm_head.weight")
    save_file({k: v.to(torch.bfloat16) for k, v in hub.items()}, str(base / "model.safetensors"))
    expected = {k: v.to(torch.bfloat16).float() for k, v in model.state_dict().items()}
    expected["rm_head.weight"] = rm_head
    # the LoRA adapters VideoAlign trained on the language model, and the fully trained head
    gen, scale = torch.Generator().manual_seed(6), LORA["alpha"] / LORA["r"]
    adapters = {}
    for target in LORA_TARGETS:
        w = hub[target + ".weight"]
        a = torch.randn(LORA["r"], w.shape[1], generator=gen) * 0.1
        b = torch.randn(w.shape[0], LORA["r"], generator=gen) * 0.1
        adapters[f"base_model.model.{target}.lora_A.weight"] = a
        adapters[f"base_model.model.{target}.lora_B.weight"] = b
        ours = target.replace("model.", "model.language_model.", 1) + ".weight"
        expected[ours] = (w.to(torch.bfloat16).float() + scale * (b @ a)).to(torch.bfloat16).float()
    save_file(adapters, str(ckpt / "adapter_model.safetensors"))
    (ckpt / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": LORA["r"],
                                                          "lora_alpha": LORA["alpha"],
                                                          "target_modules": ["q_proj", "up_proj"]}))
    torch.save({"base_model.model.rm_head.weight": rm_head}, ckpt / "non_lora_state_dict.pth")
    (root / "VideoReward" / "model_config.json").write_text(json.dumps(
        {"peft_lora_config": {"lora_r": LORA["r"], "lora_alpha": LORA["alpha"], "use_rslora": False}}))
    return expected


def build_downloads(root: Path) -> dict[str, Path]:
    """Write every folder of the table in README 'At paper scale' under `root`; returns their paths."""
    from stream_r1.models.umt5 import tiny_umt5
    from stream_r1.models.wan_io import dit_from_diffusers, wan_state_dict
    from stream_r1.models.wan_vae import tiny_wan_vae
    from stream_r1.reward.videoreward import VideoRewardSettings

    root = Path(root)
    paths = {"diffusers": root / "Wan2.1-T2V-1.3B-Diffusers", "wan_1.3b": root / "Wan2.1-T2V-1.3B",
             "wan_14b": root / "Wan2.1-T2V-14B", "self_forcing": root / "self_forcing_dmd.pt",
             "prompts": root / "prompts.txt", "videoreward": root / "VideoReward",
             "qwen2vl": root / "Qwen2-VL-2B-Instruct", "template": root / "VideoAlign" / "prompt_template.py"}
    d = paths["diffusers"]
    with torch.random.fork_rng():
        small = diffusers_wan(STUDENT, seed=1)
        small.save_pretrained(d / "transformer")
        tiny_wan_vae(z_dim=STUDENT["latent_channels"]).save_pretrained(d / "vae")
        text = tiny_umt5(WORDS, d_model=STUDENT["text_dim"])
        text.encoder.save_pretrained(d / "text_encoder")
        text.tokenizer.save_pretrained(d / "tokenizer")
        (d / "model_index.json").write_text(json.dumps({
            "_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"],
            "vae": ["diffusers", "AutoencoderKLWan"], "text_encoder": ["transformers", "UMT5EncoderModel"],
            "tokenizer": ["transformers", "T5TokenizerFast"], "scheduler": ["diffusers", "UniPCMultistepScheduler"]}))
        critic = dit_from_diffusers(small)
        wan_folder(wan_state_dict(critic), critic.cfg, paths["wan_1.3b"])
        teacher = dit_from_diffusers(diffusers_wan(TEACHER, seed=2))
        wan_folder(wan_state_dict(teacher), teacher.cfg, paths["wan_14b"], shards=2)
        gen = torch.Generator().manual_seed(3)
        student = {k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in wan_state_dict(critic).items()}
        ema = {k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in student.items()}
        torch.save({"generator": {f"model.{k}": v for k, v in student.items()},
                    "generator_ema": {f"model.{k}": v for k, v in ema.items()},
                    "critic": {f"model.{k}": v for k, v in wan_state_dict(critic).items()}}, paths["self_forcing"])
        paths["prompts"].write_text("\n".join(PROMPTS) + "\n")
        settings = VideoRewardSettings(path=str(paths["videoreward"]), base=str(paths["qwen2vl"]),
                                       prompt_template=str(paths["template"]), dtype="float32")
        expected = build_videoreward(root, settings)
    torch.save(expected, root / "expected_reward.pt")
    return paths


def preset_config(paths: dict[str, Path]) -> dict:
    """The paper preset pointed at the folders, with a CPU-sized train section (the dry run's) and video size."""
    from stream_r1.common.config import load_config
    from stream_r1.distill.components import dry_run_config

    c = load_config("wan2.1-1.3b-stream-r1")
    d = paths["diffusers"]
    c["device"] = "cpu"
    c["teacher"] = {"path": str(paths["wan_14b"])}
    c["critic_init"] = {"path": str(paths["wan_1.3b"])}
    c["student_init"] = {"path": str(paths["self_forcing"]), "which": "generator_ema"}
    c["codec"] = {"path": str(d / "vae")}
    c["text"] = {**c["text"], "path": str(d / "text_encoder"), "tokenizer": str(d / "tokenizer"), "max_length": 16}
    c["video"] = {"height": 32, "width": 32}
    c["data"] = {"prompts": str(paths["prompts"])}
    c["reward"] = {**c["reward"], "path": str(paths["videoreward"]), "base": str(paths["qwen2vl"]),
                   "prompt_template": str(paths["template"]), "min_pixels": 28 * 28 * 4, "max_pixels": 56 * 56}
    return dry_run_config(c)
