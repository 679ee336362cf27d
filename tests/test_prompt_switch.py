"""Prompt switching in a stream: timelines, KV re-caching against its definition, `generate` flags and errors."""

import json

import numpy as np
import pytest
import torch

from stream_r1.cli import main
from stream_r1.diffusion.sampler import denoising_sigmas, predict_x0, stream_chunks, write_cache
from stream_r1.diffusion.switching import attendable, stream_switching
from stream_r1.generation.pipeline import VideoPipeline, to_uint8
from stream_r1.generation.timeline import Timeline, TimelineError, read_timeline, timeline_from_args
from stream_r1.models.dit import DiT
from stream_r1.models.dit_io import save_dit

from .conftest import randomized, tiny_config

A = "a red circle moving left on a black background"
B = "a blue circle moving left on a black background"
SHAPE = (1, 3, 3, 16, 16)
SIGMAS = denoising_sigmas([1000, 500], 3.0)


def conds() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, 10, 32, generator=g), torch.randn(1, 10, 32, generator=g)


def switched(model, a, b, at: int, chunks: int, mode: str, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return list(stream_switching(model, chunks, SHAPE, SIGMAS, lambda k: a if k < at else b, gen, mode=mode))


def test_one_prompt_throughout_is_bit_identical_to_todays_stream(tiny_causal, causal_ckpt):
    a, _ = conds()
    plain = list(stream_chunks(tiny_causal, 5, SHAPE, SIGMAS, a, torch.Generator().manual_seed(0)))
    for mode in ("recache", "keep"):
        for x, y in zip(switched(tiny_causal, a, a, 2, 5, mode), plain, strict=True):
            assert torch.equal(x, y)
    pipe = VideoPipeline.from_checkpoint(causal_ckpt)
    today = torch.cat(list(pipe.stream([A], 12, 3)), dim=1)
    at = Timeline(((0, A),)).prompt_at(pipe.frames_per_chunk)
    assert torch.equal(torch.cat(list(pipe.stream([A], 12, 3, prompt_at=lambda k: [at(k)])), dim=1), today)


def test_recache_equals_a_stream_whose_cache_holds_the_kept_latents_written_with_the_new_prompt(tiny_causal):
    a, b = conds()
    gen = torch.Generator().manual_seed(0)
    out, state = [], None
    for k, x0 in enumerate(stream_switching(tiny_causal, 6, SHAPE, SIGMAS, lambda k: a if k < 3 else b, gen)):
        out.append(x0)
        if k == 2:  # the generator as the first chunk after the switch starts
            state = gen.get_state()
    resumed = torch.Generator()
    resumed.set_state(state)
    written_with_b = list(stream_chunks(tiny_causal, 3, SHAPE, SIGMAS, b, resumed, init=torch.cat(out[:3], dim=2)))
    for x, y in zip(out[3:], written_with_b, strict=True):
        assert torch.equal(x, y)
    keep = switched(tiny_causal, a, b, 3, 6, "keep")
    plain = list(stream_chunks(tiny_causal, 6, SHAPE, SIGMAS, a, torch.Generator().manual_seed(0)))
    assert all(torch.equal(x, y) and torch.equal(x, z) for x, y, z in zip(out[:3], keep[:3], plain[:3], strict=False))
    assert not torch.equal(out[3], keep[3]) and not torch.equal(keep[3], plain[3])  # the modes differ after it
    same_text = switched(tiny_causal, a, a.clone(), 3, 6, "recache")  # a switch to equal text changes nothing
    assert all(torch.equal(x, y) for x, y in zip(same_text, plain, strict=True))


def test_recache_rewrites_exactly_the_frames_a_rolling_window_still_holds():
    model = randomized(DiT(tiny_config(causal=True, local_attn_frames=12, sink_frames=3))).eval()
    a, _ = conds()
    cache, kept = model.new_cache(), []
    with torch.no_grad():
        for k in range(6):
            x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(k))
            kept.append((cache.next_frame, x0))
            write_cache(model, x0, a, cache)
        predict_x0(model, torch.randn(SHAPE), SIGMAS[0], a, cache)  # chunk 6 starts: the cache evicts
    frames = [s + i for s, x in attendable(kept, 18, model) for i in range(x.shape[2])]
    assert frames == cache.frames == [0, 1, 2, 12, 13, 14, 15, 16, 17]


def test_timeline_from_args_and_files(tmp_path):
    t = timeline_from_args([A, B], [36])
    assert t.segments == ((0, A), (36, B)) and t.switches == [36]
    entries = [{"frame": 0, "prompt": A}, {"frame": 36, "prompt": B}]
    (tmp_path / "t.json").write_text(json.dumps(entries))
    (tmp_path / "t.yaml").write_text(f"- frame: 0\n  prompt: {A}\n- frame: 36\n  prompt: {B}\n")
    assert read_timeline(tmp_path / "t.json") == read_timeline(tmp_path / "t.yaml") == t
    assert t.as_list() == entries and t.prompt_at(3)(11) == A and t.prompt_at(3)(12) == B
    t.check(72, 3)
    with pytest.raises(TimelineError, match="multiple of the 3-frame chunk"):
        timeline_from_args([A, B], [35]).check(72, 3)
    with pytest.raises(TimelineError, match="past the end"):
        t.check(36, 3)
    for bad in ('[{"frame": 3, "prompt": "x"}]', '[{"frame": 0}]', '{"frame": 0}',
                '[{"frame": 0, "prompt": "x"}, {"frame": 0, "prompt": "y"}]'):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(TimelineError):
            read_timeline(tmp_path / "bad.json")


def test_generate_switch_at_writes_one_video_and_its_timeline(tmp_path, causal_ckpt):
    out = tmp_path / "o"
    args = ["generate", "--checkpoint", str(causal_ckpt), "--prompt", A, "--switch-at", "6", "--prompt", B,
            "--frames", "12", "--seed", "4", "--out", str(out)]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest) == 1 and manifest[0]["frames"] == 12 and manifest[0]["switch"] == "recache"
    assert manifest[0]["timeline"] == [{"frame": 0, "prompt": A}, {"frame": 6, "prompt": B}]
    pipe = VideoPipeline.from_checkpoint(causal_ckpt)
    at = timeline_from_args([A, B], [6]).prompt_at(3)
    video = torch.cat(list(pipe.stream([A], 12, 4, prompt_at=lambda k: [at(k)])), dim=1)[0]
    with np.load(out / "0.npz") as data:
        frames = data["frames"]
    assert (frames == to_uint8(video).numpy()).all()
    plain = to_uint8(pipe.generate([A], 12, 4)[0]).numpy()
    assert (frames[:6] == plain[:6]).all() and not (frames[6:] == plain[6:]).all()
    (tmp_path / "t.yaml").write_text(f"- frame: 0\n  prompt: {A}\n- frame: 6\n  prompt: {B}\n")
    keep = tmp_path / "k"
    assert main(["generate", "--checkpoint", str(causal_ckpt), "--timeline", str(tmp_path / "t.yaml"), "--frames",
                 "12", "--seed", "4", "--switch", "keep", "--out", str(keep)]) == 0
    assert json.loads((keep / "manifest.json").read_text())[0]["switch"] == "keep"


def test_switch_errors_are_one_line(tmp_path, causal_ckpt, capsys):
    bidir = tmp_path / "teacher.safetensors"
    save_dit(bidir, randomized(DiT(tiny_config())), {"codec": {"factor": 1}, "sampler": {"steps": 2}})
    cases = [
        (causal_ckpt, ["--prompt", A, "--switch-at", "4", "--prompt", B], "multiple of the 3-frame chunk"),
        (bidir, ["--prompt", A, "--switch-at", "6", "--prompt", B], "causal"),
        (causal_ckpt, ["--prompt", A, "--switch-at", "6"], "need 2 --prompt"),
        (causal_ckpt, ["--prompt", A, "--switch-at", "6", "--prompt", "a purple circle"], "purple"),
        (causal_ckpt, ["--timeline", str(tmp_path / "none.json")], "does not exist"),
    ]
    for ckpt, extra, message in cases:
        code = main(["generate", "--checkpoint", str(ckpt), "--frames", "12", "--out", str(tmp_path / "o"), *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
