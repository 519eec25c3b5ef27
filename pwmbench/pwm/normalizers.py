"""Running mean and variance (parallel-moments update), as PWM uses for ret_rms and rew_rms."""

from __future__ import annotations

import torch
from torch import Tensor


class RunningMeanStd:
    """Mean/variance of everything seen so far, merged batch by batch (Chan et al.); starts at 0 / 1."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4, device: str | torch.device = "cpu") -> None:
        self.mean = torch.zeros(shape, dtype=torch.float64, device=device)
        self.var = torch.ones(shape, dtype=torch.float64, device=device)
        self.count = float(epsilon)

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        x = x.detach().to(self.mean.device, torch.float64).reshape(-1, *self.mean.shape)
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var = m2 / total
        self.count = total

    def std(self, eps: float = 1e-5) -> Tensor:
        return torch.sqrt(self.var + eps)

    def normalize(self, x: Tensor, clip: float | None = 5.0) -> Tensor:
        out = (x - self.mean.to(x.dtype)) / self.std().to(x.dtype)
        return out.clamp(-clip, clip) if clip is not None else out

    def state_dict(self) -> dict:
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"].clone(), state["var"].clone(), float(state["count"])
