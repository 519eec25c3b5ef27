"""Replay of real experience as (H+1)-step windows that never cross an episode boundary.

Each environment copy has its own ring of rows. Row k holds the observation at time k, the action that
led to it and that transition's reward (NaN for the first row of an episode), and the episode's id. A
window of rows k..k+H is valid when both ends carry the same episode id (ids only grow) and no row in it
has been overwritten. Samples are `obs [H+1, B, O]`, `act [H, B, A]`, `rew [H, B]`, time-major, as the
world-model loss takes them.
"""

from __future__ import annotations

import torch
from torch import Tensor


class SequenceBuffer:
    def __init__(self, num_envs: int, capacity: int, obs_dim: int, act_dim: int, device: str | torch.device = "cpu") -> None:
        self.num_envs = num_envs
        self.rows = max(2, capacity // num_envs)  # ring length per env copy
        self.device = torch.device(device)
        self.obs = torch.zeros(num_envs, self.rows, obs_dim, device=self.device)
        self.act = torch.full((num_envs, self.rows, act_dim), float("nan"), device=self.device)
        self.rew = torch.full((num_envs, self.rows), float("nan"), device=self.device)
        self.episode = torch.full((num_envs, self.rows), -1, dtype=torch.long, device=self.device)
        self.written = 0  # rows written per env copy (all copies advance together)
        self._next_episode = torch.arange(num_envs, device=self.device)  # ids: env i gets i, i+N, i+2N, ...
        self.finished_episodes = 0

    def __len__(self) -> int:
        return min(self.written, self.rows) * self.num_envs

    def _write(self, obs: Tensor, act: Tensor | None, rew: Tensor | None, episode: Tensor) -> None:
        slot = self.written % self.rows
        self.obs[:, slot] = obs.to(self.device)
        self.act[:, slot] = float("nan") if act is None else act.to(self.device)
        self.rew[:, slot] = float("nan") if rew is None else rew.to(self.device)
        self.episode[:, slot] = episode
        self.written += 1

    def start(self, obs: Tensor) -> None:
        """First rows: the reset observations of every copy."""
        self._current = self._next_episode.clone()
        self._next_episode += self.num_envs
        self._write(obs, None, None, self._current)

    def add(self, final_obs: Tensor, act: Tensor, rew: Tensor, done: Tensor, reset_obs: Tensor) -> None:
        """One real step of every copy: the observation it reached (before any reset), its action and reward.

        Copies that are done then start a new episode from `reset_obs`. All copies advance by the same number
        of rows (it keeps the rings aligned), so on such a step the copies that are not done get a filler row
        with episode id −1, which no sampled window may contain.
        """
        self._write(final_obs, act.detach(), rew.detach(), self._current)
        if done.any():
            done = done.to(self.device)
            self.finished_episodes += int(done.sum())
            new_ids = self._next_episode.clone()
            self._next_episode = torch.where(done, self._next_episode + self.num_envs, self._next_episode)
            self._current = torch.where(done, new_ids, self._current)
            # A new-episode row for done copies; other copies get a row that no window can use (id −1).
            slot_episode = torch.where(done, self._current, torch.full_like(self._current, -1))
            self._write(torch.where(done[:, None], reset_obs.to(self.device), final_obs.to(self.device)), None, None, slot_episode)

    def _valid(self, env: Tensor, start: Tensor, horizon: int) -> Tensor:
        lo = max(0, self.written - self.rows)
        ok = (start >= lo) & (start + horizon < self.written)
        idx = torch.arange(horizon + 1, device=self.device)
        rows = (start[:, None] + idx) % self.rows
        ids = self.episode[env[:, None], rows]
        return ok & (ids[:, 0] >= 0) & (ids == ids[:, :1]).all(1)

    def sample(self, batch: int, horizon: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """`batch` windows of H+1 rows, uniformly over valid windows (rejection sampling)."""
        lo = max(0, self.written - self.rows)
        span = self.written - horizon - lo
        if span <= 0:
            raise RuntimeError(f"the buffer holds no window of {horizon + 1} steps yet")
        env = torch.empty(0, dtype=torch.long, device=self.device)
        start = torch.empty(0, dtype=torch.long, device=self.device)
        for _ in range(100):
            need = batch - len(env)
            e = torch.randint(0, self.num_envs, (2 * need,), generator=generator).to(self.device)
            s = (lo + torch.randint(0, span, (2 * need,), generator=generator)).to(self.device)
            keep = self._valid(e, s, horizon)
            env, start = torch.cat([env, e[keep][:need]]), torch.cat([start, s[keep][:need]])
            if len(env) == batch:
                break
        else:
            raise RuntimeError(f"could not find {batch} valid windows of {horizon + 1} steps (episodes too short?)")
        rows = (start[:, None] + torch.arange(horizon + 1, device=self.device)) % self.rows  # [B, H+1]
        obs = self.obs[env[:, None], rows].transpose(0, 1)
        act = self.act[env[:, None], rows[:, 1:]].transpose(0, 1)
        rew = self.rew[env[:, None], rows[:, 1:]].transpose(0, 1)
        return obs, act, rew

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("obs", "act", "rew", "episode", "written", "_next_episode", "finished_episodes", "_current")}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value.clone() if isinstance(value, Tensor) else value)
