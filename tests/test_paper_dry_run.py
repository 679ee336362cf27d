"""The paper-scale preset: its recipe values, and `stream-r1 distill --dry-run` running one Stream-R1 step."""

import math

import pytest

from stream_r1.common.config import load_config

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

PRESET = "wan2.1-1.3b-stream-r1"


def test_preset_mirrors_the_public_recipe():
    c = load_config(PRESET)
    t = c["train"]
    assert c["family"] == "wan" and c["dtype"] == "bfloat16"
    assert c["student"] == {"causal": True, "frames_per_chunk": 3, "local_attn_frames": 9, "sink_frames": 3}
    assert t["denoising_timesteps"] == [1000, 750, 500, 250] and t["frames"] == 81
    assert (t["lr_generator"], t["lr_critic"], t["generator_every"], t["ema_decay"]) == (2e-6, 4e-7, 5, 0.99)
    assert (c["dmd"]["guidance"], c["dmd"]["shift"], c["reweight"]["beta"]) == (3.0, 5.0, 2.0)


def test_dry_run_runs_one_stream_r1_step_on_the_cpu(capsys):
    from stream_r1.cli import main
    from stream_r1.distill.components import Autocast
    from stream_r1.distill.trainer import Distiller
    from stream_r1.models.dit import DiT
    from stream_r1.models.umt5 import UMT5TextEncoder
    from stream_r1.models.wan_vae import WanVAECodec
    from stream_r1.reward.videoreward import VideoRewardModel

    assert main(["distill", "--config", PRESET, "--dry-run"]) == 0
    out = capsys.readouterr().out
    logs = {line.split(":")[0].strip(): float(line.split(":")[1]) for line in out.splitlines()[1:]}
    for key in ("loss/generator", "loss/critic", "reward/vq", "reward/mq", "reward/ta", "inter/w_mean", "intra/w_max"):
        assert math.isfinite(logs[key]), key
    assert logs["grad_norm/generator"] > 0 and logs["grad_norm/critic"] > 0

    from stream_r1.distill.components import dry_run_config

    d = Distiller(dry_run_config(load_config(PRESET)), "unused", dry_run=True)  # the same classes as at paper scale
    assert isinstance(d.teacher, Autocast) and isinstance(d.teacher.module, DiT) and isinstance(d.generator, DiT)
    assert d.generator.cfg.causal and d.generator.cfg.sink_frames == 3
    t, g, c = d.teacher.cfg, d.generator.cfg, d.critic.cfg  # the 14B / 1.3B pairing, scaled down
    assert t.dim > g.dim and t.num_layers > g.num_layers and t.num_heads > g.num_heads
    assert (c.dim, c.num_layers) == (g.dim, g.num_layers) and not c.causal
    assert isinstance(d.codec, WanVAECodec) and isinstance(d.text, UMT5TextEncoder)
    assert isinstance(d.reweighter.reward.raw_fn, VideoRewardModel)
    assert d.latent_shape(1) == (1, 16, 6, 4, 4)  # 21 frames -> 6 latent frames = 2 chunks of 3


def test_generate_streams_a_wan_family_student(tmp_path):
    """`stream-r1 generate` on a paper-scale student: UMT5 and the Wan VAE load from the local paths it records."""
    import json

    from stream_r1.cli import main
    from stream_r1.distill.components import dry_run_config, tiny_wan_components
    from stream_r1.models.dit_io import save_dit

    parts = tiny_wan_components(dry_run_config(load_config(PRESET)))
    parts.text.encoder.save_pretrained(tmp_path / "text_encoder")
    parts.text.tokenizer.save_pretrained(tmp_path / "tokenizer")
    parts.codec.vae.save_pretrained(tmp_path / "vae")
    meta = {"family": "wan", "frame_size": [32, 32], "codec": {"path": str(tmp_path / "vae")},
            "text": {"path": str(tmp_path / "text_encoder"), "tokenizer": str(tmp_path / "tokenizer"),
                     "max_length": 16, "negative_prompt": ""},
            "sampler": {"shift": 5.0, "denoising_timesteps": [1000, 500]}}
    save_dit(tmp_path / "student.safetensors", parts.generator, meta)
    argv = ["generate", "--checkpoint", str(tmp_path / "student.safetensors"), "--prompt", "a red fox runs",
            "--frames", "21", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest[0]["frames"] == 21 and (tmp_path / "out" / "0.mp4").exists()
    assert main([*argv[:-4], "--frames", "20", "--out", str(tmp_path / "bad")]) == 2  # not 4k+1 frames
