"""Config loading: YAML numbers as a user writes them, and overrides that fail with a clear message."""

import pytest

from stream_r1.config import ConfigError, load_config


def test_exponent_without_a_dot_is_a_float() -> None:
    # PyYAML alone reads `5e-5` as the string '5e-5' (YAML 1.1), which later breaks deep inside torch.optim.
    cfg = load_config("toy-dmd", ["train.lr_generator=5e-5", "train.steps=7", "dmd.guidance=3"])
    assert cfg["train"]["lr_generator"] == pytest.approx(5e-5)
    assert isinstance(cfg["train"]["lr_generator"], float)
    assert cfg["train"]["steps"] == 7 and isinstance(cfg["train"]["steps"], int)


def test_unknown_override_key_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown key 'lr_gen'.*lr_generator"):
        load_config("toy-dmd", ["train.lr_gen=1e-4"])


def test_evaluation_subset_is_fixed_and_drawn_from_its_split() -> None:
    from stream_r1.evaluate import eval_prompts
    from stream_r1.toyworld.prompts import split_prompts

    train = {p.text for p in split_prompts("train")}
    held = {p.text for p in split_prompts("heldout")}
    subset = eval_prompts("train", per_prompt=1, subset=48)
    assert len(set(subset)) == 48 and set(subset) <= train and not set(subset) & held
    assert eval_prompts("train", per_prompt=1, subset=48) == subset  # the same prompts every call
    assert eval_prompts("train", per_prompt=2, subset=48)[::2] == subset  # prompt-major repeats
    with pytest.raises(ValueError, match="--subset 10000: the heldout split has 48 prompts"):
        eval_prompts("heldout", subset=10000)


def test_base_config_is_merged_section_by_section(tmp_path):
    (tmp_path / "parent.yaml").write_text("model: {dim: 8, depth: 2}\ntrain: {lr: 1.0e-3, betas: [0.9, 0.99]}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\ntrain: {betas: [0.0, 0.9]}\nextra: 1\n")
    cfg = load_config(str(tmp_path / "child.yaml"), ["model.dim=16"])
    assert cfg == {"model": {"dim": 16, "depth": 2}, "train": {"lr": 1e-3, "betas": [0.0, 0.9]}, "extra": 1}
    (tmp_path / "parent.yaml").write_text("base: child.yaml\n")
    with pytest.raises(ConfigError, match="its own base"):
        load_config(str(tmp_path / "child.yaml"))


def test_packaged_stage_configs_inherit_from_stage_two():
    stage2, stage7 = load_config("toy-teacher-stage2"), load_config("toy-teacher-stage7")
    assert "shift_schedule" not in stage7["train"]  # stage 1's schedule must not leak into later stages
    assert stage7["model"] == {**stage2["model"], "refine_channels": 32}
    assert stage7["sampler"] == stage2["sampler"] and stage7["train"]["batch_size"] == stage2["train"]["batch_size"]
