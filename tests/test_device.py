"""`--device` / `--dtype` on every command that runs a model: CPU results unchanged, clear errors without a GPU."""

import hashlib

import numpy as np
import pytest
import torch

from stream_r1.cli import build_parser, main, run_config
from stream_r1.common.config import ConfigError
from stream_r1.common.device import inference_dtype, resolve_device, resolve_dtype
from stream_r1.common.weights import WEIGHTS_DIR
from stream_r1.generation.pipeline import VideoPipeline

PROMPTS = ["a red circle moving left on a black background", "a blue square moving up quickly on a white background"]
# sha256 of the uint8 frames of `stream-r1 generate --seed 3` for PROMPTS (12 frames each), computed with the
# code before --device existed (commit 8abdec5): the shipped models must keep generating exactly these frames.
REFERENCE = {"toy-stream-r1": "848c63444191a80720bca34d774f3bd61c86c9ccfd8267bede7ff4c1ecc0ec2f",
             "toy-teacher": "f8a835c2eb0f71f369111c70c977b78fb8e5f6e8d5959d53a5aa02e995e7e358"}


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine without a GPU, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_shipped_models_generate_the_same_frames_on_the_cpu(tmp_path, name):
    if not (WEIGHTS_DIR / f"{name}.safetensors").exists():
        pytest.skip(f"shipped {name} not built")
    out = tmp_path / "out"
    argv = ["generate", "--checkpoint", name, "--device", "cpu", "--seed", "3", "--out", str(out)]
    assert main(argv + [a for p in PROMPTS for a in ("--prompt", p)]) == 0
    frames = b"".join(np.load(out / f"{i}.npz")["frames"].tobytes() for i in range(len(PROMPTS)))
    assert hashlib.sha256(frames).hexdigest() == REFERENCE[name]


@pytest.mark.parametrize("argv", [
    ["generate", "--checkpoint", "toy-stream-r1", "--prompt", PROMPTS[0], "--out", "{tmp}/g"],
    ["evaluate", "--checkpoint", "toy-stream-r1"],
    ["serve", "--checkpoint", "toy-stream-r1"],
    ["distill", "--config", "toy-dmd", "--out", "{tmp}/d"],
    ["pretrain", "--out", "{tmp}/p"],
    ["ode-init", "--out", "{tmp}/o"],
    ["compare", "--out", "{tmp}/c"],
    ["diagnose", "--checkpoint", "toy-dmd"],
    ["reward-reliability", "--checkpoint", "toy-dmd", "--reward", "toy-reward"],
])
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path, capsys, no_cuda, argv):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no CUDA GPU" in err and "--device cpu" in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_resolver_names_and_errors(no_cuda, monkeypatch):
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu") == resolve_device("cpu")
    for bad, message in [("gpu", "choose auto, cpu, cuda"), ("cuda:x", "no CUDA GPU")]:
        with pytest.raises(ConfigError, match=message):
            resolve_device(bad)
    assert resolve_dtype("bf16") == resolve_dtype("bfloat16") == torch.bfloat16
    assert resolve_dtype("auto", torch.float16) == torch.float16 and resolve_dtype(None) == torch.float32
    with pytest.raises(ConfigError, match="choose auto or one of"):
        resolve_dtype("float8")
    # auto: float32 on the CPU and for toy models; bfloat16 only for a paper-scale model on a GPU
    assert inference_dtype("auto", torch.device("cpu"), "wan") == torch.float32
    assert inference_dtype(None, torch.device("cuda", 0), "toy") == torch.float32
    assert inference_dtype(None, torch.device("cuda", 0), "wan") == torch.bfloat16
    assert inference_dtype("float16", torch.device("cpu"), "toy") == torch.float16


def test_training_commands_write_device_and_dtype_into_the_config(no_cuda):
    parser = build_parser()
    config = run_config(parser.parse_args(["pretrain", "--out", "x"]))
    assert config["device"] == "auto" and "dtype" not in config  # toy configs stay float32
    config = run_config(parser.parse_args(["ode-init", "--out", "x", "--device", "cpu", "--dtype", "bf16"]))
    assert (config["device"], config["dtype"]) == ("cpu", "bf16")
    config = run_config(parser.parse_args(["distill", "--config", "wan2.1-1.3b-stream-r1", "--dry-run"]))
    assert (config["device"], config["dtype"]) == ("auto", "bfloat16")  # the preset's own dtype is kept
    config = run_config(parser.parse_args(["distill", "--out", "x", "--set", "train.steps=2"]))
    assert config["device"] == "auto"


def test_reduced_dtype_runs_and_stays_close(tiny_causal, no_cuda):
    from stream_r1.generation.pipeline import SamplerSettings
    from stream_r1.models.codec import SpaceToDepthCodec
    from stream_r1.models.text import ToyTextEncoder

    def pipe(dtype):
        return VideoPipeline(tiny_causal, SpaceToDepthCodec(1), ToyTextEncoder(32), SamplerSettings(), 16,
                             "auto", dtype)

    full = pipe(torch.float32).generate(PROMPTS[:1], 6, seed=1)
    half = pipe(torch.bfloat16)
    assert next(half.model.parameters()).dtype == torch.bfloat16
    low = half.generate(PROMPTS[:1], 6, seed=1)
    assert low.dtype == torch.float32 and low.device.type == "cpu"  # frames come back float32 on the CPU
    assert 0 < (low - full).abs().max() < 0.1
