"""Config loading: YAML numbers as a user writes them, and overrides that fail with a clear message."""

import pytest

from stream_r1.common.config import ConfigError, load_config


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
    from stream_r1.toyworld.prompts import eval_prompts, split_prompts

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


@pytest.mark.parametrize("override, message", [
    ("train.lr_generator=abc", "train.lr_generator='abc': expected a number"),
    ("train.steps=1.5", "train.steps=1.5: expected an integer"),
    ("train.betas=[0.0]", "train.betas=[0.0]: expected a list of 2 values"),
    ("reweight.beta=true", "reweight.beta=True: expected a number"),
    ("reweight.inter=1", "reweight.inter=1: expected true or false"),
    ("dmd.guidance=[3]", "dmd.guidance=[3]: expected a number"),
    ("train.denoising_timesteps=[1000, x]", "expected a list of numbers"),
])
def test_every_numeric_value_is_checked_when_the_config_loads(override, message) -> None:
    from stream_r1.distill.dmd import DMDSettings
    from stream_r1.distill.trainer import DistillSettings
    from stream_r1.reweight.settings import ReweightSettings

    with pytest.raises(ConfigError) as err:  # at the override where the config had a number, else at the settings
        cfg = load_config("toy-stream-r1", [override])
        DistillSettings.from_dict(cfg["train"])
        ReweightSettings.from_dict(cfg["reweight"])
        DMDSettings.from_dict(cfg["dmd"])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_every_packaged_config_passes_the_type_check() -> None:
    from stream_r1.common.config import CONFIG_DIR
    from stream_r1.distill.distributed import DistributedSettings
    from stream_r1.distill.dmd import DMDSettings
    from stream_r1.distill.trainer import DistillSettings
    from stream_r1.reweight.settings import ReweightSettings

    checked = 0
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        cfg = load_config(str(path))
        if "dmd" not in cfg or "student_init" not in cfg:
            continue
        DistillSettings.from_dict(cfg["train"]), DMDSettings.from_dict(cfg["dmd"])
        DistributedSettings.from_dict(cfg.get("distributed"))
        if cfg.get("reweight"):
            ReweightSettings.from_dict(cfg["reweight"])
        checked += 1
    assert checked >= 6


def test_cli_shows_a_bad_value_in_one_line(tmp_path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "stream_r1", "distill", "--config", "toy-dmd", "--out",
                           str(tmp_path / "run"), "--set", "train.lr_generator=abc"], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "stream-r1 distill: error: train.lr_generator='abc': expected a number"]


def test_an_override_keeps_a_number_a_number_in_every_config() -> None:
    """Sections without a settings class (e.g. the teacher's `train`) are checked at the override."""
    with pytest.raises(ConfigError, match=r"^train.lr='abc': expected a number$"):
        load_config("toy-teacher", ["train.lr=abc"])
    assert load_config("toy-teacher", ["train.lr=1"])["train"]["lr"] == 1


def test_only_presets_are_packaged_and_every_experiment_config_loads() -> None:
    """Investigation configs live beside their reports in experiments/<name>/, runnable by path (issue 19)."""
    from pathlib import Path

    from stream_r1.common.config import CONFIG_DIR
    from stream_r1.evaluation.compare import load_compare_config, row_config

    experiments = Path(__file__).parents[1] / "experiments"
    packaged = {p.stem for p in CONFIG_DIR.glob("*.yaml")}
    assert not packaged & {"toy-compare-placebo", "toy-compare-seeds", "toy-stream-r1-shuffled", "toy-reward-anchored"}
    compares = 0
    for path in sorted(experiments.rglob("*.yaml")):
        cfg = load_config(str(path))
        if "rows" in cfg:
            _, s = load_compare_config(str(path))
            for row in s.rows:
                if row.trained:
                    row_config(s, row, seed=0)  # the row's own config resolves and passes the settings check
            compares += 1
    assert compares >= 12
    with pytest.raises(ConfigError) as err:
        load_config("nothere")
    listed = str(err.value)
    assert "toy-dmd" in listed and "toy-compare-placebo" not in listed and "\n" not in listed
