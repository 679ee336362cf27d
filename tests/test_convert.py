"""`stream-r1 convert`: Self-Forcing .pt, original Wan and diffusers folders into checkpoints `generate` loads."""

import json

import pytest
import torch

from stream_r1.cli import main
from stream_r1.models.dit_io import load_dit


def convert(downloads, tmp_path, source, *args):
    out = tmp_path / "converted.safetensors"
    argv = ["convert", str(source), "--out", str(out), "--height", "32", "--width", "32", "--max-length", "16", *args]
    assert main(argv) == 0
    return out


def test_self_forcing_pt_becomes_a_streaming_student_that_generates(downloads, tmp_path, capsys):
    out = convert(downloads, tmp_path, downloads["self_forcing"], "--components", str(downloads["diffusers"]))
    assert "global causal attention" in capsys.readouterr().out
    model, extra = load_dit(out)
    c = model.cfg
    assert c.causal and (c.frames_per_chunk, c.local_attn_frames, c.sink_frames) == (3, -1, 0)  # as Self-Forcing
    assert extra["sampler"] == {"shift": 5.0, "denoising_timesteps": [1000.0, 750.0, 500.0, 250.0]}
    assert extra["family"] == "wan" and extra["frame_size"] == [32, 32]
    assert extra["codec"]["path"] == str((downloads["diffusers"] / "vae").resolve())
    ema = torch.load(downloads["self_forcing"], weights_only=True)["generator_ema"]
    assert all(torch.equal(model.state_dict()[k[len("model."):]], v) for k, v in ema.items())
    argv = ["generate", "--checkpoint", str(out), "--prompt", "a red fox runs through snow", "--frames", "21",
            "--device", "cpu", "--out", str(tmp_path / "video")]
    assert main(argv) == 0
    assert json.loads((tmp_path / "video" / "manifest.json").read_text())[0]["frames"] == 21


def test_wan_and_diffusers_folders_give_the_same_bidirectional_model(downloads, tmp_path):
    from_diffusers, _ = load_dit(convert(downloads, tmp_path / "a", downloads["diffusers"]))  # its own components
    path = convert(downloads, tmp_path / "b", downloads["wan_1.3b"], "--components", str(downloads["diffusers"]))
    from_wan, extra = load_dit(path)
    assert not from_wan.cfg.causal and extra["sampler"] == {"steps": 50, "guidance": 5.0, "shift": 5.0}
    a, b = from_diffusers.state_dict(), from_wan.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    critic, _ = load_dit(convert(downloads, tmp_path / "c", downloads["self_forcing"], "--which", "critic",
                                 "--components", str(downloads["diffusers"])))
    assert not critic.cfg.causal and all(torch.equal(critic.state_dict()[k], a[k]) for k in a)


def test_window_overrides_and_a_wider_sharded_teacher(downloads, tmp_path):
    out = convert(downloads, tmp_path, downloads["self_forcing"], "--components", str(downloads["diffusers"]),
                  "--local-attn-frames", "9", "--sink-frames", "3", "--which", "generator")
    c = load_dit(out)[0].cfg
    assert (c.local_attn_frames, c.sink_frames) == (9, 3)
    teacher, _ = load_dit(convert(downloads, tmp_path / "t", downloads["wan_14b"],
                                  "--components", str(downloads["diffusers"])))
    assert (teacher.cfg.dim, teacher.cfg.num_layers, teacher.cfg.num_heads) == (48, 3, 3)


@pytest.mark.parametrize("case", ["pt", "folder", "no_components", "window_on_bidirectional", "wan_safetensors"])
def test_wrong_inputs_are_one_line_errors_naming_the_fix(downloads, tmp_path, capsys, case):
    out = str(tmp_path / "x.safetensors")
    argv = {
        "pt": ["generate", "--checkpoint", str(downloads["self_forcing"]), "--prompt", "a", "--out", out],
        "folder": ["serve", "--checkpoint", str(downloads["wan_1.3b"])],
        "no_components": ["convert", str(downloads["self_forcing"]), "--out", out],
        "window_on_bidirectional": ["convert", str(downloads["diffusers"]), "--sink-frames", "3", "--out", out],
        "wan_safetensors": ["generate", "--checkpoint", str(downloads["wan_1.3b"] / "diffusion_pytorch_model"
                                                                                  ".safetensors"),
                            "--prompt", "a", "--out", out],
    }[case]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    fix = {"no_components": "--components", "window_on_bidirectional": "causal student"}.get(case, "stream-r1 convert")
    assert fix in err
