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
