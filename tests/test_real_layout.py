"""The real loaders on the folders a user downloads (tests/real_layout.py), then one distill step through them."""

import math

import pytest
import torch
from safetensors.torch import load_file

from .real_layout import preset_config


def test_videoreward_folders_load_through_load_videoreward(downloads):
    from stream_r1.reward.videoreward import VideoRewardSettings, load_videoreward

    settings = VideoRewardSettings.from_dict({**preset_config(downloads)["reward"], "dtype": "float32"})
    reward = load_videoreward(settings)  # Qwen2-VL base + VideoAlign LoRA merge + the non-LoRA head
    expected = torch.load(downloads["qwen2vl"].parent / "expected_reward.pt", weights_only=True)
    state = reward.raw_fn.state_dict()
    assert sorted(state) == sorted(expected)
    for k, v in expected.items():
        assert torch.allclose(state[k], v, atol=1e-6), k
    pixels = torch.rand(2, 21, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    scores = reward(pixels, ["a red fox runs through snow", "city lights at night"])
    assert all(s.shape == (2,) and bool(torch.isfinite(s).all()) for s in scores.values())


def test_one_distill_step_through_the_real_loaders(downloads, tmp_path):
    from stream_r1.distill.components import Autocast
    from stream_r1.distill.trainer import Distiller
    from stream_r1.models.umt5 import UMT5TextEncoder
    from stream_r1.models.wan_vae import WanVAECodec
    from stream_r1.reward.videoreward import VideoRewardModel

    config = preset_config(downloads)
    d = Distiller(config, tmp_path)  # wan_components + load_videoreward, no dry run
    assert isinstance(d.teacher, Autocast) and isinstance(d.text, UMT5TextEncoder)
    assert isinstance(d.codec, WanVAECodec) and isinstance(d.reweighter.reward.raw_fn, VideoRewardModel)
    t, c, g = d.teacher.cfg, d.critic.cfg, d.generator.cfg
    assert (t.dim, t.num_layers, t.num_heads) == (48, 3, 3)  # the wide, deep teacher from 2 shards
    assert (c.dim, c.num_layers, c.causal) == (g.dim, g.num_layers, False) == (32, 2, False)
    assert g.causal and (g.frames_per_chunk, g.local_attn_frames, g.sink_frames) == (3, 9, 3)
    teacher_file = {}
    for shard in sorted(downloads["wan_14b"].glob("*.safetensors")):
        teacher_file.update(load_file(str(shard)))
    own = d.teacher.module.state_dict()
    assert all(torch.equal(own[k], v.to(own[k].dtype)) for k, v in teacher_file.items())
    critic_file = load_file(str(downloads["wan_1.3b"] / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(d.critic.state_dict()[k], v) for k, v in critic_file.items())
    ema = torch.load(downloads["self_forcing"], weights_only=True)["generator_ema"]
    assert all(torch.equal(d.generator.state_dict()[k[len("model."):]], v) for k, v in ema.items())
    assert d.prompts == downloads["prompts"].read_text().split("\n")[:3]

    logs = d.train_step(0)  # step 0 updates the generator (with Stream-R1 weights) and the critic
    for key in ("loss/generator", "loss/critic", "reward/vq", "reward/mq", "reward/ta", "inter/w_mean"):
        assert math.isfinite(logs[key]), key
    assert logs["grad_norm/generator"] > 0 and logs["grad_norm/critic"] > 0
    path = d.export()
    from stream_r1.checkpoint import load_dit

    student, extra = load_dit(path)  # what generate reads: the family and the local folders
    assert extra["family"] == "wan" and extra["codec"]["path"] == config["codec"]["path"]
    assert student.cfg.causal and extra["sampler"]["shift"] == 5.0


@pytest.mark.parametrize("key", ["teacher", "critic_init"])
def test_a_missing_download_is_a_clear_error(downloads, key):
    from stream_r1.checkpoint import CheckpointError
    from stream_r1.distill.components import wan_components

    config = preset_config(downloads)
    config[key] = {"path": str(downloads["wan_14b"].parent / "nowhere")}
    with pytest.raises(CheckpointError, match="download it first"):
        wan_components(config)


def test_empty_components_hold_no_weights_until_filled(downloads):
    from stream_r1.distill.components import fill_components, wan_components

    config = preset_config(downloads)
    parts = wan_components(config, empty=True)  # the DiTs on the meta device, their files kept open
    models = {"teacher": parts.teacher.module, "critic": parts.critic, "generator": parts.generator}
    assert all(p.is_meta for m in models.values() for p in m.parameters())
    assert sorted(parts.sources) == sorted(models)
    fill_components(parts, "cpu")
    assert not parts.sources and not any(p.is_meta for m in models.values() for p in m.parameters())
    eager = wan_components(config)
    for role, model in models.items():
        ref = getattr(eager, role)
        ref = ref.module if role == "teacher" else ref
        assert model.cfg == ref.cfg
        a, b = model.state_dict(), ref.state_dict()
        assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in b), role


@pytest.mark.slow  # torchrun start-up: ~25 s on this machine
def test_two_ranks_each_fill_only_their_shard(downloads):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("fill_shards.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(downloads["wan_14b"])]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0: ok" in proc.stdout and "rank 1: ok" in proc.stdout
