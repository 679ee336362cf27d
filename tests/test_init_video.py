"""`generate --init-video`: a given video is written into the cache and the stream continues from it."""

import json

import numpy as np
import pytest
import torch

from stream_r1.cli import main
from stream_r1.diffusion.sampler import denoising_sigmas, stream_chunks
from stream_r1.generation.pipeline import VideoPipeline
from stream_r1.generation.video_io import read_video, write_mp4, write_npz
from stream_r1.models.dit import DiT
from stream_r1.models.dit_io import save_dit

from .conftest import randomized, tiny_config

PROMPT = "a red circle moving left on a black background"


def test_continuing_from_given_chunks_equals_the_uninterrupted_stream(tiny_causal):
    cond = torch.randn(1, 10, 32, generator=torch.Generator().manual_seed(1))
    sigmas = denoising_sigmas([1000, 500], 3.0)
    shape = (1, 3, 3, 16, 16)
    gen = torch.Generator().manual_seed(0)
    full, state = [], None
    for k, chunk in enumerate(stream_chunks(tiny_causal, 6, shape, sigmas, cond, gen)):
        full.append(chunk)
        if k == 2:  # the generator as chunk 3 starts
            state = gen.get_state()
    resumed = torch.Generator()
    resumed.set_state(state)
    given = torch.cat(full[:3], dim=2)
    rest = list(stream_chunks(tiny_causal, 3, shape, sigmas, cond, resumed, init=given))
    for a, b in zip(rest, full[3:], strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="whole number"):
        next(stream_chunks(tiny_causal, 1, shape, sigmas, cond, gen, init=given[:, :, :2]))


def test_generate_init_video_writes_the_given_frames_then_new_ones(tmp_path, causal_ckpt):
    given = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    write_npz(tmp_path / "given.npz", given)
    out = tmp_path / "o"
    args = ["generate", "--checkpoint", str(causal_ckpt), "--prompt", PROMPT, "--frames", "9", "--out", str(out)]
    assert main([*args, "--init-video", str(tmp_path / "given.npz")]) in (0, None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest[0]["init_frames"] == 6 and manifest[0]["frames"] == 15
    with np.load(out / "0.npz") as data:
        frames = data["frames"]
    assert frames.shape == (15, 16, 16, 3) and (frames[:6] == given).all()
    pipe = VideoPipeline.from_checkpoint(causal_ckpt)
    plain = pipe.generate([PROMPT], 9, 0)
    init = torch.from_numpy(given).permute(0, 3, 1, 2).float().div(255).unsqueeze(0)
    continued = torch.cat(list(pipe.stream([PROMPT], 9, 0, init_video=init)), dim=1)
    assert not torch.equal(plain, continued)  # the given frames are seen through the cache


def test_read_video_reads_npz_and_upscaled_mp4(tmp_path):
    frames = np.zeros((6, 16, 16, 3), np.uint8)
    frames[:, 4:10, 5:11] = (255, 0, 0)
    write_mp4(tmp_path / "v.mp4", frames)  # upscaled 8x, H.264
    back = read_video(tmp_path / "v.mp4", 16)
    assert back.shape == frames.shape and np.abs(back.astype(int) - frames).mean() < 8
    write_npz(tmp_path / "v.npz", frames)
    assert (read_video(tmp_path / "v.npz", 16) == frames).all()
    with pytest.raises(ValueError, match="16x16"):
        read_video(tmp_path / "v.npz", 12)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_video(tmp_path / "none.npz", 16)


def test_init_video_errors_are_one_line(tmp_path, causal_ckpt, capsys):
    bidir = tmp_path / "teacher.safetensors"
    save_dit(bidir, randomized(DiT(tiny_config())), {"codec": {"factor": 1}, "sampler": {"steps": 2}})
    write_npz(tmp_path / "given.npz", np.zeros((4, 16, 16, 3), np.uint8))
    for ckpt, message in ((bidir, "causal"), (causal_ckpt, "whole number")):
        code = main(["generate", "--checkpoint", str(ckpt), "--prompt", PROMPT, "--out", str(tmp_path / "o"),
                     "--init-video", str(tmp_path / "given.npz")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1
