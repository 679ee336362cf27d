"""`stream-r1 diagnose`: per-frame motion and Stream-R1 weight profiles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream_r1.common.config import load_config
from stream_r1.evaluation.diagnose import motion_profile, weight_profile
from stream_r1.evaluation.evaluate import ground_truth_uint8
from stream_r1.models.codec import SpaceToDepthCodec
from stream_r1.toyworld.bench import STALL_RATIO
from stream_r1.toyworld.prompts import eval_prompts


def test_ground_truth_moves_at_the_prompt_speed_and_a_held_start_shows_as_stalls():
    prompts = eval_prompts("train", 1, 6)
    videos = ground_truth_uint8(prompts, 0)
    clean = motion_profile(videos, prompts)
    assert np.allclose(clean["step_over_speed"], 1.0, atol=0.1)
    assert max(clean["stall_fraction"]) == 0.0
    held = [np.concatenate([v[:1], v[:1], v[:1], v[3:]]) for v in videos]  # frames 1, 2 repeat frame 0
    stalled = motion_profile(held, prompts)
    assert stalled["stall_fraction"][:2] == [1.0, 1.0]
    assert stalled["step_over_speed"][2] > 2.5  # the catch-up jump of three frames' motion
    assert all(s < STALL_RATIO for s in stalled["step_over_speed"][:2])


def test_weight_profile_is_the_trainers_temporal_weight():
    prompts = eval_prompts("train", 1, 4)
    videos = ground_truth_uint8(prompts, 0)
    reweight = load_config("toy-stream-r1")["reweight"]
    profile = weight_profile(videos, prompts, "toy-reward", reweight, SpaceToDepthCodec(1))
    w_t = np.array(profile["temporal_weight"])
    assert w_t.shape == (12,) and w_t.mean() == pytest.approx(1.0, abs=1e-5)
    for axis in ("vq", "mq", "ta"):
        assert np.mean(profile[f"saliency_{axis}"]) == pytest.approx(1.0, abs=1e-5)
    # the profile reads w_t off W_intra = w_t * w_s (mean 1 per frame) / mean: it must equal w_t built directly
    from stream_r1.reward.base import videos_to_pixels
    from stream_r1.reward.toy import load_toy_reward
    from stream_r1.reweight.intra import temporal_weights, to_latent_grid
    from stream_r1.reweight.reweighter import StreamR1Reweighter
    from stream_r1.reweight.settings import ReweightSettings

    settings = ReweightSettings.from_dict(reweight)
    direct = StreamR1Reweighter(load_toy_reward("toy-reward"), SpaceToDepthCodec(1).decode, settings)
    latents = SpaceToDepthCodec(1).encode(videos_to_pixels(videos))
    direct(latents, prompts, step=0)
    fused = to_latent_grid(direct.last["saliency"], tuple(latents.shape[2:]))
    w_direct = temporal_weights(fused, settings.temporal_strength, settings.temporal_floor).mean(0)
    assert np.allclose(w_t, w_direct.numpy(), atol=1e-4)
    flat = weight_profile(videos, prompts, "toy-reward", {**reweight, "temporal_strength": 0.0}, SpaceToDepthCodec(1))
    assert np.allclose(flat["temporal_weight"], 1.0)


def test_diagnose_cli_writes_profiles_and_a_plot(tmp_path):
    from stream_r1.cli import main

    out, plot = tmp_path / "d.json", tmp_path / "d.png"
    assert main(["diagnose", "--checkpoint", "ground-truth", "--checkpoint", "toy-dmd", "--subset", "3",
                 "--out", str(out), "--plot", str(plot)]) == 0
    result = json.loads(out.read_text())
    assert list(result["profiles"]) == ["ground-truth", "toy-dmd"] and result["videos"] == 3
    assert result["profiles"]["toy-dmd"]["frames_per_chunk"] == 3
    assert plot.stat().st_size > 10_000


def test_diagnose_refuses_ground_truth_alone_and_a_config_without_reweighting(capsys):
    from stream_r1.cli import main

    assert main(["diagnose", "--checkpoint", "ground-truth"]) == 2
    assert "add e.g. --checkpoint toy-dmd" in capsys.readouterr().err
    assert main(["diagnose", "--checkpoint", "toy-dmd", "--config", "toy-dmd"]) == 2
    assert "no `reweight` section" in capsys.readouterr().err


def test_diagnose_steps_override_matches_the_students_own_four_step_schedule():
    from stream_r1.evaluation.diagnose import diagnose

    reweight = load_config("toy-stream-r1")["reweight"]
    own = diagnose(["toy-dmd"], "toy-reward", reweight, subset=3)["profiles"]["toy-dmd"]
    four = diagnose(["toy-dmd"], "toy-reward", reweight, subset=3, steps=4)["profiles"]["toy-dmd"]
    one = diagnose(["toy-dmd"], "toy-reward", reweight, subset=3, steps=1)["profiles"]["toy-dmd"]
    assert four["step_over_speed"] == own["step_over_speed"]  # linspace(1000, 250, 4) is the student's schedule
    assert one["step_over_speed"] != own["step_over_speed"]


def test_a_temporal_difference_reward_is_blind_at_the_ends_before_any_training():
    """method.md §3.4: end frames enter fewer temporal differences and conv windows, so their saliency is weaker."""
    import torch

    from stream_r1.reward.base import videos_to_pixels
    from stream_r1.reward.toy import ToyRewardConfig, ToyRewardModel

    prompts = eval_prompts("train", 1, 8)
    pixels = videos_to_pixels(ground_truth_uint8(prompts, 0)).requires_grad_(True)
    torch.manual_seed(0)
    model = ToyRewardModel(ToyRewardConfig(channels=(16, 32, 48)))
    (grad,) = torch.autograd.grad(model.raw_scores(pixels, prompts)["mq"].sum(), pixels)
    profile = grad.norm(dim=2).mean(dim=(2, 3))
    profile = (profile / profile.mean(dim=1, keepdim=True)).mean(0)
    assert profile[0] < 0.8 and profile[-1] < 0.8
    assert profile[2:-2].min() > 0.95


def test_legend_labels_shorten_checkpoint_paths_to_their_run_folders():
    from stream_r1.evaluation.diagnose import legend_label

    assert legend_label("runs/c/runs/stream-r1-intra-only/seed_0/student.safetensors") == "stream-r1-intra-only/seed_0"
    assert legend_label("toy-dmd-small") == "toy-dmd-small"
    assert legend_label("ground-truth") == "ground-truth"
