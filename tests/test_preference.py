"""The preference annotator (reward/annotator.py) and reward training on its labelled pairs (reward/preference.py)."""

import ast
from pathlib import Path

import pytest
import torch

from stream_r1.reward.annotator import judge, label_pairs
from stream_r1.reward.base import AXES
from stream_r1.reward.pairs import make_pairs
from stream_r1.toyworld.prompts import split_prompts


@pytest.fixture(scope="module")
def truth_pairs():
    """Ground truth against each axis's degradations (the world's own truth, not ToyBench), seeded."""
    gen = torch.Generator().manual_seed(5)
    pool = split_prompts("train")
    attrs = [pool[i] for i in torch.randint(len(pool), (60,), generator=gen).tolist()]
    return make_pairs(attrs, gen, (0.5, 1.0), cycle_families=True)


def test_annotator_prefers_ground_truth_over_its_degradations(truth_pairs):
    b = truth_pairs
    for axis in AXES:
        right = wrong = 0
        for i in torch.nonzero(b.valid(axis)).flatten().tolist():
            j = judge(b.clean[i], b.degraded[axis][i], b.prompts[i])
            if not j.tie[axis]:
                right += j.scores[axis][0] > j.scores[axis][1]
                wrong += j.scores[axis][0] < j.scores[axis][1]
        assert right >= 0.85 * (right + wrong) and right + wrong >= 40, (axis, right, wrong)


def test_label_noise_is_the_stated_fraction_and_seeded(truth_pairs):
    b = truth_pairs
    clean = label_pairs(b.clean, b.degraded["vq"], b.prompts, 0.0, torch.Generator().manual_seed(1))
    noisy = label_pairs(b.clean, b.degraded["vq"], b.prompts, 0.3, torch.Generator().manual_seed(1))
    again = label_pairs(b.clean, b.degraded["vq"], b.prompts, 0.3, torch.Generator().manual_seed(1))
    assert all(torch.equal(noisy[a], again[a]) for a in AXES)
    labelled = clean["vq"] >= 0
    assert torch.equal(labelled, noisy["vq"] >= 0)  # ties stay unlabelled, noise or not
    flipped = float((clean["vq"][labelled] != noisy["vq"][labelled]).float().mean())
    assert 0.15 <= flipped <= 0.45, flipped  # 0.3 of ~60 labels, seeded


def test_annotator_shares_no_code_with_toybench():
    source = Path(__file__).parents[1] / "src/stream_r1/reward/annotator.py"
    imported = {node.module for node in ast.walk(ast.parse(source.read_text()))
                if isinstance(node, ast.ImportFrom) and node.module}
    assert not any("bench" in m for m in imported), imported


def test_reward_trains_on_annotated_pairs_and_keeps_them_for_resume(tmp_path):
    from stream_r1.common.config import load_config
    from stream_r1.reward.preference import PreferenceSettings, load_or_build_preferences
    from stream_r1.reward.train import train_reward

    config = load_config("toy-reward-pref")
    config["train"].update(steps=2, log_every=1, checkpoint_every=1, stats_videos=8, eval_pairs=8, pairs_per_step=2)
    config["train"]["preferences"].update(
        generators=[{"checkpoint": "toy-ode-init-small"}, {"checkpoint": "toy-teacher", "steps": 2}],
        prompts=4, pairs=16, per_step=4, eval_fraction=0.25)
    train_reward(config, tmp_path)
    settings = PreferenceSettings.from_dict(config["train"]["preferences"])
    kept = load_or_build_preferences(tmp_path, settings)  # read back, not rebuilt
    assert kept.videos.shape[0] == 2 * 4 and kept.first.shape == (16,)
    assert all(int(p) // 4 != int(q) // 4 for p, q in zip(kept.first, kept.second, strict=True))  # two generators
    assert all(kept.prompts[int(p) % 4] == kept.prompts[int(q) % 4] for p, q in zip(kept.first, kept.second,
                                                                                  strict=True))  # one prompt
    import json

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["annotator_agreement_heldback"]) == set(AXES)
    from stream_r1.reward.preference import preference_loss
    from stream_r1.reward.toy import load_toy_reward

    model = load_toy_reward(tmp_path / "reward.safetensors").requires_grad_(True)
    losses, _ = preference_loss(model, kept, torch.arange(16))
    labelled = {a: int((kept.labels[a] >= 0).sum()) for a in AXES}
    sum(losses.values()).backward()
    assert any(n > 0 for n in labelled.values()), labelled
    assert sum(float(q.grad.abs().sum()) for q in model.parameters() if q.grad is not None) > 0
    other = PreferenceSettings.from_dict({**config["train"]["preferences"], "flip": 0.2})
    with pytest.raises(ValueError, match="another preference pool"):
        load_or_build_preferences(tmp_path, other)


def test_preference_settings_name_the_fix():
    from stream_r1.reward.preference import PreferenceSettings

    with pytest.raises(ValueError, match="at least two generators"):
        PreferenceSettings.from_dict({"generators": [{"checkpoint": "toy-dmd"}]})
    with pytest.raises(ValueError, match=r"\[0, 0.5\)"):
        PreferenceSettings.from_dict({"generators": [{"checkpoint": "a"}, {"checkpoint": "b"}], "flip": 0.7})
