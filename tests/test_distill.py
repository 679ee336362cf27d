"""Self-forcing DMD: the DMD gradient identity, rollouts, accumulation equivalence, kill-and-resume."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from stream_r1.distill.dmd import DMDSettings, dmd_elementwise_loss, dmd_gradient
from stream_r1.distill.rollout import self_forcing_rollout
from stream_r1.distill.trainer import PHASE_GENERATOR, Distiller, sample_generators
from stream_r1.models.dit import DiT
from stream_r1.models.dit_io import load_dit, save_dit
from stream_r1.runstate.train_state import read_jsonl

from .conftest import randomized, tiny_config

PROMPT = "a red circle moving left on a black background"


@pytest.fixture
def tiny_teacher(tmp_path):
    torch.manual_seed(0)  # the teacher does not depend on which tests ran before
    path = tmp_path / "teacher.safetensors"
    save_dit(path, randomized(DiT(tiny_config(num_layers=1))), {"codec": {"factor": 1}, "frame_size": 16})
    return path


@pytest.fixture
def tiny_critic(tmp_path):
    """A critic start other than the teacher: at step 0 the DMD gradient is then not a difference of two
    near-equal outputs of one network, whose cancellation magnifies float rounding ~10x (measured up to 1.3e-5
    of the gradient's norm between batchings with critic = teacher; at most 8.4e-7 with this, 8 teachers)."""
    torch.manual_seed(1)
    path = tmp_path / "critic.safetensors"
    save_dit(path, randomized(DiT(tiny_config(num_layers=1)), seed=1), {"codec": {"factor": 1}, "frame_size": 16})
    return path


def tiny_distill_config(teacher, **train) -> dict:
    t = dict(seed=3, steps=4, batch_size=4, micro_batch_size=4, generator_every=2, lr_generator=1e-3,
             lr_critic=1e-3, frames=6, denoising_timesteps=[1000, 500], log_every=1, checkpoint_every=2,
             eval_every=1000, ema_decay=0.9)
    t.update(train)
    return {"teacher": str(teacher), "student_init": str(teacher), "dmd": {"guidance": 2.0}, "train": t}


def test_dmd_loss_gradient_is_g():
    """½‖x − sg(x − g)‖² has gradient exactly g with respect to x."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 3, 4, 4, generator=gen).requires_grad_()
    g = torch.randn(x.shape, generator=gen)
    dmd_elementwise_loss(x, g).sum().backward()
    assert torch.allclose(x.grad, g, atol=1e-6)  # x − (x − g) rounds in float32


def test_dmd_gradient_normaliser_and_direction():
    torch.manual_seed(0)
    teacher = randomized(DiT(tiny_config(num_layers=1))).eval()
    x = torch.randn(2, 3, 3, 16, 16)
    cond, uncond = torch.randn(2, 10, 32), torch.zeros(2, 10, 32)
    g, info = dmd_gradient(x, teacher, teacher, cond, uncond, DMDSettings(guidance=1.0),
                           [torch.Generator().manual_seed(i) for i in range(2)])
    assert torch.allclose(g, torch.zeros_like(g), atol=1e-6)  # critic == teacher, no guidance: nothing to move
    g, info = dmd_gradient(x, teacher, teacher, cond, uncond, DMDSettings(guidance=3.0), torch.Generator())
    assert g.abs().max() > 1e-3 and info["normalizer"].shape == (2,)
    assert ((info["sigma"] >= 0.02) & (info["sigma"] <= 0.98)).all()


def test_guidance_forms_and_the_public_recipes_effective_scale():
    """`cond` form c + s·(c − u) is the `uncond` form u + s'·(c − u) at s' = s + 1; s = 0 (cond) and s = 1
    (uncond) are the plain conditional flow; the paper preset distils from the public recipe's scale 4."""
    from stream_r1.common.config import load_config
    from stream_r1.diffusion.sampler import guided_flow

    torch.manual_seed(0)
    model = randomized(DiT(tiny_config(num_layers=1))).eval()
    x, t = torch.randn(2, 3, 3, 16, 16), torch.full((2,), 500.0)
    cond, uncond = torch.randn(2, 10, 32), torch.zeros(2, 10, 32)
    with torch.no_grad():
        c, u = model(x, t, cond), model(x, t, uncond)
        torch.testing.assert_close(guided_flow(model, x, t, cond, uncond, 3.0, "cond"), c + 3.0 * (c - u))
        torch.testing.assert_close(guided_flow(model, x, t, cond, uncond, 3.0), u + 3.0 * (c - u))
        torch.testing.assert_close(guided_flow(model, x, t, cond, uncond, 3.0, "cond"),
                                   guided_flow(model, x, t, cond, uncond, 4.0, "uncond"), atol=1e-5, rtol=1e-5)
        assert torch.equal(guided_flow(model, x, t, cond, uncond, 0.0, "cond"), c)
        assert torch.equal(guided_flow(model, x, t, cond, uncond, 1.0), c)
    paper = DMDSettings.from_dict(load_config("wan2.1-1.3b-stream-r1")["dmd"])
    assert (paper.guidance_form, paper.guidance) == ("cond", 3.0)  # effective 4, as Self-Forcing / Stream-R1
    for name in ("toy-dmd", "toy-stream-r1", "toy-reward-forcing"):
        assert DMDSettings.from_dict(load_config(name)["dmd"]).guidance_form == "uncond"  # toy results unchanged


def test_rollout_grad_flows_only_through_exit_step():
    torch.manual_seed(0)
    student = randomized(DiT(tiny_config(causal=True, num_layers=1)))
    sigmas = torch.tensor([1.0, 0.75, 0.5])
    cond = torch.randn(1, 10, 32)
    x = self_forcing_rollout(student, (1, 3, 6, 16, 16), sigmas, cond, exit_step=2, generator=torch.Generator())
    assert x.shape == (1, 3, 6, 16, 16) and x.requires_grad
    x.sum().backward()
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    with torch.no_grad():
        y = self_forcing_rollout(student, (1, 3, 6, 16, 16), sigmas, cond, 0, torch.Generator(), grad=False)
    assert not y.requires_grad


def params(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def run_with_sgd(config: dict, run_dir, steps: int = 2, lr: float = 0.1):
    """Train `steps` steps with plain SGD (no amplification of rounding), recording at every optimizer step
    the gradients it applies (after clipping). Returns (gradients per optimizer, logs, weights before, after)."""
    d = Distiller(config, run_dir)
    before = {"generator": params(d.generator), "critic": params(d.critic)}
    d.opt_g = torch.optim.SGD(d.generator.parameters(), lr=lr)
    d.opt_c = torch.optim.SGD(d.critic.parameters(), lr=lr)
    grads: dict[str, list[torch.Tensor]] = {"generator": [], "critic": []}
    for name, opt, module in (("generator", d.opt_g, d.generator), ("critic", d.opt_c, d.critic)):
        def record(optimizer, args, kwargs, name=name, module=module):
            grads[name].append(torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None]))
        opt.register_step_pre_hook(record)
    logs = [d.train_step(step) for step in range(steps)]
    return grads, logs, before, {"generator": params(d.generator), "critic": params(d.critic)}


def assert_same_update(a, b, rel: float = 1e-5) -> None:
    """What accumulation must guarantee: one optimizer step per window, the same gradients at that step
    (within `rel` of their norm), the same logged losses, and the same weights after an SGD step."""
    (grads_a, logs_a, before, after_a), (grads_b, logs_b, _, after_b) = a, b
    for name in grads_a:
        assert len(grads_a[name]) == len(grads_b[name]), name  # one optimizer step per accumulation window
        for ga, gb in zip(grads_a[name], grads_b[name], strict=True):
            assert ga.norm() > 0
            assert (ga - gb).norm() <= rel * ga.norm(), (name, float((ga - gb).norm() / ga.norm()))
        moved = max((after_a[name][k] - before[name][k]).abs().max() for k in before[name])
        assert moved > 0, name
        for k in before[name]:  # SGD: w − lr·g, so weights differ by lr·Δg plus one float32 rounding (2 ulp)
            torch.testing.assert_close(after_b[name][k], after_a[name][k], rtol=2.5e-7, atol=rel * moved,
                                       msg=f"{name}.{k}")
    for la, lb in zip(logs_a, logs_b, strict=True):
        assert la.keys() == lb.keys()
        for key in la:
            assert la[key] == pytest.approx(lb[key], rel=rel, abs=1e-7), key


def test_gradient_accumulation_equals_full_batch(tiny_teacher, tiny_critic, tmp_path):
    """Two micro-batches of 2 give the update of one batch of 4: step 0 updates generator and critic, step 1
    the critic only. Gradients are compared at the optimizer step and weights after SGD (Adam's first step,
    lr·g/(|g| + eps), would turn rounding in a gradient near eps into a weight difference)."""
    config = {**tiny_distill_config(tiny_teacher), "critic_init": str(tiny_critic)}
    runs = [run_with_sgd({**config, "train": {**config["train"], "micro_batch_size": m}}, tmp_path / f"run{m}")
            for m in (4, 2)]
    assert [len(g) for g in runs[0][0].values()] == [1, 2]  # generator_every=2: one generator step in two
    assert_same_update(*runs)


@pytest.mark.parametrize("mode", ["faithful", "clamp", "self_normalized"])
def test_reweighted_accumulation_equals_full_batch(tiny_teacher, tiny_critic, tmp_path, mode):
    """With Stream-R1 on, micro-batches of 1 give the update of one batch of 4: the inter weights are normalised
    over the optimizer step's whole batch (the pre-pass), not per micro-batch, in every weight mode."""
    def config(micro):
        c = tiny_distill_config(tiny_teacher, micro_batch_size=micro, generator_every=1, steps=2)
        reweight = {"weight_mode": mode, "reward_clip": 10.0, "balance": "per_axis", "window": 8}
        return {**c, "critic_init": str(tiny_critic), "reward": "toy-reward", "reweight": reweight}

    runs = [run_with_sgd(config(m), tmp_path / f"run{m}") for m in (4, 1)]
    assert runs[0][1][0]["inter/w_max"] > runs[0][1][0]["inter/w_min"]  # the weights do differ between rollouts
    assert_same_update(*runs)


def run_cli(config_path, out, resume=False):
    cmd = [sys.executable, "-m", "stream_r1", "distill", "--config", str(config_path), "--out", str(out)]
    return cmd + (["--resume"] if resume else [])


def test_sigkill_then_resume_is_bitwise_identical(tiny_teacher, tmp_path):
    config = tiny_distill_config(tiny_teacher, steps=8, checkpoint_every=2)
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(run_cli(config_path, tmp_path / "straight"), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(run_cli(config_path, tmp_path / "killed"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and not (latest.exists() and latest.read_text().strip() >= "step_0000004"):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "student.safetensors").exists(), "the run finished before it was killed"
    subprocess.run(run_cli(config_path, tmp_path / "killed", resume=True), check=True, env=env, capture_output=True)

    a, _ = load_dit(tmp_path / "straight" / "student.safetensors")
    b, _ = load_dit(tmp_path / "killed" / "student.safetensors")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), k
    for name in ("critic", "generator"):
        from stream_r1.common.weights import load_state_dict

        sa, _ = load_state_dict(tmp_path / "straight" / "checkpoints" / "step_0000008" / f"{name}.safetensors")
        sb, _ = load_state_dict(tmp_path / "killed" / "checkpoints" / "step_0000008" / f"{name}.safetensors")
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    rows = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 9)) and all("loss/critic" in r for r in rows)


def test_reweighting_switched_off_gives_exactly_the_dmd_loss(tiny_teacher, tmp_path):
    from stream_r1.reweight.reweighter import StreamR1Reweighter
    from stream_r1.reweight.settings import ReweightSettings

    from .test_reweight import quadratic_reward

    config = tiny_distill_config(tiny_teacher)
    plain = Distiller(config, tmp_path / "plain")
    off = StreamR1Reweighter(quadratic_reward, plain.codec.decode,
                             ReweightSettings(inter=False, intra=False, balance="none"))
    on = StreamR1Reweighter(quadratic_reward, plain.codec.decode, ReweightSettings())
    prompts, exit_step = plain.step_prompts(0)
    losses = []
    for rw in (None, off, on):
        d = Distiller(config, tmp_path / "x", reweighter=rw)
        gens = sample_generators(d.s.seed, 0, PHASE_GENERATOR, range(len(prompts)))
        losses.append(d.generator_loss(prompts, exit_step, gens)[0])
    assert torch.equal(losses[0], losses[1])
    assert not torch.equal(losses[0], losses[2])


def test_every_generator_step_is_logged(tiny_teacher, tmp_path):
    """Generator-step scalars (loss, reward, inter weights) reach the logs even when log_every skips their step."""
    from stream_r1.distill.launch import distill

    config = tiny_distill_config(tiny_teacher, steps=4, generator_every=2, log_every=1000, checkpoint_every=1000)
    distill(config, tmp_path / "run", evaluator=lambda d, writer: None)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss/generator" in r] == [1, 3]
    assert rows[-1]["step"] == 4


def test_resume_restores_the_balancer_window(tiny_teacher, tmp_path):
    """A resumed Stream-R1 run balances the axes from the same window of scores as the run it continues."""
    from stream_r1.reweight.reweighter import StreamR1Reweighter
    from stream_r1.reweight.settings import ReweightSettings

    from .test_reweight import quadratic_reward

    def reweighter(d):
        return StreamR1Reweighter(quadratic_reward, d.codec.decode, ReweightSettings(balance="per_axis"))

    config = tiny_distill_config(tiny_teacher, generator_every=1)
    d = Distiller(config, tmp_path / "run")
    d.reweighter = reweighter(d)
    for step in range(5):
        d.train_step(step)
        d.step = step + 1
    d.save()
    history = [h.clone() for h in d.reweighter.balancer.history]
    assert len(history) == 5

    again = Distiller(config, tmp_path / "run")
    again.reweighter = reweighter(again)
    assert again.resume() and again.step == 5
    assert len(again.reweighter.balancer.history) == 5
    assert all(torch.equal(a, b) for a, b in zip(history, again.reweighter.balancer.history, strict=True))
    assert again.reweighter.balancer.lambdas() == d.reweighter.balancer.lambdas()


def test_prompt_repeats_fill_neighbouring_slots_and_one_repeat_keeps_the_draw(tiny_teacher, tmp_path):
    plain = Distiller(tiny_distill_config(tiny_teacher), tmp_path / "a")
    once = Distiller(tiny_distill_config(tiny_teacher, prompt_repeats=1), tmp_path / "b")
    twice = Distiller(tiny_distill_config(tiny_teacher, prompt_repeats=2), tmp_path / "c")
    for step in range(3):
        assert once.step_prompts(step) == plain.step_prompts(step)  # the DMD baseline's batches are unchanged
        prompts, _ = twice.step_prompts(step)
        assert len(prompts) == 4 and prompts[0] == prompts[1] and prompts[2] == prompts[3]
    with pytest.raises(ValueError, match="prompt_repeats=3 must be a positive divisor of micro_batch_size 4"):
        Distiller(tiny_distill_config(tiny_teacher, prompt_repeats=3), tmp_path / "d")


def test_critic_section_sizes_the_critic_and_leaves_the_generator(tmp_path):
    """`critic: {layers: [...]}` gives a bidirectional critic of those teacher blocks (issue 20's small critic)."""
    from stream_r1.distill.components import toy_components

    teacher = tmp_path / "teacher3.safetensors"
    save_dit(teacher, randomized(DiT(tiny_config(num_layers=3))), {"codec": {"factor": 1}, "frame_size": 16})
    student = tmp_path / "student.safetensors"
    save_dit(student, load_dit(teacher, causal=True, layers=[0, 2])[0])
    config = {**tiny_distill_config(teacher), "student_init": str(student), "critic": {"layers": [0, 2]}}
    parts = toy_components(config)
    assert parts.critic.cfg.num_layers == 2 and not parts.critic.cfg.causal
    assert parts.generator.cfg.num_layers == 2 and parts.generator.cfg.causal
    assert parts.teacher.cfg.num_layers == 3
    own = load_dit(teacher)[0].state_dict()
    assert torch.equal(parts.critic.state_dict()["blocks.1.ffn.0.weight"], own["blocks.2.ffn.0.weight"])
    ode_critic = toy_components({**config, "critic_init": str(student), "critic": {"causal": False}}).critic
    assert not ode_critic.cfg.causal and ode_critic.cfg.num_layers == 2
