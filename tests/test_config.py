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
