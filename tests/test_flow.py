"""Flow-matching schedule: hand values of the shift, noising round trip, sampler grids."""

import torch

from stream_r1.diffusion import flow
from stream_r1.diffusion.sampler import denoising_sigmas
from stream_r1.distill.pretrain import shift_at


def test_shift_hand_values():
    # σ' = sσ / (1 + (s − 1)σ): s = 3, σ = 0.5 -> 1.5 / 2 = 0.75
    assert flow.shift_sigma(0.5, 3.0).item() == 0.75
    assert flow.shift_sigma(0.0, 5.0).item() == 0.0 and flow.shift_sigma(1.0, 5.0).item() == 1.0
    assert torch.allclose(flow.shift_sigma(torch.tensor([0.3]), 1.0), torch.tensor([0.3]))


def test_noising_and_x0_round_trip():
    x, eps = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 3, 4, 8, 8)
    sigma = torch.tensor([0.2, 0.9])
    x_t = flow.add_noise(x, eps, sigma)
    assert torch.allclose(flow.x0_from_flow(x_t, flow.flow_target(x, eps), sigma), x, atol=1e-6)
    per_frame = torch.tensor([[0.1, 0.2, 0.3, 0.4]]).expand(2, 4)
    assert flow.add_noise(x, eps, per_frame).shape == x.shape


def test_sampler_grids():
    s = flow.sampling_sigmas(4, 3.0)
    assert s[0] == 1.0 and s[-1] == 0.0 and (s[1:] < s[:-1]).all()
    student = denoising_sigmas([1000, 750, 500, 250], 3.0)
    assert torch.allclose(student, torch.tensor([1.0, 0.9, 0.75, 0.5]))


def test_train_shift_schedule():
    tcfg = {"shift": 3.0, "shift_schedule": [[1500, 1.0]]}
    assert shift_at(tcfg, 0) == 3.0 and shift_at(tcfg, 1499) == 3.0 and shift_at(tcfg, 1500) == 1.0
    assert shift_at({"shift": 2.0}, 10) == 2.0
