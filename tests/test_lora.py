"""LoRA on generator and critic (`train.lora`, distill/lora.py): only adapters train, export merged, resume works."""

import pytest
import torch

from stream_r1.distill.trainer import Distiller
from stream_r1.generation.pipeline import VideoPipeline
from stream_r1.models.dit import DiT
from stream_r1.models.dit_io import load_dit, save_dit

from .conftest import randomized, tiny_config
from .test_distill import tiny_distill_config

pytest.importorskip("peft")

PROMPTS = ["a red circle moving left on a black background", "a blue square moving up on a gray background"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = tmp_path_factory.mktemp("lora") / "teacher.safetensors"
    torch.manual_seed(0)
    save_dit(path, randomized(DiT(tiny_config(num_layers=2))), {"codec": {"factor": 1}, "frame_size": 16})
    return path


def lora_distiller(teacher, run_dir, base_dtype="bfloat16", **train) -> Distiller:
    config = tiny_distill_config(teacher, batch_size=2, micro_batch_size=2, generator_every=1, **train)
    config["train"]["lora"] = {"rank": 4, "alpha": 8, "base_dtype": base_dtype}
    return Distiller(config, run_dir)


def split(model) -> tuple[dict, dict]:
    """(base, adapter) tensors of a peft model, cloned."""
    base, adapters = {}, {}
    for n, p in model.named_parameters():
        (adapters if "lora_" in n else base)[n] = p.detach().clone()
    return base, adapters


@pytest.mark.parametrize("checkpointing", ["none", "full"])
def test_only_the_adapters_train(teacher, tmp_path, checkpointing):
    d = lora_distiller(teacher, tmp_path, activation_checkpointing=checkpointing)
    for model, opt in ((d.generator, d.opt_g), (d.critic, d.opt_c)):
        base, adapters = split(model)
        assert adapters and {p.dtype for p in base.values()} == {torch.bfloat16}  # bases frozen in bf16
        assert {p.dtype for p in adapters.values()} == {torch.float32}
        in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
        assert in_opt == {id(p) for n, p in model.named_parameters() if "lora_" in n}
    before = {name: split(m) for name, m in (("generator", d.generator), ("critic", d.critic))}
    logs = d.train_step(0)  # generator and critic both step
    assert logs["grad_norm/generator"] > 0 and logs["grad_norm/critic"] > 0
    for name, model in (("generator", d.generator), ("critic", d.critic)):
        base0, adapters0 = before[name]
        base1, adapters1 = split(model)
        assert all(torch.equal(base1[k], base0[k]) for k in base0), name  # bitwise unchanged
        assert any(not torch.equal(adapters1[k], adapters0[k]) for k in adapters0), name
        grads = {n for n, p in model.named_parameters() if p.grad is not None}
        assert grads and all("lora_" in n for n in grads)


def test_lora_student_exports_merged_weights_that_generate_loads(teacher, tmp_path):
    """The export is a plain DiT (adapters merged); `generate` on it streams what the peft EMA streams."""
    d = lora_distiller(teacher, tmp_path, base_dtype="float32", lr_generator=1e-2, ema_decay=0.0)
    for step in range(2):
        d.train_step(step)
    lora_b = [p for n, p in d.ema.named_parameters() if "lora_B" in n]
    assert max(p.abs().max().item() for p in lora_b) > 1e-3  # the adapters moved away from B = 0
    path = d.export()
    model, _ = load_dit(path)
    assert type(model) is DiT and not any("lora" in k or "base_layer" in k for k in model.state_dict())
    pipe = VideoPipeline.from_checkpoint(path)
    exported = pipe.generate(PROMPTS, 6, seed=0)
    pipe.model = d.ema.eval()
    adapted = pipe.generate(PROMPTS, 6, seed=0)
    assert exported.shape == adapted.shape
    torch.testing.assert_close(exported, adapted, atol=1e-5, rtol=1e-5)


def test_lora_run_resumes_bitwise(teacher, tmp_path):
    """Checkpoint/resume with LoRA: 2 steps, save, a fresh Distiller resumes and runs 2 more == 4 straight."""
    straight = lora_distiller(teacher, tmp_path / "straight")
    want = [straight.train_step(s) for s in range(4)]
    first = lora_distiller(teacher, tmp_path / "split")
    for s in range(2):
        first.train_step(s)
    first.step = 2
    first.save()
    resumed = lora_distiller(teacher, tmp_path / "split")
    assert resumed.resume() and resumed.step == 2
    got = [resumed.train_step(s) for s in (2, 3)]
    assert got == want[2:]
    for name in ("generator", "critic", "ema"):
        a, b = straight.modules()[name].state_dict(), resumed.modules()[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
