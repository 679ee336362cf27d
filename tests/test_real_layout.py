"""The real loaders on the folders a user downloads (tests/real_layout.py), then one distill step through them."""

import math

import pytest
import torch
from safetensors.torch import load_file

from .real_layout import preset_config


def test_videoreward_folders_load_through_load_videoreward(downloads):
    from stream_r1.reward.videoreward import VideoRewardSettings, load_videoreward

    settings = VideoRewardSettings.from_dict({**preset_config(downloads)["reward"], "dtype": "float32"})
    reward = load_videoreward(settings)  # Qwen2-VL base + VideoAlign LoRA merge + the non-LoRA head
    expected = torch.load(downloads["qwen2vl"].parent / "expected_reward.pt", weights_only=True)
    state = reward.raw_fn.state_dict()
    assert sorted(state) == sorted(expected)
    for k, v in expected.items():
        assert torch.allclose(state[k], v, atol=1e-6), k
    pixels = torch.rand(2, 21, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    scores = reward(pixels, ["a red fox runs through snow", "city lights at night"])
    assert all(s.shape == (2,) and bool(torch.isfinite(s).all()) for s in scores.values())


def test_one_distill_step_through_the_real_loaders(downloads, tmp_path):
    from stream_r1.distill.components import Autocast
    from stream_r1.distill.trainer import Distiller
    from stream_r1.models.umt5 import UMT5TextEncoder
    from stream_r1.models.wan_vae import WanVAECodec
    from stream_r1.reward.videoreward import VideoRewardModel

    config = preset_config(downloads)
    d = Distiller(config, tmp_path)  # wan_components + load_videoreward, no dry run
    assert isinstance(d.teacher, Autocast) and isinstance(d.text, UMT5TextEncoder)
    assert isinstance(d.codec, WanVAECodec) and isinstance(d.reweighter.reward.raw_fn, VideoRewardModel)
    t, c, g = d.teacher.cfg, d.critic.cfg, d.generator.cfg
    assert (t.dim, t.num_layers, t.num_heads) == (48, 3, 3)  # the wide, deep teacher from 2 shards
    assert (c.dim, c.num_layers, c.causal) == (g.dim, g.num_layers, False) == (32, 2, False)
    assert g.causal and (g.frames_per_chunk, g.local_attn_frames, g.sink_frames) == (3, 9, 3)
    teacher_file = {}
    for shard in sorted(downloads["wan_14b"].glob("*.safetensors")):
        teacher_file.update(load_file(str(shard)))
    own = d.teacher.module.state_dict()
    assert all(torch.equal(own[k], v.to(own[k].dtype)) for k, v in teacher_file.items())
    critic_file = load_file(str(downloads["wan_1.3b"] / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(d.critic.state_dict()[k], v) for k, v in critic_file.items())
    ema = torch.load(downloads["self_forcing"], weights_only=True)["generator_ema"]
    assert all(torch.equal(d.generator.state_dict()[k[len("model."):]], v) for k, v in ema.items())
    assert d.prompts == downloads["prompts"].read_text().split("\n")[:3]

    logs = d.train_step(0)  # step 0 updates the generator (with Stream-R1 weights) and the critic
    for key in ("loss/generator", "loss/critic", "reward/vq", "reward/mq", "reward/ta", "inter/w_mean"):
        assert math.isfinite(logs[key]), key
    assert logs["grad_norm/generator"] > 0 and logs["grad_norm/critic"] > 0
    path = d.export()
    from stream_r1.models.dit_io import load_dit

    student, extra = load_dit(path)  # what generate reads: the family and the local folders
    assert extra["family"] == "wan" and extra["codec"]["path"] == config["codec"]["path"]
    assert student.cfg.causal and extra["sampler"]["shift"] == 5.0


@pytest.mark.parametrize("key", ["teacher", "critic_init"])
def test_a_missing_download_is_a_clear_error(downloads, key):
    from stream_r1.common.weights import CheckpointError
    from stream_r1.distill.components import wan_components

    config = preset_config(downloads)
    config[key] = {"path": str(downloads["wan_14b"].parent / "nowhere")}
    with pytest.raises(CheckpointError, match="download it first"):
        wan_components(config)


def test_empty_components_hold_no_weights_until_filled(downloads):
    from stream_r1.distill.components import fill_components, wan_components

    config = preset_config(downloads)
    parts = wan_components(config, empty=True)  # the DiTs on the meta device, their files kept open
    models = {"teacher": parts.teacher.module, "critic": parts.critic, "generator": parts.generator}
    assert all(p.is_meta for m in models.values() for p in m.parameters())
    assert sorted(parts.sources) == sorted(models)
    fill_components(parts, "cpu")
    assert not parts.sources and not any(p.is_meta for m in models.values() for p in m.parameters())
    eager = wan_components(config)
    for role, model in models.items():
        ref = getattr(eager, role)
        ref = ref.module if role == "teacher" else ref
        assert model.cfg == ref.cfg
        a, b = model.state_dict(), ref.state_dict()
        assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in b), role


@pytest.mark.slow  # torchrun start-up: ~25 s on this machine
def test_two_ranks_each_fill_only_their_shard(downloads):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("fill_shards.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(downloads["wan_14b"])]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0: ok" in proc.stdout and "rank 1: ok" in proc.stdout


def _lazy_rank(rank: int, world: int, port: int, downloads: dict, out) -> None:
    """One rank of the 2-rank run below: DistributedDistiller on the real folders, networks filled shard by shard."""
    import json
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from torch.distributed.tensor import DTensor

    from stream_r1.distill.distributed import DistributedDistiller, init_cluster

    cluster = init_cluster("gloo")
    try:
        config = {**preset_config(downloads), "distributed": {"mixed_precision": "fp32"}}
        d = DistributedDistiller(config, out, cluster)
        report = {"lazy": sorted(d.lazy_roles())}
        for role in ("teacher", "critic", "generator", "ema"):
            module = getattr(d, role)
            state = (module.module if role == "teacher" else module).state_dict()
            report[role] = {"dtensor": all(isinstance(v, DTensor) for v in state.values()),
                            "local": sum(v.to_local().numel() for v in state.values()),
                            "full": sum(v.numel() for v in state.values())}
            torch.save({k: v.full_tensor() for k, v in state.items()}, out / f"{role}.pt")  # collective
        report["logs"] = d.train_step(0)
        d.export()
        if rank == 0:
            (out / "report.json").write_text(json.dumps(report))
    finally:
        cluster.close()


def test_two_ranks_build_on_meta_and_fill_their_shards_like_one_process(downloads, tmp_path):
    """DistributedDistiller on the real folders: teacher, critic, student and EMA are built on the meta device,
    sharded, and each rank reads only its shard from the files; the weights are the files', and the first step
    and the exported EMA equal a one-process run's."""
    import json
    import socket

    import torch.multiprocessing as mp

    from stream_r1.distill.trainer import Distiller
    from stream_r1.models.dit_io import load_dit

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "two"
    out.mkdir()
    mp.start_processes(_lazy_rank, args=(2, port, downloads, out), nprocs=2, start_method="spawn")
    got = json.loads((out / "report.json").read_text())
    assert got["lazy"] == ["critic", "generator", "teacher"]
    for role in ("teacher", "critic", "generator", "ema"):
        r = got[role]
        assert r["dtensor"] and r["local"] < 0.6 * r["full"], (role, r)  # about half of every network per rank

    config = {**preset_config(downloads), "distributed": {"mixed_precision": "fp32"}}
    ref = Distiller(config, tmp_path / "one")
    for role in ("teacher", "critic", "generator", "ema"):
        module = getattr(ref, role)
        want = (module.module if role == "teacher" else module).state_dict()
        have = torch.load(out / f"{role}.pt", weights_only=True)
        assert sorted(have) == sorted(want), role
        assert all(torch.equal(have[k], want[k]) for k in want), role
    teacher_file = {}
    for shard in sorted(downloads["wan_14b"].glob("*.safetensors")):
        teacher_file.update(load_file(str(shard)))
    have = torch.load(out / "teacher.pt", weights_only=True)
    assert all(torch.equal(have[k], v.to(have[k].dtype)) for k, v in teacher_file.items())

    want_logs = ref.train_step(0)
    assert got["logs"].keys() == want_logs.keys()
    for k, v in want_logs.items():
        assert got["logs"][k] == pytest.approx(v, rel=1e-4, abs=1e-7), k
    ref.export()
    a, _ = load_dit(out / "student.safetensors")
    b, _ = load_dit(tmp_path / "one" / "student.safetensors")
    for k, v in b.state_dict().items():
        assert torch.allclose(a.state_dict()[k], v, rtol=1e-4, atol=1e-6), k


def test_with_lora_only_the_teacher_is_read_lazily(downloads, tmp_path):
    """LoRA adapters must be initialised, not read: generator and critic load whole, the teacher from meta."""
    pytest.importorskip("peft")
    from stream_r1.distill.trainer import Distiller

    config = preset_config(downloads)
    config["train"] = {**config["train"], "lora": {"rank": 4, "alpha": 8, "base_dtype": "float32"}}
    d = Distiller(config, tmp_path)
    assert d.lazy_roles() == {"teacher"} and not d.sources
    teacher_file = {}
    for shard in sorted(downloads["wan_14b"].glob("*.safetensors")):
        teacher_file.update(load_file(str(shard)))
    own = d.teacher.module.state_dict()
    assert all(torch.equal(own[k], v.to(own[k].dtype)) for k, v in teacher_file.items())
    assert any("lora" in k for k in d.generator.state_dict())
    assert math.isfinite(d.train_step(0)["loss/generator"])
