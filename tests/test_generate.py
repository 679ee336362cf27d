"""`stream-r1 generate`: files, manifest, determinism, streaming chunk order, and clear errors."""

import json

import numpy as np
import pytest
import torch

from stream_r1.cli import main
from stream_r1.common.weights import WEIGHTS_DIR
from stream_r1.generation.pipeline import VideoPipeline
from stream_r1.models.dit import DiT
from stream_r1.models.dit_io import save_dit

from .conftest import randomized, tiny_config

PROMPTS = ["a red circle moving left on a black background", "a blue square moving up quickly on a white background"]


@pytest.fixture
def bidir_ckpt(tmp_path):
    path = tmp_path / "teacher.safetensors"
    save_dit(path, randomized(DiT(tiny_config())), {"codec": {"factor": 1}, "sampler": {"steps": 3, "guidance": 2.0}})
    return path


def test_generate_writes_videos_and_manifest(tmp_path, causal_ckpt):
    out = tmp_path / "out"
    argv = ["generate", "--checkpoint", str(causal_ckpt), "--frames", "6", "--seed", "5", "--out", str(out)]
    assert main(argv + [a for p in PROMPTS for a in ("--prompt", p)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["index"] for m in manifest] == [0, 1]
    assert [m["seed"] for m in manifest] == [5, 6]
    assert set(manifest[0]) == {"index", "prompt", "seed", "frames", "seconds", "npz", "mp4"}
    for m in manifest:
        frames = np.load(out / m["npz"])["frames"]
        assert frames.dtype == np.uint8 and frames.shape == (6, 16, 16, 3)
        assert (out / m["mp4"]).stat().st_size > 0


def test_same_seed_same_frames_whatever_the_batch(causal_ckpt):
    pipe = VideoPipeline.from_checkpoint(causal_ckpt)
    both = pipe.generate(PROMPTS, frames=6, seed=3)
    alone = pipe.generate(PROMPTS[1:], frames=6, seed=4)  # prompt 1 of the batch uses seed 3 + 1
    assert torch.allclose(both[1], alone[0], atol=1e-5)  # batching changes kernels, not the noise
    assert torch.equal(both, pipe.generate(PROMPTS, frames=6, seed=3))
    assert not torch.equal(both, pipe.generate(PROMPTS, frames=6, seed=9))


def test_causal_streams_chunks_and_bidirectional_whole_clip(causal_ckpt, bidir_ckpt):
    chunks = list(VideoPipeline.from_checkpoint(causal_ckpt).stream(PROMPTS[:1], frames=9, seed=0))
    assert [c.shape[1] for c in chunks] == [3, 3, 3]
    whole = list(VideoPipeline.from_checkpoint(bidir_ckpt).stream(PROMPTS[:1], frames=9, seed=0))
    assert [c.shape[1] for c in whole] == [9]


def test_streaming_is_causal(causal_ckpt):
    """The first chunk does not depend on how long the video will be."""
    pipe = VideoPipeline.from_checkpoint(causal_ckpt)
    short = pipe.generate(PROMPTS[:1], frames=3, seed=0)
    long = pipe.generate(PROMPTS[:1], frames=9, seed=0)
    assert torch.equal(short[0], long[0, :3])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "a purple circle moving left on a black background"], "unknown word"),
        (["--prompt", "   "], "empty prompt"),
        (["--prompt", "a red circle moving left"], "not in the toy form"),
        (["--prompt", PROMPTS[0], "--frames", "7"], "whole number of chunks"),
        (["--prompts", "/nonexistent/prompts.txt"], "does not exist"),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, causal_ckpt, capsys, args, message):
    code = main(["generate", "--checkpoint", str(causal_ckpt), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


def test_bad_checkpoint_gives_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main(["generate", "--checkpoint", str(bad), "--prompt", PROMPTS[0], "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "corrupt" in err and len(err.splitlines()) == 1


@pytest.mark.skipif(not (WEIGHTS_DIR / "toy-dmd.safetensors").exists(), reason="shipped toy-dmd not built")
def test_evaluate_checkpoint_writes_json_and_a_strip_above_ground_truth(tmp_path):
    import imageio.v3 as iio

    from stream_r1.evaluation.evaluate import evaluate_checkpoint, save_comparison_strip
    from stream_r1.generation.video_io import frame_strip

    result = evaluate_checkpoint("toy-dmd", "train", per_prompt=1, subset=2)
    shown = save_comparison_strip(tmp_path / "strip.png", result)
    assert shown == result["_prompts"]
    image = iio.imread(tmp_path / "strip.png")
    expected = frame_strip([result["_videos"][0], result["_truth"][0], result["_videos"][1], result["_truth"][1]],
                           scale=4)
    assert image.shape == expected.shape and (image == expected).all()


def test_frame_strip_labels_write_a_margin_beside_unchanged_frames():
    """Labels add a left margin with text and leave the frames as the unlabelled strip has them."""
    import numpy as np
    import pytest

    from stream_r1.generation.video_io import frame_strip

    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8) for _ in range(2)]
    plain = frame_strip(videos, scale=2)
    labelled = frame_strip(videos, scale=2, labels=["held-out 1", "W_intra 1"], label_width=80)
    assert labelled.shape == (plain.shape[0], plain.shape[1] + 80, 3)
    assert np.array_equal(labelled[:, 80:], plain)
    assert (labelled[:, :80] > 240).any()  # the text is drawn in white on the grey margin
    with pytest.raises(ValueError, match="one label per video"):
        frame_strip(videos, labels=["only one"])
