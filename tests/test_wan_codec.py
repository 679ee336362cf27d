"""The Wan VAE codec (models/wan_vae.py) with a tiny random AutoencoderKLWan."""

import pytest
import torch

pytest.importorskip("diffusers")

from stream_r1.models.wan_vae import WanVAECodec, tiny_wan_vae  # noqa: E402


@pytest.fixture(scope="module")
def codec() -> WanVAECodec:
    return WanVAECodec(tiny_wan_vae(z_dim=4, base_dim=8))


def test_encode_decode_shapes_range_and_normalisation(codec):
    pixels = torch.rand(2, 9, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    z = codec.encode(pixels)
    assert z.shape == (2, 4, 3, 4, 6) and codec.latent_frames(9) == 3 and codec.pixel_frames(3) == 9
    mu = codec.vae.encode((pixels * 2 - 1).permute(0, 2, 1, 3, 4)).latent_dist.mode()
    mean = torch.tensor(codec.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(codec.vae.config.latents_std).view(1, -1, 1, 1, 1)
    assert torch.allclose(z, (mu - mean) / std, atol=1e-6)
    out = codec.decode(z)
    assert out.shape == pixels.shape and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="4k\\+1"):
        codec.encode(pixels[:, :8])


def test_chunkwise_stream_decode_equals_whole_clip(codec):
    z = torch.randn(1, 4, 7, 4, 4, generator=torch.Generator().manual_seed(1))
    whole = codec.decode(z)
    stream = codec.stream_decoder()
    parts = [stream.decode(z[:, :, i:i + 3]) for i in (0, 3)] + [stream.decode(z[:, :, 6:])]
    assert [p.shape[1] for p in parts] == [9, 12, 4]  # first latent frame -> 1 frame, every later one -> 4
    assert torch.allclose(torch.cat(parts, dim=1), whole, atol=1e-5)
    restarted = codec.decode(z[:, :, 3:6])  # decoded on its own, a later chunk is taken for a clip start
    assert restarted.shape[1] == 9 != parts[1].shape[1]


def test_decode_is_differentiable(codec):
    z = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(2)).requires_grad_()
    (codec.decode(z) * torch.linspace(0, 1, 5).view(1, 5, 1, 1, 1)).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
