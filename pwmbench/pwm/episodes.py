"""Real-environment episode statistics: returns, discounted returns and lengths of finished episodes.

`rewards` (PWM's headline curve) is the mean undiscounted return of the last 100 finished episodes.
Unlike PWM, `episode_lengths` is the real mean length (PWM never incremented its counter).
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor


class EpisodeStats:
    def __init__(self, num_envs: int, gamma: float, window: int = 100) -> None:
        self.gamma = gamma
        self.ret = torch.zeros(num_envs, dtype=torch.float64)
        self.disc_ret = torch.zeros(num_envs, dtype=torch.float64)
        self.disc = torch.ones(num_envs, dtype=torch.float64)
        self.length = torch.zeros(num_envs, dtype=torch.long)
        self.returns: deque[float] = deque(maxlen=window)
        self.disc_returns: deque[float] = deque(maxlen=window)
        self.lengths: deque[int] = deque(maxlen=window)
        self.finished = 0
        self.terminations = 0
        self.truncations = 0

    def step(self, reward: Tensor, terminated: Tensor, truncated: Tensor) -> None:
        reward = reward.detach().cpu().double()
        self.ret += reward
        self.disc_ret += self.disc * reward
        self.disc *= self.gamma
        self.length += 1
        done = (terminated | truncated).cpu()
        self.terminations += int(terminated.sum())
        self.truncations += int((truncated & ~terminated).sum())
        for i in torch.nonzero(done).flatten().tolist():
            self.returns.append(float(self.ret[i]))
            self.disc_returns.append(float(self.disc_ret[i]))
            self.lengths.append(int(self.length[i]))
            self.finished += 1
        self.ret[done], self.disc_ret[done], self.disc[done], self.length[done] = 0.0, 0.0, 1.0, 0

    @staticmethod
    def _mean(values: deque) -> float | None:
        return sum(values) / len(values) if values else None

    def metrics(self) -> dict[str, float | None]:
        rewards = self._mean(self.returns)
        disc = self._mean(self.disc_returns)
        return {
            "rewards": rewards,
            "policy_loss": None if rewards is None else -rewards,
            "policy_discounted_loss": None if disc is None else -disc,
            "episode_lengths": self._mean(self.lengths),
            "episodes": float(self.finished),
            "episode_end": float(self.truncations),
            "early_termination": float(self.terminations),
        }

    def state_dict(self) -> dict:
        return {k: (v.clone() if isinstance(v, Tensor) else (list(v) if isinstance(v, deque) else v)) for k, v in vars(self).items()}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            current = getattr(self, key)
            if isinstance(current, deque):
                current.clear()
                current.extend(value)
            else:
                setattr(self, key, value.clone() if isinstance(value, Tensor) else value)
