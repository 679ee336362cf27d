"""Parallelism applied from outside (distill/parallelize.py): activation checkpointing leaves every gradient as it was.

The generator's loss runs a self-forcing rollout through the KV cache: its exit-step forwards are re-run in
backward after later chunks have written to the cache, so a recompute that read the live cache would see other
keys. Gradients are compared in float32 through the trainer's own losses (max relative diff <= 1e-6).
"""

import pytest
import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper, checkpoint_wrapper

from stream_r1.common.config import ConfigError
from stream_r1.distill.parallelize import Plan
from stream_r1.distill.trainer import PHASE_CRITIC, PHASE_GENERATOR, Distiller, sample_generators
from stream_r1.models.dit import DiT, DiTBlock
from stream_r1.models.dit_io import save_dit

from .conftest import randomized, tiny_config
from .test_distill import tiny_distill_config

MAX_REL = 1e-6
WRAPPED = "_checkpoint_wrapped_module."  # the checkpoint wrapper's prefix (state_dict() strips it)
EXIT_STEP = 1  # the first denoising step runs without grad, the second (exit) with grad


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = tmp_path_factory.mktemp("parallelize") / "teacher.safetensors"
    torch.manual_seed(0)
    save_dit(path, randomized(DiT(tiny_config(num_layers=3))), {"codec": {"factor": 1}, "frame_size": 16})
    return path


def distiller(teacher, tmp_path, **train) -> Distiller:
    """3 chunks of 3 latent frames: chunks 2 and 3 read the cache that chunks 1 and 2 wrote."""
    config = tiny_distill_config(teacher, batch_size=2, micro_batch_size=2, frames=9, **train)
    return Distiller(config, tmp_path)


def loss_gradients(d: Distiller, which: str) -> dict[str, torch.Tensor]:
    prompts = [d.prompts[0], d.prompts[5]]
    if which == "generator":
        loss, _ = d.generator_loss(prompts, EXIT_STEP, sample_generators(0, 0, PHASE_GENERATOR, range(2)))
        model = d.generator
    else:
        loss = d.critic_loss(prompts, EXIT_STEP, sample_generators(0, 0, PHASE_CRITIC, range(2)))
        model = d.critic
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n.replace(WRAPPED, ""): p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def max_relative_diff(got: dict, want: dict) -> float:
    assert got.keys() == want.keys() and want
    return max(((got[k] - want[k]).abs().max() / want[k].abs().max().clamp_min(1e-30)).item() for k in want)


def count_block_calls(model) -> list[int]:
    """Counts every forward of the model's DiT blocks (a checkpointed block runs again in backward)."""
    calls = [0]
    for m in model.modules():
        if isinstance(m, DiTBlock):
            m.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("mode", [dict(activation_checkpointing="full"),
                                  dict(activation_checkpointing="every_n", activation_checkpointing_every=2)])
@pytest.mark.parametrize("which", ["generator", "critic"])
def test_checkpointed_gradients_equal_plain(teacher, tmp_path, mode, which):
    ref = distiller(teacher, tmp_path / "plain")
    ref_calls = count_block_calls(getattr(ref, which))
    plain = loss_gradients(ref, which)
    d = distiller(teacher, tmp_path / "ckpt", **mode)
    wrapped = [isinstance(b, CheckpointWrapper) for b in getattr(d, which).blocks]
    assert wrapped == ([True] * 3 if mode["activation_checkpointing"] == "full" else [True, False, True])
    calls = count_block_calls(getattr(d, which))
    got = loss_gradients(d, which)
    assert calls[0] > ref_calls[0]  # checkpointed blocks did run again in backward
    assert max_relative_diff(got, plain) <= MAX_REL


def test_a_recompute_reading_the_live_cache_would_be_wrong(teacher, tmp_path):
    """What the frozen cache copy prevents: torch's plain checkpoint wrapper on the rollout's blocks."""
    plain = loss_gradients(distiller(teacher, tmp_path / "plain"), "generator")
    d = distiller(teacher, tmp_path / "naive")
    for i, block in enumerate(d.generator.blocks):
        d.generator.blocks[i] = checkpoint_wrapper(block)
    try:
        got = loss_gradients(d, "generator")
    except Exception as err:  # noqa: BLE001 - torch notices the recompute saved other tensors
        assert "checkpoint" in str(err).lower() or "size" in str(err).lower(), err
    else:
        assert max_relative_diff(got, plain) > 1e-3


def test_checkpointed_training_step_logs_the_same(teacher, tmp_path):
    """Through train_step (generator and critic, clipping, Adam): the same logs, and state-dict keys unchanged."""
    plain = distiller(teacher, tmp_path / "a")
    ckpt = distiller(teacher, tmp_path / "b", activation_checkpointing="full")
    assert ckpt.generator.state_dict().keys() == plain.generator.state_dict().keys()  # checkpoints stay loadable
    for step in range(2):
        want, got = plain.train_step(step), ckpt.train_step(step)
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-9), k


def test_bad_settings_are_one_line_errors(teacher, tmp_path):
    with pytest.raises(ConfigError, match="activation_checkpointing"):
        distiller(teacher, tmp_path, activation_checkpointing="some")
    with pytest.raises(ConfigError, match="activation_checkpointing_every"):
        Plan("every_n", 0)
    config = tiny_distill_config(teacher)
    config["distributed"] = {"teacher": "offload"}
    with pytest.raises(ConfigError, match="torchrun"):
        Distiller(config, tmp_path)
    config["distributed"] = {"teacher": "cpu"}
    with pytest.raises(ConfigError, match="shard"):
        Distiller(config, tmp_path)


def test_distiller_puts_everything_on_its_device(teacher, tmp_path):
    """`device` from the config; every network, the sigmas and the rollout land there (CPU here)."""
    config = tiny_distill_config(teacher)
    config["device"] = "cpu"
    d = Distiller(config, tmp_path)
    assert d.device == torch.device("cpu") and d.sigmas.device == d.device
    for m in (d.generator, d.critic, d.ema, d.teacher):
        assert {p.device for p in m.parameters()} == {d.device}
    if not torch.cuda.is_available():
        config["device"] = "cuda"
        with pytest.raises(ConfigError, match="no CUDA"):
            Distiller(config, tmp_path)


@pytest.mark.slow
def test_compiled_checkpointed_blocks_give_the_same_gradients(teacher, tmp_path):
    """torch.compile per block (inductor on the CPU) under checkpointing: gradients within float rounding."""
    plain = loss_gradients(distiller(teacher, tmp_path / "plain"), "generator")
    got = loss_gradients(distiller(teacher, tmp_path / "compiled", activation_checkpointing="full", compile=True),
                         "generator")
    assert max_relative_diff(got, plain) <= 1e-4


def test_a_writing_forward_with_grad_writes_the_cache_once(tmp_path):
    """A checkpointed chunk forward that also writes the cache: written once (not again by the recompute)."""
    from stream_r1.distill.parallelize import parallelize

    torch.manual_seed(0)
    plain = randomized(DiT(tiny_config(causal=True, num_layers=2)))
    ckpt = randomized(DiT(tiny_config(causal=True, num_layers=2)))
    ckpt.load_state_dict(plain.state_dict())
    parallelize(ckpt, Plan("full"), torch.device("cpu"))
    grads, caches = [], []
    for model in (plain, ckpt):
        cache = model.new_cache()
        x = torch.randn(1, 3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        cond = torch.randn(1, 10, 32, generator=torch.Generator().manual_seed(2))
        for _ in range(2):  # two chunks, each written by the forward that has grad
            cache.writing = True
            out = model(x, torch.full((1,), 500.0), cond, kv_cache=cache)
        out.square().sum().backward()
        grads.append({n.replace(WRAPPED, ""): p.grad for n, p in model.named_parameters()})
        caches.append(cache)
    assert caches[1].frames == caches[0].frames == list(range(6))
    assert all(c.layers[0].k.shape[2] == 6 * 16 for c in caches)  # 6 frames of 16 tokens, once each
    assert max_relative_diff(grads[1], grads[0]) <= MAX_REL


def test_imports_run_one_way():
    """launch → distributed → trainer → parallelize: the one-process trainer never loads the distributed module."""
    import subprocess
    import sys

    code = ("import sys, stream_r1.distill.trainer; "
            "print('stream_r1.distill.distributed' in sys.modules, 'stream_r1.distill.launch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
