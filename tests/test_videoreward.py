"""VideoReward at paper scale (reward/videoreward.py, reward/qwen2vl_video.py) with a tiny random Qwen2-VL."""

import importlib
import sys
import types

import pytest
import torch

pytest.importorskip("transformers")

from stream_r1.reward.base import AXES, RewardModel  # noqa: E402
from stream_r1.reward.qwen2vl_video import (
    CLIP_STD,
    pad_time,
    patch_rows_to_grid,
    patchify,
    preprocess_video,
    smart_resize,
    unpatchify,
)
from stream_r1.reward.videoreward import (
    VideoRewardSettings,
    load_prompt_template,
    load_state_into,
    read_videoreward_state,
    remap_official_keys,
    tiny_videoreward,
)

from .real_layout import hub_names  # noqa: E402

PROMPTS = ["a red fox runs through snow", "a paper boat"]


@pytest.fixture
def qwen_video_module(monkeypatch):
    """transformers' Qwen2-VL video processor module.

    It imports torchvision at its top. PyPI only has CUDA builds of torchvision, which cannot load beside the
    CPU torch, so where torchvision is missing the module is imported with an empty stand-in for
    `torchvision.transforms.v2.functional`; the pieces the test calls (patchify, smart_resize, the CLIP
    constants) are pure torch/python and never touch it.
    """
    import transformers.video_processing_utils  # noqa: F401  (settles its torchvision check before any stand-in)

    name = "transformers.models.qwen2_vl.video_processing_qwen2_vl"
    try:
        import torchvision  # noqa: F401

        yield importlib.import_module(name), True
        return
    except Exception:  # noqa: BLE001 - missing or unloadable torchvision: use the stand-in
        pass
    fn = types.ModuleType("torchvision.transforms.v2.functional")
    fn.InterpolationMode = type("InterpolationMode", (), {"BICUBIC": "bicubic"})
    tv, tr, v2 = (types.ModuleType(n) for n in ("torchvision", "torchvision.transforms", "torchvision.transforms.v2"))
    tv.transforms, tr.v2, v2.functional = tr, v2, fn
    mods = {"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.v2": v2,
            "torchvision.transforms.v2.functional": fn}
    for key, mod in mods.items():
        monkeypatch.setitem(sys.modules, key, mod)
    monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module(name)
    yield module, False
    sys.modules.pop(name, None)  # leave no module behind that holds the stand-in
    vars(sys.modules["transformers.models.qwen2_vl"]).pop("video_processing_qwen2_vl", None)


def test_preprocessing_matches_transformers_video_processor(qwen_video_module):
    module, full = qwen_video_module
    proc = module.Qwen2VLVideoProcessor
    frames = torch.rand(5, 3, 56, 84, generator=torch.Generator().manual_seed(0))  # odd count: padded
    ours, grid = preprocess_video(frames[None], min_pixels=28 * 28, max_pixels=56 * 84)
    mean = torch.tensor(proc.image_mean).view(1, 1, 3, 1, 1)
    std = torch.tensor(proc.image_std).view(1, 1, 3, 1, 1)
    normalised = (frames[None] * 255 * (1 / 255) - mean) / std
    ref, gt, gh, gw = proc.patchify(None, normalised, patch_size=proc.patch_size, merge_size=proc.merge_size,
                                    temporal_patch_size=proc.temporal_patch_size)
    assert grid == (gt, gh, gw) == (3, 4, 6) and ref.shape == ours.shape == (1, 72, 1176)
    assert (ours - ref).abs().max().item() <= 1e-5
    for h, w, lo, hi in [(480, 832, 128 * 28 * 28, 448 * 448), (32, 48, 128 * 28 * 28, 768 * 28 * 28),
                         (61, 250, 56 * 56, 28 * 28 * 1280), (1000, 70, 56 * 56, 200704)]:
        assert smart_resize(h, w, 28, lo, hi) == module.smart_resize(h, w, 28, lo, hi)
    if full:  # real torchvision: the whole processor, resize included (measured: 1.7e-6, docs/method.md §5)
        for lo, hi, size in [(28 * 28 * 4, 70 * 70, (56, 84)), (28 * 28 * 4, 56 * 56, (28, 56)),
                             (28 * 28 * 12, 28 * 28 * 12, (84, 140))]:  # kept, shrunk, enlarged
            assert smart_resize(56, 84, 28, lo, hi) == size
            out = proc()(videos=[frames * 255], size={"shortest_edge": lo, "longest_edge": hi},
                         return_tensors="pt", cap_pixels_per_frame=False)
            mine, _ = preprocess_video(frames[None], lo, hi)
            assert (mine[0] - out["pixel_values_videos"]).abs().max().item() <= 1e-5


def test_planted_gradient_lands_in_its_pixels_cell():
    """Patch rows come in 2×2 merge-window order; reading them as raster order (the public code) misplaces them."""
    t, c, y, x = 3, 1, 30, 61
    planted = torch.zeros(1, 4, 3, 56, 84)
    planted[0, t, c, y, x] = 1.0
    rows, grid = patchify(planted)
    assert torch.equal(unpatchify(rows, grid), planted)
    cells = patch_rows_to_grid(rows.norm(dim=-1), grid)[0]
    assert cells.nonzero().tolist() == [[t // 2, y // 14, x // 14]]
    raster = rows.norm(dim=-1).reshape(grid)
    assert raster.nonzero().tolist() != [[t // 2, y // 14, x // 14]]
    # the same through autograd: a gradient on that pixel's patch entry flows back to that pixel only
    pixels = torch.rand(1, 4, 3, 56, 84, requires_grad=True)
    ours, _ = preprocess_video(pixels, min_pixels=28 * 28, max_pixels=56 * 84)
    (ours * rows).sum().backward()
    assert pixels.grad.nonzero().tolist() == [[0, t, c, y, x]]
    assert pixels.grad[0, t, c, y, x].item() == pytest.approx(1 / CLIP_STD[c], rel=1e-6)


def test_odd_frame_counts_are_padded_with_the_last_frame():
    frames = torch.rand(1, 3, 3, 28, 28)
    padded = pad_time(frames)
    assert padded.shape[1] == 4 and torch.equal(padded[:, 3], frames[:, 2])


@pytest.fixture(scope="module")
def reward():
    settings = VideoRewardSettings(fps=None, min_pixels=28 * 28 * 4, max_pixels=56 * 56)
    return tiny_videoreward(settings)


def test_reward_protocol_scores_every_sample_differentiably(reward):
    assert isinstance(reward, RewardModel)
    pixels = torch.rand(2, 5, 3, 32, 48, generator=torch.Generator().manual_seed(1)).requires_grad_()
    scores = reward(pixels, PROMPTS)
    assert set(scores) == set(AXES) and all(scores[a].shape == (2,) for a in AXES)
    raw = reward.raw_fn(pixels, PROMPTS)
    for i, a in enumerate(AXES):
        assert torch.allclose(scores[a], (raw[a] - reward.z_mean[i]) / reward.z_std[i])
        (grad,) = torch.autograd.grad(scores[a].sum(), pixels, retain_graph=True)
        assert (grad.flatten(1).abs().sum(1) > 0).all()  # every sample of the batch is scored
    alone = reward(pixels[1:].detach(), PROMPTS[1:])
    assert all(torch.allclose(alone[a], scores[a][1:], atol=1e-5) for a in AXES)  # padding does not leak
    with pytest.raises(ValueError, match="\\[-1, 1\\]"):
        reward(pixels.detach() * 2 - 1, PROMPTS)


def to_official_layout(state: dict) -> dict:
    """This module's names -> VideoAlign's (transformers 4.45) names, with the LM head it also saved."""
    return {**hub_names(state), "lm_head.weight": torch.zeros(3, 3)}


def test_official_layout_checkpoint_loads_through_the_remap(reward, tmp_path):
    model = reward.raw_fn
    official = to_official_layout(model.state_dict())
    assert "visual.patch_embed.proj.weight" in official and "model.layers.0.mlp.up_proj.weight" in official
    torch.save(official, tmp_path / "model.pth")
    other = tiny_videoreward(model.s, seed=7)
    pixels = torch.rand(1, 4, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    before = other(pixels, PROMPTS[:1])["ta"]
    load_state_into(other.raw_fn, read_videoreward_state(tmp_path / "model.pth"))
    after, expected = other(pixels, PROMPTS[:1])["ta"], reward(pixels, PROMPTS[:1])["ta"]
    assert not torch.allclose(before, expected) and torch.allclose(after, expected, atol=1e-6)
    broken = {k: v for k, v in read_videoreward_state(tmp_path / "model.pth").items() if k != "rm_head.weight"}
    with pytest.raises(Exception, match="rm_head.weight"):
        load_state_into(other.raw_fn, broken)


def test_lora_pairs_merge_into_their_base_weight():
    w, a, b = torch.randn(4, 3), torch.randn(2, 3), torch.randn(4, 2)
    state = {"base_model.model.model.layers.0.mlp.up_proj.base_layer.weight": w,
             "base_model.model.model.layers.0.mlp.up_proj.lora_A.default.weight": a,
             "base_model.model.model.layers.0.mlp.up_proj.lora_B.default.weight": b,
             "base_model.model.visual.merger.mlp.0.weight": torch.ones(1)}
    out = remap_official_keys(state, lora_scale=2.0)
    assert sorted(out) == ["model.language_model.layers.0.mlp.up_proj.weight", "model.visual.merger.mlp.0.weight"]
    assert torch.allclose(out["model.language_model.layers.0.mlp.up_proj.weight"], w + 2.0 * b @ a)


def test_prompt_template_is_parsed_not_executed(tmp_path):
    src = tmp_path / "prompt_template.py"
    src.write_text('import sys\nsys.exit(3)\nDETAILED_PROMPT_WITH_SPECIAL_TOKEN = """\nRate "{text_prompt}": '
                   '<|VQ_reward|> <|MQ_reward|> <|TA_reward|>\n"""\n')
    assert load_prompt_template(src).strip().startswith('Rate "{text_prompt}"')
    (tmp_path / "other.py").write_text('SIMPLE = "{text_prompt}"\n')
    with pytest.raises(ValueError, match="DETAILED_PROMPT_WITH_SPECIAL_TOKEN"):
        load_prompt_template(tmp_path / "other.py")
    (tmp_path / "t.txt").write_text("{text_prompt} <|VQ_reward|>")
    with pytest.raises(ValueError, match="MQ_reward"):
        load_prompt_template(tmp_path / "t.txt")


def saliency_and_recomputes(checkpointing: bool) -> tuple[torch.Tensor, int, int]:
    """‖∂R/∂v‖'s raw gradient for all three axes, the layer forwards in the forward and during the backward."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    settings = VideoRewardSettings(fps=None, min_pixels=28 * 28 * 4, max_pixels=56 * 56,
                                   gradient_checkpointing=checkpointing)
    reward = tiny_videoreward(settings)
    calls = [0]
    layers = [m for m in reward.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert len(layers) == 2  # one vision block, one decoder layer
    for m in layers:
        m.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    pixels = torch.rand(2, 5, 3, 32, 48, generator=torch.Generator().manual_seed(1)).requires_grad_()
    scores = reward(pixels, PROMPTS)
    forward = calls[0]
    (grad,) = torch.autograd.grad(sum(scores[a].sum() for a in AXES), pixels)
    return grad, forward, calls[0] - forward


def test_reward_gradient_checkpointing_really_recomputes_and_keeps_saliency():
    """The reward runs in eval(); its layers are still checkpointed: re-run during the saliency backward."""
    plain, plain_fwd, plain_recomputed = saliency_and_recomputes(False)
    grad, fwd, recomputed = saliency_and_recomputes(True)
    assert plain_recomputed == 0 and recomputed == fwd == plain_fwd == 2
    assert torch.equal(grad, plain) and grad.abs().sum() > 0
