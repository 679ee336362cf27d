"""Reward protocol, toy reward model, its checkpoint format and its Bradley-Terry training."""

import copy
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from stream_r1.common.config import load_config
from stream_r1.common.weights import SHORT_NAMES, WEIGHTS_DIR, CheckpointError
from stream_r1.reward.base import AXES, RewardModel, ZScoredReward, validate_pixels
from stream_r1.reward.pairs import batch_for_step, make_pairs, safe_families, wrong_prompt
from stream_r1.reward.toy import ToyRewardConfig, ToyRewardModel, load_toy_reward, num_parameters, save_toy_reward
from stream_r1.reward.train import train_reward
from stream_r1.toyworld.degrade import DEGRADATIONS
from stream_r1.toyworld.prompts import parse_prompt, split_prompts
from stream_r1.toyworld.render import render_spec, sample_spec, sample_videos

TINY = ToyRewardConfig(channels=(4, 8, 8), hidden=8, map_channels=2, groups=2)


def tiny_model(seed: int = 0) -> ToyRewardModel:
    torch.manual_seed(seed)
    model = ToyRewardModel(TINY).eval()
    model.set_statistics({"vq": 0.5, "mq": -1.0, "ta": 2.0}, {"vq": 2.0, "mq": 0.5, "ta": 4.0})
    return model


def videos_and_prompts(n: int = 3, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    attrs = split_prompts("heldout")[:n]
    videos, _ = sample_videos(attrs, seed)
    return videos, [a.text for a in attrs]


def test_protocol_shapes_and_zscoring():
    model = tiny_model()
    videos, prompts = videos_and_prompts()
    assert isinstance(model, RewardModel)
    scores = model(videos, prompts)
    raw = model.raw_scores(videos, prompts)
    assert set(scores) == set(AXES)
    for i, a in enumerate(AXES):
        assert scores[a].shape == (3,)
        expected = (raw[a] - model.z_mean[i]) / model.z_std[i]
        torch.testing.assert_close(scores[a], expected)


def test_gradient_reaches_pixels_for_every_axis():
    model = tiny_model()
    videos, prompts = videos_and_prompts()
    for a in AXES:
        pixels = videos.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(pixels, prompts)[a].sum(), pixels)
        assert grad.shape == pixels.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0, a


def test_every_sample_is_scored_independently():
    model = tiny_model()
    videos, prompts = videos_and_prompts()
    before = model(videos, prompts)
    changed = videos.clone()
    changed[1] = torch.rand_like(changed[1])
    after = model(changed, [prompts[0], prompts[2], prompts[2]])
    for a in AXES:
        torch.testing.assert_close(after[a][0], before[a][0], rtol=0, atol=1e-5)
        assert not torch.allclose(after[a][1], before[a][1]), a  # sample 1 is really scored


@pytest.mark.parametrize(
    "pixels, match",
    [
        (torch.rand(2, 4, 3, 8, 8) * 2 - 1, r"\(pixels \+ 1\) / 2"),
        (torch.rand(4, 3, 8, 8), "unsqueeze"),
        (torch.rand(2, 3, 4, 8, 8), "permute"),
        (torch.rand(2, 4, 1, 8, 8), "3 RGB channels"),
        ((torch.rand(2, 4, 3, 8, 8) * 255).to(torch.uint8), "/ 255"),
        (torch.rand(2, 4, 3, 8, 8) * 255, "outside"),
        (torch.full((2, 4, 3, 8, 8), float("nan")), "NaN"),
        (torch.rand(8, 8), "rank"),
    ],
)
def test_validate_pixels_names_problem_and_fix(pixels, match):
    with pytest.raises(ValueError, match=match) as info:
        validate_pixels(pixels)
    assert "\n" not in str(info.value)


def test_validate_pixels_accepts_unit_range_and_checks_prompt_count():
    validate_pixels(torch.rand(2, 4, 3, 8, 8), ["a", "b"])
    with pytest.raises(ValueError, match="one prompt per video"):
        validate_pixels(torch.rand(2, 4, 3, 8, 8), ["a"])
    videos, prompts = videos_and_prompts()
    with pytest.raises(ValueError, match="look like"):
        tiny_model()(videos * 2 - 1, prompts)


def test_zscored_wrapper_plugs_in_any_raw_callable():
    def raw_fn(pixels, prompts):
        m = pixels.mean(dim=(1, 2, 3, 4))
        return {"vq": m, "mq": 2 * m, "ta": -m}

    reward = ZScoredReward(raw_fn, {"vq": 0.5, "mq": 1.0, "ta": 0.0}, {"vq": 0.1, "mq": 0.2, "ta": 1.0})
    pixels = torch.rand(3, 2, 3, 4, 4, requires_grad=True)
    scores = reward(pixels, ["", "", ""])
    m = pixels.mean(dim=(1, 2, 3, 4))
    torch.testing.assert_close(scores["vq"], (m - 0.5) / 0.1)
    torch.testing.assert_close(scores["mq"], (2 * m - 1.0) / 0.2)
    assert isinstance(reward, RewardModel)
    scores["ta"].sum().backward()
    assert pixels.grad is not None
    with pytest.raises(ValueError, match="lack axes"):
        ZScoredReward(lambda p, t: {"vq": p.mean((1, 2, 3, 4))}, dict.fromkeys(AXES, 0.0), dict.fromkeys(AXES, 1.0))(
            pixels, ["", "", ""]
        )
    with pytest.raises(ValueError, match="score every sample"):
        ZScoredReward(lambda p, t: dict.fromkeys(AXES, p.mean()), dict.fromkeys(AXES, 0.0), dict.fromkeys(AXES, 1.0))(
            pixels, ["", "", ""]
        )
    with pytest.raises(ValueError, match="std must be > 0"):
        ZScoredReward(raw_fn, dict.fromkeys(AXES, 0.0), {"vq": 1.0, "mq": 0.0, "ta": 1.0})


def test_default_model_is_small():
    assert num_parameters(ToyRewardModel(ToyRewardConfig(**load_config("toy-reward")["model"]))) <= 300_000


def test_save_load_round_trip_and_foreign_file_refused(tmp_path):
    model = tiny_model(seed=3)
    save_toy_reward(tmp_path / "r.safetensors", model, {"note": 1})
    loaded = load_toy_reward(tmp_path / "r.safetensors")
    assert loaded.cfg == model.cfg and not loaded.training
    videos, prompts = videos_and_prompts()
    for a in AXES:
        torch.testing.assert_close(loaded(videos, prompts)[a], model(videos, prompts)[a])
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "stream-r1-dit"})
    with pytest.raises(CheckpointError, match="not a stream-r1 toy reward checkpoint") as info:
        load_toy_reward(tmp_path / "other.safetensors")
    assert "\n" not in str(info.value)
    assert SHORT_NAMES["toy-reward"] == "toy-reward.safetensors"


def test_pairs_are_deterministic_and_wrong_prompts_differ_in_one_attribute():
    a, b = batch_for_step(5, 7, 2, (0.3, 1.0)), batch_for_step(5, 7, 2, (0.3, 1.0))
    assert torch.equal(a.clean, b.clean) and a.wrong_prompts == b.wrong_prompts
    assert all(torch.equal(a.degraded[k], b.degraded[k]) for k in AXES)
    train = split_prompts("train")
    allowed = {p.combo for p in train}
    gen = torch.Generator().manual_seed(0)
    for attrs in train[:40]:
        other = wrong_prompt(attrs, gen, allowed)
        changed = [f for f in ("colour", "shape", "direction", "speed", "background")
                   if getattr(other, f) != getattr(attrs, f)]
        assert len(changed) == 1 and other.combo in allowed
        assert parse_prompt(other.text) == other


def test_ta_negatives_never_depict_held_out_combinations():
    train = split_prompts("train")
    allowed = {p.combo for p in train}
    held = {p.combo for p in split_prompts("heldout")}
    for attrs in train:
        for family in safe_families("ta", attrs, allowed):
            attribute = family.removeprefix("wrong_")
            c, s, d, b = attrs.combo
            assert not any((v if attribute == "colour" else c, v if attribute == "shape" else s,
                            v if attribute == "direction" else d, b) in held for v in ("red", "green", "blue",
                            "yellow", "circle", "square", "triangle", "left", "right", "up", "down")), (attrs, family)
    assert safe_families("vq", train[0], allowed) == list(DEGRADATIONS["vq"])
    # every other colour, shape or direction of this prompt is held out; a wrong speed word never is (no combo part)
    assert safe_families("ta", parse_prompt("a blue circle moving right on a white background"), allowed) == [
        "wrong_speed"]


def test_excluded_families_are_never_drawn_for_training():
    def drawn(exclude: tuple[str, ...]) -> set[str]:
        return {f for step in range(6) for f in batch_for_step(0, step, 8, (0.3, 1.0), exclude_families=exclude)
                .families["ta"]}

    assert "wrong_speed" in drawn(())
    assert "wrong_speed" not in drawn(("wrong_speed",)) and {"wrong_colour", "wrong_direction"} <= drawn(
        ("wrong_speed",))


def test_unknown_excluded_family_is_a_one_line_error(tmp_path):
    cfg = tiny_train_config(2)
    cfg["train"]["exclude_families"] = ["wrong_sped"]
    with pytest.raises(ValueError, match="wrong_sped.*no degradation family"):
        train_reward(cfg, tmp_path / "r")


def tiny_train_config(steps: int) -> dict:
    cfg = copy.deepcopy(load_config("toy-reward"))
    cfg["model"].update(channels=[4, 8, 8], hidden=8, map_channels=2, groups=2)
    cfg["train"].update(steps=steps, pairs_per_step=2, warmup_steps=1, log_every=1, checkpoint_every=2,
                        stats_videos=4, eval_pairs=6)
    return cfg


def test_train_reward_writes_weights_metrics_and_resumes_exactly(tmp_path):
    out = tmp_path / "run"
    weights = train_reward(tiny_train_config(3), out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["heldout_accuracy"]) == {*AXES, "ta_prompt"}
    assert all(0 <= v <= 1 for v in metrics["heldout_accuracy"].values())
    assert metrics["steps"] == 3
    straight = load_toy_reward(weights)
    assert float(straight.z_std.min()) > 0 and not torch.equal(straight.z_mean, torch.zeros(3))
    # Simulate a crash after step 2: drop the final checkpoint, resume, and land on the same weights.
    shutil.rmtree(out / "checkpoints" / "step_0000003")
    resumed = load_toy_reward(train_reward(tiny_train_config(3), out, resume=True))
    for (k, x), (_, y) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(x, y), k


@pytest.mark.skipif(not (WEIGHTS_DIR / "toy-reward.safetensors").exists(), reason="shipped toy-reward not built")
def test_shipped_reward_ranks_clean_above_strongly_degraded():
    model = load_toy_reward("toy-reward")
    gen = torch.Generator().manual_seed(123)
    attrs = split_prompts("heldout")[::6][:8]
    specs = [sample_spec(a, gen) for a in attrs]
    clean = torch.stack([render_spec(s) for s in specs])
    prompts = [a.text for a in attrs]
    clean_scores = model(clean, prompts)
    for axis, families in DEGRADATIONS.items():
        wins = []
        for fn in families.values():
            bad = torch.stack(
                [fn(s, 1.0, gen) if axis == "ta" else fn(v, 1.0, gen) for s, v in zip(specs, clean, strict=True)]
            )
            wins.append(clean_scores[axis] > model(bad, prompts)[axis])
        assert torch.cat(wins).float().mean() >= 0.9, axis


def test_anchor_pairs_degrade_the_given_videos_and_mask_ta():
    from stream_r1.reward.anchors import anchor_pairs, concat_pairs

    gen = torch.Generator().manual_seed(0)
    train = split_prompts("train")
    videos = [render_spec(sample_spec(a, gen)) for a in train[:3]]
    bank = (torch.stack(videos) * 255).round().to(torch.uint8)
    prompts = [a.text for a in train[:3]]
    batch = anchor_pairs(bank, prompts, 4, torch.Generator().manual_seed(1), (0.5, 1.0), graded=True)
    assert batch.clean.shape == (4, *bank.shape[1:])
    for clean, prompt in zip(batch.clean, batch.prompts, strict=True):  # each anchor is a bank video, unchanged
        assert torch.equal(clean, bank[prompts.index(prompt)].float() / 255.0)
    assert not batch.valid("ta").any()  # no scene to re-render: TA learns from wrong prompts only
    assert batch.valid("vq").all() and batch.valid("mq").float().mean() > 0
    assert all(w != p for w, p in zip(batch.wrong_prompts, batch.prompts, strict=True))
    both = concat_pairs(make_pairs(train[:2], gen, (0.3, 1.0), graded=True), batch)
    assert both.clean.shape[0] == 6 and both.stronger["mq"].shape[0] == 6 and len(both.families["vq"]) == 6


def test_reward_fine_tune_on_anchors_starts_from_init_and_keeps_its_bank(tmp_path, monkeypatch):
    from stream_r1.reward import anchors

    first = train_reward(tiny_train_config(1), tmp_path / "a")
    gen = torch.Generator().manual_seed(0)
    train = split_prompts("train")
    fake_bank = (torch.stack([render_spec(sample_spec(a, gen)) for a in train[:4]]) * 255).to(torch.uint8)
    calls = []

    def fake_build(checkpoints, videos, seed, frames):
        calls.append(checkpoints)
        return fake_bank, [a.text for a in train[:4]]

    monkeypatch.setattr(anchors, "build_anchor_bank", fake_build)
    cfg = tiny_train_config(2)
    cfg["train"].update(init_from=str(first), anchors={"checkpoints": ["student"], "videos": 4, "seed": 0,
                                                       "per_step": 2})
    train_reward(cfg, tmp_path / "b")
    train_reward(cfg, tmp_path / "b", resume=True)  # the bank on disk is reused, not rolled out again
    assert calls == [["student"]]
    cfg["train"]["anchors"]["seed"] = 1
    with pytest.raises(ValueError, match="another anchor bank"):
        train_reward(cfg, tmp_path / "b", resume=True)
    bad = tiny_train_config(1)
    bad["model"]["hidden"] = 16
    bad["train"]["init_from"] = str(first)
    with pytest.raises(ValueError, match="another model config"):
        train_reward(bad, tmp_path / "c")


@pytest.mark.skipif(not (WEIGHTS_DIR / "toy-dmd.safetensors").exists(), reason="shipped toy-dmd not built")
def test_reward_reliability_ranks_a_generators_videos(tmp_path):
    from stream_r1.cli import main

    out = tmp_path / "rel.json"
    main(["reward-reliability", "--checkpoint", "toy-dmd", "--reward", "toy-reward", "--subset", "4",
          "--per-prompt", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["videos"] == 4 and result["split"] == "train"
    rho = result["spearman"]["toy-reward"]
    assert set(rho) == set(AXES) and all(-1.0 <= v <= 1.0 for v in rho.values())


@pytest.mark.skipif(not (WEIGHTS_DIR / "toy-reward-speed.safetensors").exists(), reason="toy-reward-speed not built")
def test_speed_probe_renders_its_speeds_and_the_speed_aware_reward_peaks_at_the_prompts(tmp_path, capsys):
    from stream_r1.cli import main

    out = tmp_path / "speed.json"
    main(["reward-speed", "--reward", "toy-reward-speed", "--split", "heldout", "--scales", "0.7", "1", "1.4",
          "--out", str(out)])
    result = json.loads(out.read_text())
    right = result["toybench_ta_speed"]  # the oracle reads the speed word right only at k = 1
    assert right[1] > 0.95 and right[0] < 0.7 and right[2] < 0.7
    ta = result["mean_z"]["toy-reward-speed"]["ta"]
    assert ta[1] > ta[0] + 0.1 and ta[1] > ta[2] + 0.1
    assert main(["reward-speed", "--reward", "toy-reward-speed", "--scales", "0"]) == 2
    assert "speed multiples above 0" in capsys.readouterr().err


def test_preference_pairs_put_the_preferred_video_first_on_every_head():
    from stream_r1.reward.anchors import concat_pairs, preference_pairs

    gen = torch.Generator().manual_seed(0)
    train = split_prompts("train")
    better = (torch.stack([render_spec(sample_spec(a, gen)) for a in train[:3]]) * 255).round().to(torch.uint8)
    worse = (better.float() * 0.5).to(torch.uint8)
    prompts = [a.text for a in train[:3]]
    batch = preference_pairs(worse, better, prompts, 5, torch.Generator().manual_seed(1))
    for axis in AXES:
        assert batch.valid(axis).all()
        assert torch.equal(batch.degraded[axis], batch.stronger[axis]) and not batch.gaps[axis].any()
    for clean, prompt in zip(batch.clean, batch.prompts, strict=True):
        assert torch.equal(clean, better[prompts.index(prompt)].float() / 255.0)
    both = concat_pairs(make_pairs(train[:2], gen, (0.3, 1.0), graded=True), batch)
    assert both.gaps["vq"].shape == (7,)
