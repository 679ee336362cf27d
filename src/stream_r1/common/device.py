"""Where a command runs: `--device auto|cpu|cuda|cuda:N` and `--dtype` resolved once, with one-line errors.

Every command that runs a model resolves its device here, so that models, KV caches, noise generators,
codec, text encoder and reward land on the same device. Under torchrun each rank takes its LOCAL_RANK GPU.
"""

from __future__ import annotations

import os

import torch

from .config import ConfigError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """`auto`: this rank's GPU (LOCAL_RANK) when CUDA is available, else the CPU; `cuda` means the same GPU.

    Asking for CUDA on a machine without it is a one-line ConfigError, not a traceback from inside torch.
    """
    spec = "auto" if spec is None else str(spec)
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: this machine has no CUDA GPU (or this torch is a CPU build); "
                              "use --device cpu, or install a CUDA build of torch")
        index = int(os.environ.get("LOCAL_RANK", "0")) if spec == "cuda" else _index(spec)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here; "
                              f"use cuda:0 … cuda:{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    raise ConfigError(f"--device {spec!r}: choose auto, cpu, cuda or cuda:N")


def _index(spec: str) -> int:
    try:
        return int(spec.split(":", 1)[1])
    except ValueError:
        raise ConfigError(f"--device {spec!r}: the GPU index must be a number, e.g. cuda:0") from None


def resolve_dtype(name: str | torch.dtype | None, default: torch.dtype = torch.float32) -> torch.dtype:
    """A dtype from its config name (float32 | bfloat16 | float16, or fp32/bf16/fp16); None or `auto`: `default`."""
    if name is None or name == "auto":
        return default
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ConfigError(f"dtype {name!r}: choose auto or one of {sorted(set(DTYPES))}")
    return DTYPES[name]


def inference_dtype(name: str | torch.dtype | None, device: torch.device, family: str = "toy") -> torch.dtype:
    """The dtype `generate`/`serve` run a model in: `auto` is bfloat16 for a paper-scale (wan) model on a GPU,
    float32 otherwise (toy models, and every model on the CPU, keep their float32 results)."""
    wide = family == "wan" and torch.device(device).type == "cuda"
    return resolve_dtype(name, torch.bfloat16 if wide else torch.float32)


def autocast(device: torch.device, dtype: torch.dtype):
    """torch.autocast for a reduced dtype on `device`; a no-op context for float32 (results unchanged)."""
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype, enabled=dtype != torch.float32)
