"""Model quality on held-out real data, measured the same way for every dynamics model (W6 item 5).

Returns alone cannot say whether a world model is any good: at small budgets an MLP's rollout can be worse than
predicting "no change" while flow's residual form is near-identity for free (reference/fidelity-audit.md). So at
every evaluation the episodes the deterministic actor runs in the real env are recorded; they never enter the
replay buffer (nor the offline dataset), so the world model never trained on them. From them `diagnostics_windows`
(H+1)-step windows are drawn (never across an episode's end), normalised exactly as training normalises, and:

    z_t = enc(o_t)                                             (teacher latents of the real observations)
    model_error_1        = mean_{t<H, b} MSE(next(z_t, a_t), z_{t+1})         teacher-forced one step
    model_error_copy     = mean_{t<H, b} MSE(z_t, z_{t+1})                     "no change" at one step
    ẑ_0 = z_0, ẑ_{t+1} = next(ẑ_t, a_t)                        (open loop)
    model_error_H        = mean_b MSE(ẑ_H, z_H)                                the rollout's error at step H
    model_error_copy_H   = mean_b MSE(z_0, z_H)                                "no change" over H steps
    model_reward_error_H = mean_{t<H, b} (R(ẑ_t, a_t) − r_t)²                  on the open-loop rollout
    model_reward_error_mean_H = mean_{t<H, b} (r̄ − r_t)²                        a constant: the windows' mean reward
    model_error_ratio_copy   = model_error_1 / model_error_copy                > 1: worse than no change
    model_error_ratio_copy_H = model_error_H / model_error_copy_H
    model_reward_ratio_mean_H = model_reward_error_H / model_reward_error_mean_H   > 1: worse than a constant

The trivial predictors are the yardsticks of the model-quality gate (docs/protocol.md#the-model-quality-gate): a
world model that predicts worse than "no change", or rewards worse than the best constant (r̄ is taken from the
held-out rewards themselves, so no constant predictor does better), has not learned the dynamics its policy
is trained on, and a verdict between such models says nothing about the dynamics models.

MSE is the mean over latent dimensions (the MLP's step loss). `model_windows` says how many windows the figures
average; when the episodes are shorter than H+1 steps there are none and only `model_windows` = 0 is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pwmbench.nn.world_model import WorldModel

__all__ = [
    "FINAL_COLUMNS", "METRICS", "EpisodeRecord", "EpisodeRecorder", "diagnose", "final_model_quality", "model_quality",
    "sample_windows", "window_generator",
]  # fmt: skip

METRICS = (
    "model_error_1", "model_error_copy", "model_error_ratio_copy",
    "model_error_H", "model_error_copy_H", "model_error_ratio_copy_H",
    "model_reward_error_H", "model_reward_error_mean_H", "model_reward_ratio_mean_H", "model_windows",
)  # fmt: skip


@dataclass
class EpisodeRecord:
    """Each env copy's first episode of an evaluation, time-major: obs `[T+1, n, D]`, act `[T, n, A]`, rew `[T, n]`;
    `lengths[b]` transitions of copy b belong to its first episode (obs[lengths[b]] is its final observation)."""

    obs: Tensor
    act: Tensor
    rew: Tensor
    lengths: Tensor


class EpisodeRecorder:
    """Collects what an evaluation loop sees. `add` takes the obs *before* any reset (`info["obs_before_reset"]`),
    so a finished episode keeps its true final observation, and the `running` mask of copies still in their
    first episode at this step; later steps of a copy (its next episodes) are recorded but never windowed."""

    def __init__(self, first_obs: Tensor) -> None:
        self._obs, self._act, self._rew = [first_obs.detach().cpu().float()], [], []
        self._lengths = torch.zeros(first_obs.shape[0], dtype=torch.long)

    def add(self, action: Tensor, reward: Tensor, final_obs: Tensor, running: Tensor) -> None:
        self._act.append(action.detach().cpu().float())
        self._rew.append(reward.detach().cpu().float().reshape(-1))
        self._obs.append(final_obs.detach().cpu().float())
        self._lengths += running.detach().cpu().long()

    def finish(self) -> EpisodeRecord:
        n = self._lengths.shape[0]
        act = torch.stack(self._act) if self._act else torch.zeros(0, n, 0)
        rew = torch.stack(self._rew) if self._rew else torch.zeros(0, n)
        return EpisodeRecord(torch.stack(self._obs), act, rew, self._lengths.clone())


def window_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from (seed, epoch[, task id]): the same windows for every dynamics variant."""
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + int(k)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


def sample_windows(
    record: EpisodeRecord, horizon: int, count: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor] | None:
    """Up to `count` distinct (H+1)-step windows inside the recorded episodes, as time-major (obs, act, rew);
    all of them when there are no more than `count`; None when there are none (episodes shorter than H+1)."""
    starts, copies = [], []
    for b, length in enumerate(record.lengths.tolist()):
        k = length - horizon + 1  # starts s with s + H ≤ length: obs[s..s+H] all in the episode
        if k > 0:
            starts.append(torch.arange(k))
            copies.append(torch.full((k,), b))
    if not starts or count < 1:
        return None
    s, b = torch.cat(starts), torch.cat(copies)
    if len(s) > count:
        pick = torch.randperm(len(s), generator=generator)[:count]
        s, b = s[pick], b[pick]
    t = s[None, :] + torch.arange(horizon + 1)[:, None]  # [H+1, N]
    return record.obs[t, b], record.act[t[:-1], b], record.rew[t[:-1], b]


@torch.no_grad()
def model_quality(wm: WorldModel, obs: Tensor, act: Tensor, rew: Tensor, task: Tensor | None = None) -> dict[str, float]:
    """The module docstring's figures on normalised windows obs `[H+1, N, D]`, act `[H, N, A]`, rew `[H, N]`."""
    horizon = act.shape[0]
    z = wm.encode(obs, task)  # [H+1, N, L]
    one_step = torch.stack([wm.next(z[t], act[t], task) for t in range(horizon)])
    err_1 = float(((one_step - z[1:]) ** 2).mean())
    err_copy = float(((z[:-1] - z[1:]) ** 2).mean())
    z_hat, reward_sq = z[0], []
    for t in range(horizon):
        reward_sq.append((wm.predict_reward(z_hat, act[t], task) - rew[t]) ** 2)
        z_hat = wm.next(z_hat, act[t], task)
    err_h = float(((z_hat - z[-1]) ** 2).mean())
    err_copy_h = float(((z[0] - z[-1]) ** 2).mean())
    reward_h = float(torch.stack(reward_sq).mean())
    reward_mean_h = float(((rew - rew.mean()) ** 2).mean())
    return {
        "model_error_1": err_1,
        "model_error_copy": err_copy,
        "model_error_ratio_copy": _ratio(err_1, err_copy),
        "model_error_H": err_h,
        "model_error_copy_H": err_copy_h,
        "model_error_ratio_copy_H": _ratio(err_h, err_copy_h),
        "model_reward_error_H": reward_h,
        "model_reward_error_mean_H": reward_mean_h,
        "model_reward_ratio_mean_H": _ratio(reward_h, reward_mean_h),
        "model_windows": float(obs.shape[1]),
    }


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def diagnose(
    wm: WorldModel,
    record: EpisodeRecord,
    *,
    horizon: int,
    windows: int,
    generator: torch.Generator,
    norm_obs: Callable[[Tensor], Tensor],
    norm_rew: Callable[[Tensor], Tensor] | None = None,
    task_id: int | None = None,
) -> dict[str, float]:
    """Draw the windows, normalise them as training does and measure; {} when `windows` is 0 (off)."""
    if windows <= 0:
        return {}
    drawn = sample_windows(record, horizon, windows, generator)
    if drawn is None:
        return {"model_windows": 0.0}
    device = next(wm.parameters()).device
    obs, act, rew = (x.to(device) for x in drawn)
    obs = norm_obs(obs)
    if norm_rew is not None:
        rew = norm_rew(rew)
    task = None if task_id is None else torch.full((obs.shape[1],), task_id, dtype=torch.long, device=device)
    return model_quality(wm, obs, act, rew, task)


FINAL_COLUMNS = tuple(f"{m}_final" for m in METRICS if m != "model_windows")


def final_model_quality(curves: list[dict]) -> dict[str, float | None]:
    """Run-row values: each figure at the last evaluation (the last curve row with `eval_return`); None where that
    evaluation had no window (short episodes), the diagnostics were off, or the figure is not finite."""
    evals = [r for r in curves if r.get("eval_return") is not None]
    last = evals[-1] if evals else {}
    out: dict[str, float | None] = {}
    for column in FINAL_COLUMNS:
        value = last.get(column[: -len("_final")])
        out[column] = float(value) if value is not None and value == value and abs(value) != float("inf") else None
    return out
