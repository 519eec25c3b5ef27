"""`DflexVecEnv`: N copies of one dflex task in one batched simulator, with PWM's episode semantics.

One `step(actions)`:

    p = obs (before the step)         τ = task.joint_forces(clip(a, −1, 1))
    (q, q̇) ← sim(q, q̇, τ)             (fast path: Simulator.step; differentiable: bridge.sim_step)
    obs' = task.observe(q, q̇, a)       r = task.reward(p, a)
    terminated = task.terminated(obs', q, q̇) or a blown-up state;  truncated = t == episode_length (and not terminated)
    finished envs reset at once: obs_before_reset = obs', the returned obs is the new episode's first one.

With `differentiable=True` the state stays in the autograd graph: rewards and observations carry gradients to the
actions and the initial state through every substep, resets splice fresh states in with `torch.where` (a reset env's
gradient path ends there), and `detach()` cuts the graph between rollouts (SHAC's `clear_grad`).

Seeding: one torch generator, seeded by `seed` (and re-seeded by `reset(seed=...)`), draws every initial state,
so the same seed gives the same initial states and, the physics being deterministic, the same episodes.

Root-following frame (frame.py): for models that are translation invariant (free or unlimited horizontal slide
roots) the env keeps (q, q̇) relative to a per-env horizontal `origin` (float64) and re-centres after every reset and
every step, so the simulator always works near the world origin and float32 stays accurate however far the robot
runs. `q`, `qd` hold the local state; `state` / `set_state` speak world coordinates (pass float64 to `set_state` to
place a far state exactly); `local_state` gives (q, q̇, origin); `state_dict` stores the origin.
"""

from __future__ import annotations

from typing import Any

import torch

from pwmbench.api import VecEnv

from .frame import RootFrame
from .tasks import DflexTask

__all__ = ["DflexVecEnv"]


class DflexVecEnv(VecEnv):
    def __init__(self, task: DflexTask, num_envs: int, seed: int, device: str = "cpu", differentiable: bool = False):
        from .contact import ContactParams
        from .sim import Simulator

        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.task = task
        self.num_envs = int(num_envs)
        self.obs_dim, self.act_dim, self.episode_length = task.obs_dim, task.act_dim, task.episode_length
        self.device = torch.device(device)
        self.differentiable = bool(differentiable)
        self.model = task.model()
        self.sim = Simulator(
            self.model,
            self.num_envs,
            dt=task.dt,
            substeps=task.substeps,
            mm_caching_frequency=task.mm_caching_frequency,
            limit_ke=task.limit_ke,
            limit_kd=task.limit_kd,
            contact=None if task.contact is None else ContactParams(*task.contact),
            device=_warp_device(self.device),
            requires_grad=self.differentiable,
        )
        self.frame = RootFrame.of(self.model)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.t = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.q, self.qd, self.origin, self.prev_actions, self.obs = self._initial(self.num_envs)

    # ------------------------------------------------------------------------------------------- internals
    def _initial(self, n: int):
        q, qd = self.task.initial_state(self.model, n, self.generator)
        q, qd, origin = self.frame.from_world(q.to(self.device), qd.to(self.device))
        prev = torch.zeros(n, self.act_dim, device=self.device)
        return q, qd, origin, prev, self.task.observe(q, qd, prev, origin)

    def _simulate(self, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.differentiable:
            from .bridge import sim_step

            return sim_step(self.sim, self.q, self.qd, tau)
        return self.sim.step(self.q.detach(), self.qd.detach(), tau.detach())

    # --------------------------------------------------------------------------------------------- the API
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Every copy to a fresh initial state (from `seed` when given, else the generator's next draws)."""
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self.t.zero_()
        self.q, self.qd, self.origin, self.prev_actions, self.obs = self._initial(self.num_envs)
        return self.obs

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        if tuple(actions.shape) != (self.num_envs, self.act_dim):
            raise ValueError(f"dflex/{self.task.name}: actions must have shape ({self.num_envs}, {self.act_dim}), got {tuple(actions.shape)}")
        a = torch.clamp(actions.to(self.device, torch.float32), -1.0, 1.0)
        if not self.differentiable:
            a = a.detach()
        obs_before = self.obs
        q, qd = self._simulate(self.task.joint_forces(a, self.model.dof_count))
        q, qd, origin = self.frame.recentre(q, qd, self.origin)
        obs = self.task.observe(q, qd, a, origin)
        reward = self.task.reward(obs_before, a)
        self.t += 1
        invalid = self.task.invalid_state(q, qd)
        terminated = self.task.terminated(obs, q, qd) | invalid
        truncated = (self.t >= self.episode_length) & ~terminated
        done = terminated | truncated
        final = torch.where(invalid.unsqueeze(-1), torch.zeros_like(obs), obs) if bool(invalid.any()) else obs
        info = {"obs_before_reset": final, "termination": terminated, "truncation": truncated, "invalid_state": invalid}
        self.q, self.qd, self.origin, self.prev_actions, self.obs = q, qd, origin, a, obs
        if bool(done.any()):
            self._reset_done(done)
        return self.obs, reward, terminated, truncated, info

    def _reset_done(self, done: torch.Tensor) -> None:
        idx = torch.nonzero(done).squeeze(-1)
        q0, qd0, origin0, prev0, obs0 = self._initial(int(idx.numel()))
        mask = done.unsqueeze(-1)

        def splice(current: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
            full = torch.zeros_like(current).detach()
            full[idx] = fresh.to(full.dtype)
            return torch.where(mask, full, current)

        self.q, self.qd, self.origin = splice(self.q, q0), splice(self.qd, qd0), splice(self.origin, origin0)
        self.prev_actions, self.obs = splice(self.prev_actions, prev0), splice(self.obs, obs0)
        self.t = torch.where(done, torch.zeros_like(self.t), self.t)

    def detach(self) -> None:
        """Cut the autograd graph at the current state (start of a new differentiable rollout)."""
        self.q, self.qd = self.q.detach(), self.qd.detach()  # the origin is never part of the graph
        self.prev_actions, self.obs = self.prev_actions.detach(), self.obs.detach()

    @property
    def state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current generalised coordinates and velocities (q, q̇) in world coordinates, float32 (far from the
        origin they carry float32's rounding; `local_state` is exact)."""
        q, qd = self.frame.to_world(self.q, self.qd, self.origin)
        return q.to(torch.float32), qd.to(torch.float32)

    @property
    def local_state(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q, q̇) in the root-following frame and its horizontal origin [n, 3] (float64): what the simulator steps."""
        return self.q, self.qd, self.origin

    def set_state(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        """Put every copy in the world-frame state (q, q̇) (same episode step counters); returns the new observation.
        Any float dtype: the shift into the root-following frame is done in float64 before rounding to float32."""
        self.q, self.qd, self.origin = self.frame.from_world(q.to(self.device), qd.to(self.device))
        self.obs = self.task.observe(self.q, self.qd, self.prev_actions, self.origin)
        return self.obs

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides future steps, for resuming a run: state, step counters, the generator."""
        return {
            "q": self.q.detach().cpu().clone(),
            "qd": self.qd.detach().cpu().clone(),
            "prev_actions": self.prev_actions.detach().cpu().clone(),
            "origin": self.origin.detach().cpu().clone(),
            "t": self.t.cpu().clone(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from `state_dict`. A state saved before the root-following frame (no "origin") holds world
        coordinates: it is re-centred here, which a centred state passes through unchanged."""
        q, qd = state["q"].to(self.device), state["qd"].to(self.device)
        origin = state.get("origin")
        origin = torch.zeros(q.shape[0], 3, dtype=torch.float64) if origin is None else origin
        self.q, self.qd, self.origin = self.frame.recentre(q, qd, origin.to(self.device, torch.float64))
        self.prev_actions, self.t = state["prev_actions"].to(self.device), state["t"].to(self.device)
        self.generator.set_state(state["generator"])
        self.obs = self.task.observe(self.q, self.qd, self.prev_actions, self.origin)

    def close(self) -> None:
        self.sim = None


def _warp_device(device: torch.device) -> str:
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda":
        return f"cuda:{device.index or 0}"
    raise ValueError(f"dflex tasks run on 'cpu' or 'cuda', not {device}")
