"""Long self-rollouts (docs/method.md §2.4): the trained window is streamed after a grad-free past."""

import pytest
import torch

from stream_r1.diffusion.sampler import stream_chunks
from stream_r1.distill.rollout import self_forcing_rollout
from stream_r1.distill.trainer import Distiller, DistillSettings
from stream_r1.models.dit import DiT
from stream_r1.models.dit_io import save_dit

from .conftest import randomized, tiny_config
from .test_distill import tiny_distill_config


def test_window_after_a_prefix_is_what_the_stream_makes_there():
    """At the last exit step a window after k prefix chunks equals chunks k.. of `generate`'s own stream (same
    noise), and only the window's forwards carry grad."""
    torch.manual_seed(0)
    student = randomized(DiT(tiny_config(causal=True, num_layers=1, local_attn_frames=6)))
    sigmas = torch.tensor([1.0, 0.6, 0.3])
    cond = torch.randn(1, 10, 32)
    k, window = 3, 2  # chunks of 3 latent frames
    x = self_forcing_rollout(student, (1, 3, 3 * window, 16, 16), sigmas, cond, exit_step=2,
                             generator=torch.Generator().manual_seed(5), prefix_chunks=k)
    streamed = list(stream_chunks(student, k + window, (1, 3, 3, 16, 16), sigmas, cond,
                                  torch.Generator().manual_seed(5)))
    assert x.shape == (1, 3, 6, 16, 16) and x.requires_grad
    assert torch.allclose(x.detach(), torch.cat(streamed[k:], dim=2), atol=1e-5)
    x.sum().backward()
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)


def test_window_positions_cover_the_long_rollout_and_agree_per_step(tmp_path):
    """The window start is uniform over the long rollout's positions, the same for a step every time it is
    asked (so every micro-batch and rank agree), and 0 when long rollouts are off."""
    torch.manual_seed(0)
    tiny_teacher = tmp_path / "teacher.safetensors"
    save_dit(tiny_teacher, randomized(DiT(tiny_config(num_layers=1))), {"codec": {"factor": 1}, "frame_size": 16})
    off = Distiller(tiny_distill_config(tiny_teacher), tmp_path / "off")
    assert {off.prefix_chunks(s) for s in range(20)} == {0}
    on = Distiller(tiny_distill_config(tiny_teacher, long_rollout_frames=18), tmp_path / "on")
    starts = [on.prefix_chunks(s) for s in range(200)]
    assert set(starts) == {0, 1, 2, 3, 4}  # 18 frames hold windows of 6 starting at chunks 0..4 (3 frames each)
    assert max(starts.count(v) for v in range(5)) < 2 * min(starts.count(v) for v in range(5))
    assert starts == [on.prefix_chunks(s) for s in range(200)]
    logs = on.train_step(0)
    assert logs["rollout/window_start_chunk"] == starts[0]


def test_long_rollout_shorter_than_the_window_is_refused():
    with pytest.raises(ValueError, match="long_rollout_frames=6 is shorter than train.frames=12"):
        DistillSettings.from_dict({"frames": 12, "long_rollout_frames": 6})


def test_frame_embedding_horizon_keeps_late_frames_in_range():
    """Past the horizon every frame shares the last trained index, so (RoPE being relative) a clip at frame 10
    and the same clip at frame 20 give the same output; without the horizon they differ; before it, nothing
    changes."""
    torch.manual_seed(0)
    free = randomized(DiT(tiny_config(num_layers=1, frame_embedding=True)))
    capped = DiT(tiny_config(num_layers=1, frame_embedding=True, frame_embedding_horizon=3))
    capped.load_state_dict(free.state_dict())
    x, t, cond = torch.randn(1, 3, 3, 16, 16), torch.tensor([500.0]), torch.randn(1, 10, 32)
    with torch.no_grad():
        assert torch.equal(capped(x, t, cond), free(x, t, cond))
        late = [capped(x, t, cond, start_frame=s) for s in (10, 20)]
        assert torch.allclose(late[0], late[1], atol=1e-5)
        assert not torch.allclose(free(x, t, cond, start_frame=10), free(x, t, cond, start_frame=20), atol=1e-3)
    with pytest.raises(ValueError, match="frame_embedding_horizon"):
        tiny_config(frame_embedding_horizon=0)


@pytest.mark.parametrize("name", ["toy-ode-init-long", "toy-dmd-long", "toy-stream-r1-long"])
def test_shipped_long_students_stream_in_the_long_world(name):
    """The long world's students load by short name, say their world (so `evaluate` scores them there) and the
    distilled ones carry the streaming architecture they were trained for (rolling 12-frame window, held frame
    embedding)."""
    from stream_r1.models.dit_io import load_dit

    model, extra = load_dit(name)
    assert model.cfg.causal and extra["world"] == "long"
    if name != "toy-ode-init-long":
        assert (model.cfg.local_attn_frames, model.cfg.frame_embedding_horizon) == (12, 12)
