"""Saliency travels from the frames the reward read to the latent frames that decode to them (method.md §3.3).

At the paper preset VideoReward reads 10 of 81 pixel frames (2 fps of a 16 fps clip) and the causal Wan VAE
decodes latent 0 to frame 0 and latent k to frames 4k−3 … 4k. Tiny random Qwen2-VL and Wan VAE, as the other
paper-scale tests build them; fps sampling ON, 81 frames.
"""

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("diffusers")

from stream_r1.common.config import load_config  # noqa: E402
from stream_r1.models.codec import SpaceToDepthCodec  # noqa: E402
from stream_r1.models.wan_vae import WanVAECodec, tiny_wan_vae  # noqa: E402
from stream_r1.reward.videoreward import VideoRewardSettings, tiny_videoreward  # noqa: E402
from stream_r1.reweight.intra import temporal_weights, to_latent_grid
from stream_r1.reweight.reweighter import StreamR1Reweighter
from stream_r1.reweight.settings import ReweightSettings

FRAMES, LATENT_FRAMES = 81, 21
PRESET_SAMPLED = [0, 9, 18, 27, 36, 44, 53, 62, 71, 80]


@pytest.fixture(scope="module")
def codec():
    return WanVAECodec(tiny_wan_vae(z_dim=4, base_dim=8))


@pytest.fixture(scope="module")
def reward():
    """The preset's frame sampling (fps 2 of 16) on a tiny random VideoReward; small frames to stay cheap."""
    section = load_config("wan2.1-1.3b-stream-r1")["reward"]
    settings = VideoRewardSettings(fps=section["fps"], video_fps=section["video_fps"], min_pixels=28 * 28 * 4,
                                   max_pixels=56 * 56, dtype="float32")
    return tiny_videoreward(settings)


def test_wan_time_map_is_the_decoders_causal_jacobian(codec):
    """Changing latent frame k leaves every pixel frame before 4k−3 untouched and changes frames 4k−3 … 4k."""
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 6, 2, 2, generator=gen)
    with torch.no_grad():
        base = codec.decode(latents)
        for k in range(6):
            bumped = latents.clone()
            bumped[:, :, k] += torch.randn(1, 4, 2, 2, generator=gen)
            change = (codec.decode(bumped) - base).abs().amax(dim=(0, 2, 3, 4))  # per pixel frame
            frames = codec.pixel_frames_of_latent(k)
            assert change[: frames.start].max() == 0 if frames.start else True, k
            assert (change[frames.start : frames.stop] > 1e-6).all(), k
    of = codec.latent_of_pixel_frame(codec.pixel_frames(6))
    assert all(of[t] == k for k in range(6) for t in codec.pixel_frames_of_latent(k))
    assert codec.latent_of_pixel_frame(FRAMES)[PRESET_SAMPLED].tolist() == [0, 3, 5, 7, 9, 11, 14, 16, 18, 20]


def test_videoreward_says_which_frames_it_reads_and_only_they_get_gradient(reward):
    assert reward.sampled_frames(FRAMES).tolist() == PRESET_SAMPLED
    pixels = torch.rand(1, FRAMES, 3, 16, 16, generator=torch.Generator().manual_seed(1)).requires_grad_()
    reward(pixels, ["a red fox runs through snow"])["mq"].sum().backward()
    touched = torch.nonzero(pixels.grad.abs().amax(dim=(0, 2, 3, 4)) > 0).flatten().tolist()
    assert touched == PRESET_SAMPLED


def sampled_saliency(seen: list[int], planted: int | None = None) -> torch.Tensor:
    """What the reward's gradient looks like: zero on the frames it never read, flat on the ones it did."""
    sal = torch.zeros(1, FRAMES, 16, 16)
    sal[:, seen] = 1.0
    if planted is not None:
        sal[:, planted] = 5.0
    return sal


def test_flat_saliency_gives_flat_temporal_weights_at_the_preset_fps(codec, reward):
    seen = reward.sampled_frames(FRAMES)
    of = codec.latent_of_pixel_frame(FRAMES)
    grid = (LATENT_FRAMES, 2, 2)
    latent = to_latent_grid(sampled_saliency(seen.tolist()), grid, of, seen)
    assert (latent > 0).all()  # no latent frame is left at zero
    torch.testing.assert_close(temporal_weights(latent), torch.ones(1, LATENT_FRAMES), atol=1e-6, rtol=0)
    even = temporal_weights(to_latent_grid(sampled_saliency(seen.tolist()), grid))  # the even pooling it replaces
    assert int((even == even.min()).sum()) == 11  # 11 latent frames at the floor: a comb, not the content


@pytest.mark.parametrize("p", PRESET_SAMPLED)
def test_saliency_planted_in_a_frame_peaks_at_the_latent_that_decodes_to_it(codec, reward, p):
    seen = reward.sampled_frames(FRAMES)
    of = codec.latent_of_pixel_frame(FRAMES)
    w_t = temporal_weights(to_latent_grid(sampled_saliency(seen.tolist(), p), (LATENT_FRAMES, 2, 2), of, seen))
    k = int(w_t.argmax())
    assert p in codec.pixel_frames_of_latent(k)
    assert int((w_t == w_t.max()).sum()) == 1


def test_reweighter_fills_unread_latent_frames_from_their_neighbours(codec, reward):
    """End to end (tiny VAE decode, tiny VideoReward at 2 fps, real saliency): the temporal weight of a latent
    frame no read frame decodes from lies between those of its covered neighbours; none is zero."""
    rw = StreamR1Reweighter(reward, codec.decode, ReweightSettings(), codec.latent_of_pixel_frame)
    latents = torch.randn(1, 4, LATENT_FRAMES, 2, 2, generator=torch.Generator().manual_seed(2))
    _, w_intra, _ = rw(latents, ["a paper boat"], step=0)
    per_frame = w_intra.mean(dim=(0, 1, 3, 4))  # ∝ w_t: the spatial factor has mean 1 in every frame
    covered = sorted(set(codec.latent_of_pixel_frame(FRAMES)[PRESET_SAMPLED].tolist()))
    assert (per_frame > 0).all() and per_frame.std() > 0
    for k in range(LATENT_FRAMES):
        if k in covered:
            continue
        left, right = max(c for c in covered if c < k), min(c for c in covered if c > k)
        lo, hi = sorted((per_frame[left].item(), per_frame[right].item()))
        assert lo - 1e-5 <= per_frame[k].item() <= hi + 1e-5, k


def test_one_to_one_codec_keeps_the_even_pooling_bit_for_bit():
    """The toy path: a one-to-one codec and a reward that reads every frame give exactly the old pooling."""
    sal = torch.rand(2, 12, 16, 16, generator=torch.Generator().manual_seed(3))
    of = SpaceToDepthCodec(2).latent_of_pixel_frame(12)
    old = torch.nn.functional.adaptive_avg_pool3d(sal.unsqueeze(1), (12, 8, 8)).squeeze(1)
    assert torch.equal(to_latent_grid(sal, (12, 8, 8), of), old)
    assert torch.equal(to_latent_grid(sal, (12, 8, 8), of, torch.arange(12)), old)
