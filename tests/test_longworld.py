"""The long-horizon toy world (`world: long`): start anywhere, wrap around, defined at any frame; the toy world
unchanged; the teacher's long-world batches and the circular conv padding."""

import copy

import numpy as np
import pytest
import torch

from stream_r1.common.config import ConfigError, load_config
from stream_r1.distill.pretrain import batch_for_step, lr_at, pretrain, teacher_metadata
from stream_r1.models.dit import DiTConfig, FrameConv
from stream_r1.toyworld.prompts import PromptAttributes, split_prompts
from stream_r1.toyworld.render import (
    FRAME_SIZE,
    LongVideoSpec,
    render_long_spec,
    sample_long_spec,
    sample_videos,
    sample_world_videos,
)

RED_LEFT = PromptAttributes("red", "circle", "left", "black", "quickly")


def test_toy_world_draws_exactly_what_it_drew_before():
    prompts = split_prompts("train")[:6]
    old, old_specs = sample_videos(prompts, 7)
    new, new_specs = sample_world_videos(prompts, 7, "toy")
    assert torch.equal(old, new) and old_specs == new_specs


def test_long_world_is_defined_at_any_frame():
    spec = LongVideoSpec(RED_LEFT, (3.2, 9.7), first_frame=-5, num_frames=40)
    whole = render_long_spec(spec)
    for first in (-5, 0, 17):
        window = render_long_spec(spec.window(first, 12))
        assert torch.equal(window, whole[first + 5 : first + 17])
    pos = spec.positions()
    assert (pos >= 0).all() and (pos < FRAME_SIZE).all()
    steps = spec.unwrapped_positions().diff(dim=0)  # constant velocity: the prompt's direction and speed
    assert torch.allclose(steps, torch.tensor([[-0.65, 0.0]], dtype=torch.float64).expand_as(steps))


def test_wrapped_object_is_drawn_on_both_edges_and_keeps_its_area():
    inside = render_long_spec(LongVideoSpec(RED_LEFT, (7.6, 8.0), num_frames=1))[0, 0]  # same sub-pixel phase
    across = render_long_spec(LongVideoSpec(RED_LEFT, (15.6, 8.0), num_frames=1))[0, 0]
    assert across[:, 0].sum() > 1 and across[:, -1].sum() > 1  # on the left and on the right edge
    assert torch.isclose(across.sum(), inside.sum(), atol=1e-4)


def test_the_long_world_is_a_torus():
    """Moving the start by whole pixels is the same as rolling the frames: no edge is special."""
    spec = LongVideoSpec(PromptAttributes("blue", "triangle", "down", "white"), (1.3, 14.1), 0, 12)
    moved = LongVideoSpec(spec.attrs, (1.3 + 5, 14.1 - 3), 0, 12)
    rolled = torch.roll(render_long_spec(spec), shifts=(-3, 5), dims=(2, 3))
    assert torch.allclose(render_long_spec(moved), rolled, atol=1e-6)


def test_starts_anywhere_and_windows_at_any_phase():
    gen = torch.Generator().manual_seed(0)
    specs = [sample_long_spec(RED_LEFT, gen, 12, horizon=240) for _ in range(400)]
    starts = np.array([s.start for s in specs])
    assert starts.min() < 1 and starts.max() > FRAME_SIZE - 1
    hist = np.histogram2d(starts[:, 0], starts[:, 1], bins=2, range=[[0, 16], [0, 16]])[0]
    assert hist.min() > 60  # every quadrant, about a quarter each
    firsts = np.array([s.first_frame for s in specs])
    assert firsts.min() >= 0 and firsts.max() <= 228 and firsts.max() > 200 and len(set(firsts)) > 100


def test_long_world_batches_are_seeded_by_step():
    a = batch_for_step(18, 5, 4, 0.1, "long")
    b = batch_for_step(18, 5, 4, 0.1, "long")
    c = batch_for_step(18, 6, 4, 0.1, "long")
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    assert a[1].shape == (4, 12, 3, FRAME_SIZE, FRAME_SIZE)
    toy = batch_for_step(18, 5, 4, 0.1)
    assert not torch.equal(toy[1], a[1])


def test_lr_schedule_and_world_metadata():
    tcfg = {"lr": 3e-4, "warmup_steps": 100, "lr_schedule": [[7000, 1e-4]]}
    assert lr_at(tcfg, 0) == pytest.approx(3e-6)
    assert lr_at(tcfg, 6999) == pytest.approx(3e-4)
    assert lr_at(tcfg, 7000) == pytest.approx(1e-4)
    assert lr_at({"lr": 5e-4, "warmup_steps": 200}, 999) == 5e-4  # no schedule: as before
    config = load_config("toy-teacher-long")
    assert config["world"] == "long" and config["model"]["conv_padding"] == "circular"
    assert teacher_metadata(config, 3)["world"] == "long"
    assert "world" not in teacher_metadata(load_config("toy-teacher"), 3)


def test_unknown_world_is_a_config_error(tmp_path):
    cfg = copy.deepcopy(load_config("toy-teacher"))
    cfg["world"] = "endless"
    with pytest.raises(ConfigError, match="world"):
        pretrain(cfg, tmp_path)


def test_circular_padding_commutes_with_rolling_the_frame():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 2, 8, 8)
    for mode, equivariant in (("circular", True), ("zeros", False)):
        conv = FrameConv(3, 4, 3, mode)
        torch.nn.init.normal_(conv.net[-1].weight)
        rolled_after = torch.roll(conv(x), (2, 3), dims=(3, 4))
        rolled_before = conv(torch.roll(x, (2, 3), dims=(3, 4)))
        assert torch.allclose(rolled_after, rolled_before, atol=1e-6) == equivariant
    assert DiTConfig(conv_padding="circular").conv_padding == "circular"
    with pytest.raises(ValueError, match="conv_padding"):
        DiTConfig(conv_padding="reflect")
