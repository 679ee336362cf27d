"""The memory planner (`stream-r1 memory`): its arithmetic, its measurements and its verdict."""

import pytest
import torch

from stream_r1.distill import memory as M
from stream_r1.models.dit import DiT, DiTBlock, DiTConfig

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

PRESET = "wan2.1-1.3b-stream-r1"


def tiny_spec(**student):
    from stream_r1.models.umt5 import tiny_umt5
    from stream_r1.models.wan_vae import WanVAECodec, tiny_wan_vae

    base = dict(in_channels=16, out_channels=16, dim=32, ffn_dim=64, num_heads=2, num_layers=2, text_dim=16,
                freq_dim=32, patch_size=(1, 2, 2))
    teacher = DiT(DiTConfig(**{**base, "num_layers": 3, "dim": 48, "ffn_dim": 96})).to(torch.bfloat16)
    critic = DiT(DiTConfig(**base))
    generator = DiT(DiTConfig(**{**base, "causal": True, "frames_per_chunk": 3, "local_attn_frames": 9,
                                 "sink_frames": 3, **student}))
    text = tiny_umt5(["a", "red", "fox"], d_model=16)
    codec = WanVAECodec(tiny_wan_vae(z_dim=16))
    return M.spec_from_modules(teacher, critic, generator, text, codec), (teacher, critic, generator, text, codec)


def settings(**kw):
    return M.RunSettings(**{"micro_batch": 1, "batch_size": 4, "pixel_frames": 81, "height": 32, "width": 48,
                            "reweight": False, **kw})


def test_parameter_bytes_are_the_sum_over_the_model_parameters():
    spec, (teacher, critic, generator, text, codec) = tiny_spec()
    nbytes = lambda m: sum(p.numel() * p.element_size() for p in m.parameters())  # noqa: E731
    for gpus in (1, 4):
        terms = {t.name: t.gpu for t in M.build_plan(spec, settings(), gpus).terms}
        assert terms["student"] * gpus == nbytes(generator) == 4 * sum(p.numel() for p in generator.parameters())
        assert terms["student grads + AdamW"] * gpus == 3 * nbytes(generator)
        assert terms["EMA"] * gpus == nbytes(generator)
        assert terms["critic"] * gpus == nbytes(critic)
        assert terms["teacher"] * gpus == nbytes(teacher) == 2 * sum(p.numel() for p in teacher.parameters())
        assert terms["text encoder"] * gpus == nbytes(text)
        assert terms["VAE"] == nbytes(codec)  # replicated, not sharded


def test_paper_parameter_counts_match_the_real_architectures():
    from stream_r1.common.config import load_config

    spec = M.paper_model_spec(load_config(PRESET))
    assert spec.params["student"] == spec.params["critic"] == 1_418_996_800
    assert spec.params["teacher"] == 14_288_491_584
    assert spec.params["text"] == 5_680_910_336
    assert spec.params["reward"] == 2_208_985_600 + 3 * 1536  # Qwen2-VL-2B + the 3-output reward head
    assert spec.params["vae"] == 126_892_531


def test_saved_bytes_on_fake_tensors_equal_those_on_real_tensors():
    cfg = DiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=1, text_dim=32)
    block = DiTBlock(cfg)
    x = torch.randn(1, 40, 32, requires_grad=True)
    args = (torch.randn(1, 1, 6, 32), torch.randn(1, 8, 32), torch.randn(40, 8, dtype=torch.complex64), None, None)
    with M.SavedBytes(exclude=block.parameters()) as real:
        block(x, *args)
    m = M.measure_block(cfg, 1, 40, 8, 0, 20, M.Precision())
    assert real.total > 0 and m.saved == real.total
    assert m.block_input == x.numel() * 4


def test_live_bytes_tracks_frees_and_the_peak():
    with M.LiveBytes() as live:
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2  # 8000 live
        del a
        c = b[:10]  # a view: no new storage
        d = torch.ones(500)  # 6000 live
    assert live.peak == 8000 and live.live == 6000
    del b, c, d
    assert live.live == 0


def test_lora_adapter_count_matches_peft():
    from peft import LoraConfig, get_peft_model

    cfg = DiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, text_dim=16)
    model = get_peft_model(DiT(cfg), LoraConfig(r=4, lora_alpha=4, target_modules=M.LORA_TARGETS))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert M.lora_params(cfg, {"rank": 4}) == trainable


def test_checkpointing_shrinks_activations_and_an_overflow_names_the_biggest_term():
    spec, _ = tiny_spec()
    plain = M.build_plan(spec, settings(), 1, gpu_memory=1e-3)
    assert not plain.fits
    big = plain.biggest()
    present = [t for t in plain.terms if not t.phases or plain.peak_phase in t.phases]
    assert big.gpu == max(t.gpu for t in present)
    assert big.name in plain.verdict() and "does not fit" in plain.verdict()
    ckpt = M.build_plan(spec, settings(ac="full"), 1)
    act = lambda p, n: next(t.gpu for t in p.terms if t.name == n)  # noqa: E731
    assert act(ckpt, "activations: rollout") < act(plain, "activations: rollout")
    assert act(ckpt, "activations: critic flow loss") < act(plain, "activations: critic flow loss")
    assert M.build_plan(spec, settings(), 1, gpu_memory=1000).fits


def test_activations_dominate_a_long_video_and_the_verdict_says_checkpointing():
    spec, _ = tiny_spec(num_layers=64)
    plan = M.build_plan(spec, settings(), 1, gpu_memory=0.01)
    assert plan.biggest().name.startswith("activations")
    assert "activation_checkpointing: full" in plan.verdict()


def test_context_frames_follow_the_window_rule():
    cfg = DiTConfig(causal=True, frames_per_chunk=3, local_attn_frames=9, sink_frames=3)
    assert [M.context_frames(cfg, k) for k in range(7)] == [0, 3, 6, 6, 6, 6, 6]


def test_cli_memory_runs_on_the_dry_run_networks(capsys):
    from stream_r1.cli import main

    assert main(["memory", "--config", PRESET, "--dry-run", "--gpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "| student |" in out and "peak per GPU" in out and "fits" in out and "smallest number" in out


@pytest.mark.slow
def test_paper_preset_fits_on_8_gpus_of_80_gb():
    from stream_r1.common.config import load_config

    config = load_config(PRESET)
    plan = M.plan(config, 8)
    assert plan.fits, M.format_plan(plan)
    config["train"]["activation_checkpointing"] = "none"
    assert not M.plan(config, 8).fits


def test_gpu_check_runs_in_its_tiny_cpu_mode(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "benchmarks" / "gpu_check.py"
    subprocess.run([sys.executable, str(script), "--device", "cpu", "--tiny", "--out", str(tmp_path)], check=True,
                   capture_output=True, timeout=600)
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["streaming"]["frames_per_second"] > 0 and result["training_step"]["measured_peak_gb"] > 0
