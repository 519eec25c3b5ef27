"""Gradient signal-to-noise of the actor's first-order gradient (an ideal criterion: docs/protocol.md#ideal-criteria).

The per-env actor losses are split into `groups` micro-batches and the actor gradient of each is taken
(the graph is kept, so the training gradient is unchanged). Two definitions, recorded under distinct names
because they answer different questions:
- `esnr_global` = ‖ḡ‖² / (mean_m ‖g_m‖² − ‖ḡ‖²): signal over noise of the whole gradient vector;
- `esnr_pwm`    = mean over parameters of E[g]² / Var[g] (PWM's per-parameter definition).
Both are scale-free, so they compare dynamics models whose losses have different magnitudes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def microbatch_gradients(per_env_loss: Tensor, params: Sequence[nn.Parameter], groups: int) -> Tensor:
    """[M, P] (float64): the gradient of each micro-batch's mean loss (the envs split into M groups; graph kept)."""
    envs = per_env_loss.shape[0]
    groups = max(2, min(groups, envs))
    grads = []
    for idx in torch.arange(envs).chunk(groups):
        g = torch.autograd.grad(per_env_loss[idx].mean(), params, retain_graph=True, allow_unused=True)
        grads.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).flatten() for gi, p in zip(g, params)]))
    return torch.stack(grads).double()


def snr_of(g: Tensor, eps: float = 1e-12) -> dict[str, float]:
    """Both ESNR definitions of micro-batch gradients g [M, P]."""
    mean = g.mean(0)
    signal = float(mean.pow(2).sum())
    noise = float(g.pow(2).sum(1).mean()) - signal
    var = g.var(0, unbiased=False)
    return {"esnr_global": signal / max(noise, eps), "esnr_pwm": float((mean.pow(2) / (var + eps)).mean())}


def gradient_snr(per_env_loss: Tensor, params: Sequence[nn.Parameter], groups: int, eps: float = 1e-12) -> dict[str, float]:
    return snr_of(microbatch_gradients(per_env_loss, params, groups), eps)
