"""torchrun + FSDP2 distillation on the CPU (gloo): 2 ranks equal 1 process; a 2-rank checkpoint resumes on 1.

The reference is the single-process `Distiller` on the same config and global batch. Tolerances: logged
losses, gradient norms and reweighting figures rel 1e-5; parameters atol 1e-5 (they move ~5e-3 from
their start, so a wrong gradient scale, a per-rank clip norm or a rank drawing another sample's noise
shows up far above it). Measured here over 4 steps: logs within 4e-7 relative, parameters within 4e-7.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.distributed.checkpoint as dcp
import yaml

from stream_r1.distill.trainer import Distiller
from stream_r1.models.dit import DiT
from stream_r1.models.dit_io import load_dit, save_dit

from .conftest import randomized, tiny_config
from .test_distill import tiny_distill_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")  # DCP read in-process
PARAM_ATOL, LOG_RTOL = 1e-5, 1e-5


def distributed_config(teacher, **train) -> dict:
    """Tiny Stream-R1 run: global batch 8 in micro-batches of 2 (2 per rank on 2 ranks), clipping active,
    the toy reward with the per-axis balancer (one window entry per generator step, from the pre-pass's
    global scores); the generator steps at steps 0 and 2, the critic every step."""
    t = dict(steps=2, batch_size=8, micro_batch_size=2, generator_every=2, grad_clip=0.1, checkpoint_every=2,
             eval_videos=2)
    t.update(train)
    config = tiny_distill_config(teacher, **t)
    config["reward"] = "toy-reward"
    config["reweight"] = {"balance": "per_axis", "window": 8}
    return config


def torchrun(nproc: int, config_path, out, *extra) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "stream_r1", "distill", "--config", str(config_path), "--out", str(out), *extra]


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def read_metrics(run_dir) -> dict[int, dict]:
    """metrics.jsonl per step, without the wall-clock and ToyBench entries (the reference has neither)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r.pop("step"): {k: v for k, v in r.items() if not k.startswith(("time/", "toybench/"))} for r in rows}


def toybench_steps(run_dir) -> list[int]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "toybench/total" in r]


def snapshot(d: Distiller) -> dict:
    return {name: {k: v.detach().clone() for k, v in m.state_dict().items()} for name, m in d.modules().items()}


def load_sharded(ckpt, like: dict) -> dict:
    """Read a DCP checkpoint into whole tensors in this (non-distributed) process."""
    state = {name: {k: torch.empty_like(v) for k, v in sd.items()} for name, sd in like.items()}
    dcp.load(state, checkpoint_id=str(ckpt), no_dist=True)
    return state


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    teacher = root / "teacher.safetensors"
    save_dit(teacher, randomized(DiT(tiny_config(num_layers=1))), {"codec": {"factor": 1}, "frame_size": 16})
    config = distributed_config(teacher)
    config_path = root / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return root, config, config_path


@pytest.fixture(scope="module")
def reference(setup):
    """The single-process trainer for 4 uninterrupted steps: logs per step, weights after steps 2 and 4.

    Runs resumed at step 2 must match it, so the balancer's window has to travel in every checkpoint format.
    """
    root, config, _ = setup
    d = Distiller(config, root / "plain")
    logs, weights, windows = {}, {}, {}
    for step in range(4):
        logs[step + 1] = d.train_step(step)
        d.step = step + 1
        if d.step in (2, 4):
            weights[d.step] = snapshot(d)
            windows[d.step] = d.reweighter.balancer.state_dict()["history"]
    return logs, weights, windows


@pytest.fixture(scope="module")
def two_rank_run(setup):
    root, _, config_path = setup
    out = root / "two_ranks"
    run(torchrun(2, config_path, out))
    return out


def assert_logs_match(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=LOG_RTOL, abs=1e-8), k


def assert_weights_match(got: dict, want: dict, start: dict) -> None:
    moved = max((want["generator"][k] - start[k]).abs().max().item() for k in start)
    assert moved > 100 * PARAM_ATOL  # the comparison below means something
    for name in want:
        for k in want[name]:
            torch.testing.assert_close(got[name][k], want[name][k], atol=PARAM_ATOL, rtol=1e-5, msg=f"{name}.{k}")


def test_two_ranks_equal_one_process(setup, reference, two_rank_run):
    """Same global batch: 2 gloo ranks with FSDP2 give the single-process losses, grad norms and weights."""
    _, config, _ = setup
    ref_logs, ref_weights, ref_windows = reference
    got = read_metrics(two_rank_run)
    for step in (1, 2):
        assert_logs_match(got[step], ref_logs[step])
    ckpt = two_rank_run / "checkpoints" / "step_0000002"
    assert json.loads((ckpt / "state.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in ckpt.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]  # one shard file per rank
    start = load_dit(config["student_init"], causal=True)[0].state_dict()
    assert_weights_match(load_sharded(ckpt, ref_weights[2]), ref_weights[2], start)
    student, _ = load_dit(two_rank_run / "student.safetensors")  # rank 0 gathered the sharded EMA
    for k, v in student.state_dict().items():
        torch.testing.assert_close(v, ref_weights[2]["ema"][k], atol=PARAM_ATOL, rtol=1e-5)
    assert list((two_rank_run / "samples").glob("*.png"))  # rank 0 evaluated the gathered EMA
    assert toybench_steps(two_rank_run) == [2]  # ... and logged its ToyBench scores like a single process
    window = json.loads((ckpt / "state.json").read_text())["balancer"]["history"]
    assert len(window) == len(ref_windows[2]) == 1  # one entry per optimizer step, of both ranks' rollouts
    torch.testing.assert_close(torch.tensor(window), torch.tensor(ref_windows[2]), atol=1e-6, rtol=1e-5)


def test_two_rank_checkpoint_resumes_on_one_process(setup, reference, two_rank_run):
    """`stream-r1 distill --resume` without torchrun picks up the 2-rank DCP checkpoint and continues."""
    root, config, config_path = setup
    ref_logs, ref_weights, ref_windows = reference
    out = root / "resumed"
    shutil.copytree(two_rank_run, out)
    (out / "metrics.jsonl").unlink()
    run([sys.executable, "-m", "stream_r1", "distill", "--config", str(config_path), "--out", str(out), "--resume",
         "--set", "train.steps=4"])
    got = read_metrics(out)
    assert sorted(got) == [3, 4]  # resumed at step 2
    for step in (3, 4):
        assert_logs_match(got[step], ref_logs[step])
    ckpt = out / "checkpoints" / "step_0000004"
    assert json.loads((ckpt / "state.json").read_text())["world_size"] == 1
    start = load_dit(config["student_init"], causal=True)[0].state_dict()
    assert_weights_match(load_sharded(ckpt, ref_weights[4]), ref_weights[4], start)


@pytest.mark.slow
def test_single_process_checkpoint_resumes_on_two_ranks(setup, reference):
    """The other way: a plain (safetensors) checkpoint is sharded on load by a 2-rank resume."""
    root, config, config_path = setup
    ref_logs, ref_weights, ref_windows = reference
    out = root / "plain_then_two"
    run([sys.executable, "-m", "stream_r1", "distill", "--config", str(config_path), "--out", str(out)])
    assert not (out / "checkpoints" / "step_0000002" / ".metadata").exists()
    run(torchrun(2, config_path, out, "--resume", "--set", "train.steps=4"))
    got = read_metrics(out)
    for step in (3, 4):
        assert_logs_match(got[step], ref_logs[step])
    start = load_dit(config["student_init"], causal=True)[0].state_dict()
    got_weights = load_sharded(out / "checkpoints" / "step_0000004", ref_weights[4])
    assert_weights_match(got_weights, ref_weights[4], start)


@pytest.mark.slow
def test_bf16_mixed_precision_runs(tmp_path):
    """bf16 parameters/activations with fp32 reductions: it trains, close to fp32 (loose), masters stay fp32.

    Not bitwise: bf16 matmuls round differently; measured within ~1% of the fp32 losses here. Two blocks,
    so a block hands its output to another block (a bf16 LayerNorm weight meets it).
    """
    teacher = tmp_path / "teacher.safetensors"
    save_dit(teacher, randomized(DiT(tiny_config(num_layers=2))), {"codec": {"factor": 1}, "frame_size": 16})
    config = {**distributed_config(teacher), "distributed": {"mixed_precision": "bf16"}}
    config_path = tmp_path / "bf16.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out = tmp_path / "bf16"
    run(torchrun(2, config_path, out))
    d = Distiller(config, tmp_path / "plain")
    ref_logs = {step + 1: d.train_step(step) for step in range(2)}
    got = read_metrics(out)
    for step in (1, 2):
        assert got[step]["loss/critic"] == pytest.approx(ref_logs[step]["loss/critic"], rel=0.05)
    assert got[1]["loss/dmd_unweighted"] == pytest.approx(ref_logs[1]["loss/dmd_unweighted"], rel=0.05)
    assert got[1]["loss/dmd_unweighted"] != ref_logs[1]["loss/dmd_unweighted"]  # bf16 did run
    ckpt = out / "checkpoints" / "step_0000002"
    ref = snapshot(d)
    stored = dcp.FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata
    dtypes = {stored[f"{name}.{k}"].properties.dtype for name, sd in ref.items() for k in sd}
    assert dtypes == {torch.float32}  # sharded master weights stay fp32
    for name, sd in load_sharded(ckpt, ref).items():
        for k, v in sd.items():
            assert torch.isfinite(v).all(), f"{name}.{k}"
            torch.testing.assert_close(v, ref[name][k], atol=5e-3, rtol=0.05)


WEIGHT_MODES = ("faithful", "clamp", "self_normalized")


def reweighted_config(teacher, mode: str, micro: int) -> dict:
    """Global batch 4, one generator step, Stream-R1 on with the toy reward in weight mode `mode`."""
    config = distributed_config(teacher, batch_size=4, micro_batch_size=micro, generator_every=1, steps=1,
                                grad_clip=10.0)
    config["reweight"] = {"weight_mode": mode, "reward_clip": 10.0, "balance": "per_axis", "window": 8}
    return config


def generator_step_gradient(d, full=lambda g: g) -> list[torch.Tensor]:
    """Run step 0 of `d` under SGD and return the generator's gradients at its optimizer step (whole tensors)."""
    d.opt_g = torch.optim.SGD(d.generator.parameters(), lr=0.1)
    got = []
    d.opt_g.register_step_pre_hook(lambda opt, args, kwargs: got.append(
        torch.cat([full(p.grad).flatten() for p in d.generator.parameters()])))
    d.train_step(0)
    assert len(got) == 1
    return got


def _global_batch_worker(rank: int, world: int, port: int, teacher, out) -> None:
    """One rank: per weight mode, the generator gradient of one step with micro-batches of 1 (2 per rank)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from stream_r1.distill.distributed import DistributedDistiller, init_cluster

    cluster = init_cluster("gloo")
    try:
        grads = {}
        for mode in WEIGHT_MODES:
            d = DistributedDistiller(reweighted_config(teacher, mode, micro=1), out / f"{mode}{rank}", cluster)
            grads[mode] = generator_step_gradient(d, full=lambda g: g.full_tensor())[0]
        if rank == 0:
            torch.save(grads, out / "grads.pt")
    finally:
        cluster.close()


def test_reweighted_micro_batches_on_two_ranks_equal_one_batch(setup, tmp_path):
    """Stream-R1's weights over the global batch: micro-batches of 1 on 2 gloo ranks give one process's
    batch-of-4 generator gradient (within 1e-5 of its norm) in every weight mode."""
    import socket

    import torch.multiprocessing as mp

    root, _, _ = setup
    teacher = root / "teacher.safetensors"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_global_batch_worker, args=(2, port, teacher, tmp_path), nprocs=2, start_method="spawn")
    got = torch.load(tmp_path / "grads.pt", weights_only=True)
    for mode in WEIGHT_MODES:
        want = generator_step_gradient(Distiller(reweighted_config(teacher, mode, micro=4), tmp_path / mode))[0]
        assert (got[mode] - want).norm() <= 1e-5 * want.norm(), (mode, float((got[mode] - want).norm() / want.norm()))


def _paper_scale_worker(rank: int, world: int, port: int, out) -> None:
    """One rank of a 2-rank dry run of the paper-scale classes (DiT in Wan layout, UMT5, VideoReward)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from torch.distributed.fsdp import FSDPModule

    from stream_r1.common.config import load_config
    from stream_r1.distill.components import dry_run_config
    from stream_r1.distill.distributed import DistributedDistiller, init_cluster

    cluster = init_cluster("gloo")
    try:
        config = dry_run_config(load_config("wan2.1-1.3b-stream-r1", ["distributed.mixed_precision=fp32"]))
        d = DistributedDistiller(config, out / f"rank{rank}", cluster, dry_run=True)
        sharded = {name: isinstance(m, FSDPModule) for name, m in
                   (("teacher", d.teacher), ("critic", d.critic), ("generator", d.generator), ("text", d.text))}
        logs = d.train_step(0)
        if rank == 0:
            (out / "logs.json").write_text(json.dumps({"logs": logs, "sharded": sharded}))
    finally:
        cluster.close()


@pytest.mark.slow
def test_paper_scale_classes_shard_over_two_ranks(tmp_path):
    """The Wan-family dry run (tiny random weights of the real classes) on 2 ranks equals one process,
    with the teacher, critic, generator and the UMT5 text encoder all sharded by FSDP2."""
    pytest.importorskip("transformers")
    import socket

    import torch.multiprocessing as mp

    from stream_r1.common.config import load_config
    from stream_r1.distill.components import dry_run_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_paper_scale_worker, args=(2, port, tmp_path), nprocs=2, start_method="spawn")
    got = json.loads((tmp_path / "logs.json").read_text())
    assert all(got["sharded"].values()), got["sharded"]
    config = dry_run_config(load_config("wan2.1-1.3b-stream-r1", ["distributed.mixed_precision=fp32"]))
    want = Distiller(config, tmp_path / "plain", dry_run=True).train_step(0)
    assert "loss/generator" in want and "reward/vq" in want
    assert_logs_match(got["logs"], want)


@pytest.mark.slow
def test_checkpointing_lora_and_teacher_offload_on_two_ranks(tmp_path):
    """parallelize.py under FSDP2: checkpointed blocks, LoRA adapters (float32 bases, so the comparison is tight)
    and the teacher's shards offloaded to host memory; 2 ranks still equal one process, and the export is merged."""
    pytest.importorskip("peft")
    teacher = tmp_path / "teacher.safetensors"
    save_dit(teacher, randomized(DiT(tiny_config(num_layers=2))), {"codec": {"factor": 1}, "frame_size": 16})
    config = distributed_config(teacher, activation_checkpointing="full")
    config["train"]["lora"] = {"rank": 4, "alpha": 8, "base_dtype": "float32"}
    config_path = tmp_path / "parallel.yaml"
    config_path.write_text(yaml.safe_dump({**config, "distributed": {"teacher": "offload"}}))
    out = tmp_path / "two"
    run(torchrun(2, config_path, out))
    d = Distiller(config, tmp_path / "plain")  # one process: the teacher stays whole (offload needs FSDP2)
    ref_logs = {step + 1: d.train_step(step) for step in range(4)}
    got = read_metrics(out)
    for step in (1, 2):
        assert_logs_match(got[step], ref_logs[step])
    student, _ = load_dit(out / "student.safetensors")
    assert not any("lora" in k for k in student.state_dict())
    (out / "metrics.jsonl").unlink()  # the sharded checkpoint of checkpointed blocks resumes on one process
    run([sys.executable, "-m", "stream_r1", "distill", "--config", str(config_path), "--out", str(out), "--resume",
         "--set", "train.steps=4"])
    got = read_metrics(out)
    assert sorted(got) == [3, 4]
    for step in (3, 4):
        assert_logs_match(got[step], ref_logs[step])
