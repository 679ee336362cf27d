"""Checkpoint I/O: round trip, clear errors for foreign or corrupt files, atomic writes, resume."""

import copy

import pytest
import torch
from safetensors.torch import save_file

from stream_r1.common.config import load_config
from stream_r1.common.weights import CheckpointError
from stream_r1.distill.pretrain import pretrain
from stream_r1.models.dit_io import load_dit, save_dit
from stream_r1.runstate.train_state import latest_checkpoint

from .conftest import randomized, tiny_config


def test_round_trip(tmp_path):
    from stream_r1.models.dit import DiT

    model = randomized(DiT(tiny_config()))
    save_dit(tmp_path / "m.safetensors", model, {"note": 1})
    loaded, extra = load_dit(tmp_path / "m.safetensors")
    assert extra == {"note": 1}
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    causal, _ = load_dit(tmp_path / "m.safetensors", causal=True)
    assert causal.cfg.causal and not loaded.cfg.causal


def test_foreign_corrupt_and_missing_files(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a stream-r1 DiT"):
        load_dit(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_dit(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="short names"):
        load_dit(tmp_path / "nope.safetensors")


def test_truncated_file_is_refused(tmp_path):
    from stream_r1.models.dit import DiT

    save_dit(tmp_path / "m.safetensors", DiT(tiny_config()))
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_dit(tmp_path / "m.safetensors")


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    from stream_r1.common import weights as checkpoint
    from stream_r1.models.dit import DiT

    path = tmp_path / "m.safetensors"
    save_dit(path, DiT(tiny_config()))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", boom)
    with pytest.raises(OSError):
        save_dit(path, randomized(DiT(tiny_config())))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind


def tiny_pretrain_config(steps: int) -> dict:
    cfg = copy.deepcopy(load_config("toy-teacher"))
    cfg["model"].update(dim=32, ffn_dim=64, num_heads=2, num_layers=1, conv_stem_channels=4, conv_head_channels=4)
    cfg["train"].update(steps=steps, batch_size=2, checkpoint_every=2, log_every=1, warmup_steps=2)
    return cfg


def test_pretrain_resume_is_bitwise_identical(tmp_path):
    straight = pretrain(tiny_pretrain_config(4), tmp_path / "a")
    pretrain(tiny_pretrain_config(2), tmp_path / "b")
    assert latest_checkpoint(tmp_path / "b").name == "step_0000002"
    resumed = pretrain(tiny_pretrain_config(4), tmp_path / "b", resume=True)
    a, _ = load_dit(straight)
    b, _ = load_dit(resumed)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), k


def test_pretrain_trains_only_the_named_parts(tmp_path):
    first = pretrain(tiny_pretrain_config(2), tmp_path / "a")
    cfg = tiny_pretrain_config(2)
    cfg["model"]["refine_channels"] = 4
    cfg["train"].update(init_from=str(first), trainable=["refine."], lr=1e-2)
    grown, _ = load_dit(pretrain(cfg, tmp_path / "b"))
    source, _ = load_dit(first)
    for k, v in source.state_dict().items():
        assert torch.equal(grown.state_dict()[k], v), f"{k} is frozen but changed"
    assert grown.refine.net[-1].weight.abs().max() > 0  # the refiner did learn
    cfg["train"]["trainable"] = ["nothing."]
    with pytest.raises(ValueError, match="matches no parameter"):
        pretrain(cfg, tmp_path / "c")


def test_layers_keep_the_named_blocks_in_order(tmp_path):
    """`layers` builds a smaller DiT from the named blocks; all of them in order is the file's own model."""
    from stream_r1.models.dit import DiT

    torch.manual_seed(0)
    model = randomized(DiT(tiny_config(num_layers=3))).eval()
    save_dit(tmp_path / "m.safetensors", model)
    small, _ = load_dit(tmp_path / "m.safetensors", causal=True, layers=[2, 0])
    assert small.cfg.num_layers == 2 and small.cfg.causal
    full = model.state_dict()
    for k, v in small.state_dict().items():
        if k.startswith("blocks."):
            new, rest = k[len("blocks."):].split(".", 1)
            k = f"blocks.{[2, 0][int(new)]}.{rest}"
        assert torch.equal(v, full[k]), k
    same, _ = load_dit(tmp_path / "m.safetensors", layers=[0, 1, 2])
    x, t, ctx = torch.randn(1, 3, 3, 16, 16), torch.tensor([500.0]), torch.randn(1, 4, 32)
    with torch.no_grad():
        assert torch.equal(same.eval()(x, t, ctx), model(x, t, ctx))
        assert not torch.allclose(load_dit(tmp_path / "m.safetensors", layers=[0, 2])[0].eval()(x, t, ctx),
                                  model(x, t, ctx))
    for bad in ([0, 3], [1, 1], []):
        with pytest.raises(CheckpointError, match="distinct block indices in 0..2"):
            load_dit(tmp_path / "m.safetensors", layers=bad)
