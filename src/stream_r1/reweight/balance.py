"""Adaptive balancing of the axes (docs/method.md §3.6): the public code's global penalty, or a per-axis
balancer of λ_a."""

from __future__ import annotations

from collections import deque

import torch


class AxisBalancer:
    """Balances the axes from a window of per-optimizer-step mean scores (method.md §3.6).

    One entry per optimizer step: the step's mean of each axis over all its rollouts (every micro-batch,
    every rank), so the window measures the student's progress, not prompt-to-prompt noise.
    - "global_penalty" (the public code): r ← r − λ·std_a(improvement_a); rescales every weight of
      the step alike and does not move weight between axes.
    - "per_axis": λ_a ∝ exp(−rate·shrink(z_a)), Σ λ_a = 1, z_a = improvement_a / its standard error and
      shrink(z) = sign(z)·max(|z| − threshold, 0): an axis loses weight only as far as its improvement
      stands out of the window's own noise. improvement_a = mean of the newer half − mean of the older half.
    """

    def __init__(self, axes: list[str], mode: str, window: int = 50, penalty: float = 0.5, rate: float = 0.3,
                 threshold: float = 3.0):
        self.axes, self.mode, self.penalty, self.rate, self.threshold = list(axes), mode, penalty, rate, threshold
        self.history: deque[torch.Tensor] = deque(maxlen=window)

    def improvement(self) -> torch.Tensor:
        """Per-axis improvement over the window (zeros until it holds 4 steps)."""
        if len(self.history) < 4:
            return torch.zeros(len(self.axes))
        h = torch.stack(list(self.history))
        half = len(h) // 2
        return h[half:].mean(0) - h[:half].mean(0)

    def improvement_z(self) -> torch.Tensor:
        """Per-axis improvement in standard errors (Welch-free two-sample t with the pooled within-half
        variance); zeros until the window holds 8 steps, so the variance has at least 6 degrees of freedom."""
        if len(self.history) < 8:
            return torch.zeros(len(self.axes))
        h = torch.stack(list(self.history)).double()
        old, new = h[: len(h) // 2], h[len(h) // 2 :]
        spread = ((old - old.mean(0)) ** 2).sum(0) + ((new - new.mean(0)) ** 2).sum(0)
        se = (spread / (len(h) - 2) * (1 / len(old) + 1 / len(new))).sqrt()
        return ((new.mean(0) - old.mean(0)) / se.clamp_min(1e-12)).float()

    def update(self, scores: dict[str, torch.Tensor]) -> None:
        """Append one optimizer step's entry: each axis' mean over the step's (valid) rollouts."""
        means = torch.stack([scores[a].detach().float().nanmean() for a in self.axes]).cpu()
        if torch.isfinite(means).all():
            self.append(means)

    def append(self, means: torch.Tensor) -> None:
        self.history.append(means)

    def window(self) -> list[torch.Tensor]:
        """The per-step axis means the balancer holds, oldest first."""
        return list(self.history)

    def state_dict(self) -> dict:
        """The window of per-step axis means, JSON-ready, so a resumed run balances exactly as before."""
        return {"axes": self.axes, "history": [h.tolist() for h in self.window()]}

    def load_state_dict(self, state: dict) -> None:
        if state["axes"] != self.axes:
            raise ValueError(f"balancer state is for axes {state['axes']}, this run balances {self.axes}")
        self.history.clear()
        self.history.extend(torch.tensor(h, dtype=torch.float32) for h in state["history"])

    def lambdas(self) -> dict[str, float]:
        k = len(self.axes)
        if self.mode != "per_axis":
            return {a: 1.0 / k for a in self.axes}
        z = self.improvement_z()
        shrunk = z.sign() * (z.abs() - self.threshold).clamp_min(0)
        lam = torch.softmax(-self.rate * shrunk, dim=0)
        return {a: float(v) for a, v in zip(self.axes, lam, strict=True)}

    def global_penalty(self) -> float:
        if self.mode != "global_penalty":
            return 0.0
        imp = self.improvement()
        return float(self.penalty * imp.std()) if len(imp) > 1 else 0.0
