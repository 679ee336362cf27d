"""ToyBench in the long world (wrapping frames) and over time (per 12-frame segment), and `evaluate --frames`."""

import json

import numpy as np
import pytest

from stream_r1.cli import main
from stream_r1.evaluation.evaluate import evaluate_checkpoint, over_time_table, save_curve_plot
from stream_r1.generation.pipeline import to_uint8
from stream_r1.models.dit import DiT
from stream_r1.models.dit_io import save_dit
from stream_r1.toyworld import bench
from stream_r1.toyworld.prompts import PromptAttributes, split_prompts
from stream_r1.toyworld.render import FRAME_SIZE, LongVideoSpec, render_long_spec, sample_world_videos

from .conftest import randomized, tiny_config


def frames_of(spec: LongVideoSpec) -> np.ndarray:
    return to_uint8(render_long_spec(spec)).numpy()


def crosses_an_edge(spec: LongVideoSpec) -> bool:
    pos = spec.positions().numpy()
    return bool(((pos < spec.radius) | (pos > spec.size - spec.radius)).any())


@pytest.fixture(scope="module")
def long_truth():
    prompts = split_prompts("heldout")[::3]
    videos, specs = sample_world_videos(prompts, 4, "long", num_frames=12)
    return [to_uint8(v).numpy() for v in videos], [p.text for p in prompts], specs


def test_long_ground_truth_scores_as_ground_truth(long_truth):
    videos, prompts, specs = long_truth
    assert sum(crosses_an_edge(s) for s in specs) >= 5  # the set holds wrapped objects
    summary = bench.score_batch(videos, prompts, "long")
    assert min(summary["vq"], summary["mq"], summary["ta"]) > 0.99
    for check in bench.CHECKS:
        assert summary[check] == 1.0, check


def test_the_toy_world_scoring_cannot_read_a_wrapped_object():
    spec = LongVideoSpec(PromptAttributes("green", "square", "right", "gray"), (13.0, 8.0), 0, 12)
    video, prompt = frames_of(spec), spec.attrs.text
    long, toy = bench.score_video(video, prompt, "long"), bench.score_video(video, prompt, "toy")
    assert long.coherent and long.direction_ok and long.mq > 0.99
    assert not toy.coherent and toy.mq < 0.9  # two blobs at the edges, and the centroid jumps across the frame


def test_recentre_puts_the_object_in_the_middle():
    spec = LongVideoSpec(PromptAttributes("blue", "circle", "up", "white"), (15.5, 0.5), 0, 4)
    rolled, shifts = bench.recentre(bench.to_frames(frames_of(spec)))
    seg = bench.segment(rolled)
    assert np.allclose(seg.centroid, FRAME_SIZE / 2, atol=0.6)
    true = np.mod(seg.centroid - shifts, FRAME_SIZE)
    assert np.allclose(true, spec.positions().numpy(), atol=0.1)


def test_long_world_scoring_still_sees_wrong_motion():
    spec = LongVideoSpec(PromptAttributes("red", "triangle", "left", "black", "quickly"), (1.0, 5.0), 30, 12)
    video, prompt = frames_of(spec), spec.attrs.text
    assert bench.score_video(video, prompt, "long").direction_ok
    backwards = bench.score_video(video[::-1].copy(), prompt, "long")
    assert not backwards.direction_ok and backwards.detected["direction"] == "right"
    jumped = np.concatenate([video[:6], frames_of(spec.window(40, 12))[6:]])  # jumps 6.5 px half-way
    assert bench.score_video(jumped, prompt, "long").metrics["mq_track"] < 0.5


def test_segments_score_each_twelve_frames_and_drop_a_short_tail():
    spec = LongVideoSpec(PromptAttributes("yellow", "square", "down", "black", "slowly"), (4.0, 12.0), 0, 41)
    video = frames_of(spec)
    scores = bench.score_segments(video, spec.attrs.text, "long")
    assert len(scores) == 3
    for i, score in enumerate(scores):
        assert score == bench.score_video(video[12 * i : 12 * i + 12], spec.attrs.text, "long")
    with pytest.raises(ValueError, match="no 12-frame segment"):
        bench.score_segments(video[:11], spec.attrs.text, "long")


def test_curve_over_a_long_ground_truth_stays_at_ground_truth():
    prompts = split_prompts("train")[::40]
    videos, _ = sample_world_videos(prompts, 0, "long", num_frames=48)
    rows = bench.curve([to_uint8(v).numpy() for v in videos], [p.text for p in prompts], "long")
    assert [r["first_frame"] for r in rows] == [0, 12, 24, 36]
    for row in rows:
        assert min(row["vq"], row["mq"], row["ta"]) > 0.99 and row["direction_ok"] == 1.0
    short = bench.curve([to_uint8(videos[0]).numpy()[:24]], [prompts[0].text], "long")
    assert len(short) == 2


@pytest.fixture
def long_teacher(tmp_path):
    path = tmp_path / "teacher.safetensors"
    extra = {"codec": {"factor": 1}, "sampler": {"steps": 2, "guidance": 2.0}, "world": "long"}
    save_dit(path, randomized(DiT(tiny_config(conv_padding="circular"))), extra)
    return path


def test_evaluate_frames_gives_a_curve_against_long_ground_truth(long_teacher, tmp_path):
    result = evaluate_checkpoint(str(long_teacher), "train", per_prompt=1, subset=2, frames=24)
    assert result["world"] == "long" and result["frames"] == 24
    over = result["over_time"]
    assert len(over["model"]) == len(over["ground_truth"]) == len(over["ratio"]) == 2
    for m, g, r in zip(over["model"], over["ground_truth"], over["ratio"], strict=True):
        assert g["vq"] > 0.99  # the long world's truth is defined in every segment
        assert r["vq"] == pytest.approx(m["vq"] / g["vq"])
    assert len(result["_videos"][0]) == 24
    table = over_time_table(over)
    assert table.count("\n") == 3 and "VQ / GT" in table
    save_curve_plot(tmp_path / "curve.png", over, "tiny")
    import imageio.v3 as iio

    assert iio.imread(tmp_path / "curve.png").ndim == 3


def test_evaluate_cli_writes_the_curve_and_refuses_partial_segments(long_teacher, tmp_path, capsys):
    out, plot = tmp_path / "r.json", tmp_path / "c.png"
    args = ["evaluate", "--checkpoint", str(long_teacher), "--split", "train", "--subset", "1", "--per-prompt", "1"]
    assert main([*args, "--frames", "24", "--out", str(out), "--plot", str(plot)]) in (0, None)
    saved = json.loads(out.read_text())
    assert len(saved["over_time"]["model"]) == 2 and plot.exists()
    assert "ToyBench over time" in capsys.readouterr().out
    assert main([*args, "--frames", "18"]) == 2
    err = capsys.readouterr().err.strip()
    assert "multiple of 12" in err and len(err.splitlines()) == 1


def test_evaluate_dir_adds_the_curve_for_long_videos(tmp_path):
    prompts = split_prompts("heldout")[:2]
    videos, _ = sample_world_videos(prompts, 1, "long", num_frames=36)
    manifest = []
    for i, (v, p) in enumerate(zip(videos, prompts, strict=True)):
        np.savez(tmp_path / f"{i}.npz", frames=to_uint8(v).numpy())
        manifest.append({"index": i, "prompt": p.text, "seed": i, "npz": f"{i}.npz"})
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    result = bench.evaluate_dir(tmp_path, "long")
    assert len(result["over_time"]["model"]) == 3 and result["over_time"]["model"][2]["ta"] > 0.99
    np.savez(tmp_path / "0.npz", frames=to_uint8(videos[0, :12]).numpy())
    np.savez(tmp_path / "1.npz", frames=to_uint8(videos[1, :12]).numpy())
    assert "over_time" not in bench.evaluate_dir(tmp_path, "long")


def test_unknown_world_is_refused():
    with pytest.raises(ValueError, match="unknown world"):
        bench.score_video(np.zeros((12, 16, 16, 3), np.uint8), "a red circle moving left on a black background", "x")


def test_switch_measure_reads_chunks_to_the_new_colour_and_the_jump():
    from stream_r1.toyworld.switch import measure_switch, object_track

    red = LongVideoSpec(PromptAttributes("red", "circle", "right", "black"), (14.0, 6.0), 0, 36)
    blue = LongVideoSpec(PromptAttributes("blue", "circle", "right", "black"), (14.0, 6.0), 0, 36)
    red_frames, blue_frames = frames_of(red), frames_of(blue)
    track = object_track(red_frames, "long")
    assert np.allclose(np.diff(track, axis=0), [[0.45, 0.0]], atol=0.05)  # through the wrap at frame ~4
    # A clean switch at frame 18: the same trajectory, blue from then on.
    clean = np.concatenate([red_frames[:18], blue_frames[18:]])
    m = measure_switch(clean, red.attrs.text, blue.attrs.text, 18, world="long")
    assert m.changed == ("colour",) and m.chunks_to_right == {"colour": 1}
    assert m.jump_px == pytest.approx(0.45, abs=0.05) and m.step_before_px == pytest.approx(0.45, abs=0.05)
    # Two chunks still red after the switch, then the object restarts 5 px away.
    late = np.concatenate([red_frames[:24], frames_of(blue.window(30, 12))])
    m = measure_switch(late, red.attrs.text, blue.attrs.text, 18, world="long")
    assert m.chunks_to_right == {"colour": 3} and [c["colour"] for c in m.per_chunk][:3] == ["red", "red", "blue"]
    never = measure_switch(red_frames, red.attrs.text, blue.attrs.text, 18, world="long")
    assert never.chunks_to_right == {"colour": None}
    jumped = np.concatenate([red_frames[:18], frames_of(blue.window(28, 18))])
    assert measure_switch(jumped, red.attrs.text, blue.attrs.text, 18, world="long").jump_px > 4
    with pytest.raises(ValueError, match="chunk boundary"):
        measure_switch(clean, red.attrs.text, blue.attrs.text, 17, world="long")
