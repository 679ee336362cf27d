"""Shared fixtures: tiny models so every test runs in seconds on a 2-core CPU."""

import pytest
import torch

from stream_r1.models.dit import DiT, DiTConfig
from stream_r1.models.dit_io import save_dit

torch.set_num_threads(1)


def tiny_config(**overrides) -> DiTConfig:
    base = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2, text_dim=32, patch_size=(1, 4, 4),
                frames_per_chunk=3, conv_stem_channels=8, conv_head_channels=8)
    base.update(overrides)
    return DiTConfig(**base)


def randomized(model: DiT, seed: int = 0) -> DiT:
    """Perturb every parameter so zero-initialised parts (head, conv head) carry signal."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture
def tiny_causal() -> DiT:
    torch.manual_seed(0)
    return randomized(DiT(tiny_config(causal=True))).eval()


@pytest.fixture(scope="session")
def downloads(tmp_path_factory):
    """Tiny random Wan / Self-Forcing / VideoReward downloads in their real folder layouts, built once per session."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from .real_layout import build_downloads

    return build_downloads(tmp_path_factory.mktemp("downloads"))


@pytest.fixture
def causal_ckpt(tmp_path):
    """A tiny random causal student saved as a stream-r1 checkpoint (2-step sampler)."""
    path = tmp_path / "student.safetensors"
    model = randomized(DiT(tiny_config(causal=True)))
    save_dit(path, model, {"codec": {"factor": 1}, "sampler": {"shift": 3.0, "denoising_timesteps": [1000, 500]}})
    return path
