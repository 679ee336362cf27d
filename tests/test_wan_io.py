"""Wan 2.1 checkpoints <-> our DiT (models/wan_io.py), verified against diffusers' WanTransformer3DModel."""

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import WanTransformer3DModel  # noqa: E402

from stream_r1.common.weights import CheckpointError  # noqa: E402
from stream_r1.models.wan_io import diffusers_to_wan, dit_from_diffusers, load_wan_dit, save_wan_dit, wan_state_dict


def tiny_diffusers_wan(seed: int = 0) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=32, ffn_dim=48, num_layers=2, cross_attn_norm=True, eps=1e-6, rope_max_seq_len=64)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # move every weight off its init so that each one matters
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model.eval()


def inputs(seed: int = 2):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, 3, 8, 6, generator=gen), torch.tensor([999.0, 321.5]),
            torch.randn(2, 7, 16, generator=gen))


def test_converted_diffusers_wan_gives_the_same_output():
    ref = tiny_diffusers_wan()
    ours = dit_from_diffusers(ref).eval()
    assert not ours.cfg.causal and ours.cfg.num_heads == 2 and ours.cfg.patch_size == (1, 2, 2)
    x, t, ctx = inputs()
    with torch.no_grad():
        expected = ref(x, t, ctx).sample
        got = ours(x, t, ctx)
    assert expected.abs().max() > 0.5  # a real signal, not zeros
    assert (expected - got).abs().max().item() <= 1e-4


def test_save_in_diffusers_layout_loads_back_in_diffusers(tmp_path):
    ref = tiny_diffusers_wan()
    ours = dit_from_diffusers(ref)
    save_wan_dit(ours, tmp_path / "diffusers", layout="diffusers")
    back = WanTransformer3DModel.from_pretrained(str(tmp_path / "diffusers"), local_files_only=True).eval()
    x, t, ctx = inputs()
    with torch.no_grad():
        assert torch.equal(back(x, t, ctx).sample, ref(x, t, ctx).sample)
    for layout in ("wan", "diffusers"):
        save_wan_dit(ours, tmp_path / layout, layout=layout)
        again = load_wan_dit(tmp_path / layout)
        a, b = again.state_dict(), ours.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_self_forcing_checkpoint_with_model_prefix_and_subdicts(tmp_path):
    ours = dit_from_diffusers(tiny_diffusers_wan())
    state = wan_state_dict(ours)
    ema = {f"model.{k}": v + 1 for k, v in state.items()}  # self-forcing's wrapper holds the model as .model
    gen = {f"model.{k}": v for k, v in state.items()}
    path = tmp_path / "self_forcing.pt"
    torch.save({"generator": gen, "generator_ema": ema, "critic": gen}, path)
    (tmp_path / "config.json").write_text('{"num_heads": 2}')
    student = load_wan_dit(path, causal=True, frames_per_chunk=1, local_attn_frames=3, sink_frames=1)
    assert student.cfg.causal and student.cfg.local_attn_frames == 3
    assert torch.equal(student.state_dict()["blocks.0.self_attn.q.weight"], state["blocks.0.self_attn.q.weight"] + 1)
    plain = load_wan_dit(path, which="generator")
    assert torch.equal(plain.state_dict()["head.head.weight"], state["head.head.weight"])
    with pytest.raises(CheckpointError, match="no sub-dict 'model_ema'.*generator_ema"):
        load_wan_dit(path, which="model_ema")


def test_missing_keys_and_wrong_shapes_are_listed(tmp_path):
    state = diffusers_to_wan(tiny_diffusers_wan().state_dict())
    del state["blocks.1.cross_attn.o.bias"]
    state["blocks.0.ffn.2.bias"] = torch.zeros(5)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as err:
        load_wan_dit(tmp_path / "broken.pth", num_heads=2)
    assert "blocks.1.cross_attn.o.bias" in str(err.value) and "blocks.0.ffn.2.bias" in str(err.value)
    foreign = {"blocks.0.attn1.add_k_proj.weight": torch.zeros(2, 2), **tiny_diffusers_wan().state_dict()}
    with pytest.raises(CheckpointError, match="add_k_proj"):
        diffusers_to_wan(foreign)


def test_toy_extensions_cannot_be_saved_as_wan():
    from stream_r1.models.dit import DiT

    from .conftest import tiny_config

    with pytest.raises(CheckpointError, match="toy extensions"):
        wan_state_dict(DiT(tiny_config()))
