"""TD-MPC2's task sets MT30 and MT80 as pwmbench tasks `mt30` and `mt80` (reference/multitask.md).

A task set is a `Task` whose spec carries the padded widths (MT30 obs 24 / act 6, MT80 obs 39 / act 6), the
number of tasks, the task-embedding width (64 / 96) and every task's own action width; `tasks` lists the member
task names in TD-MPC2's order, so the list position is the task id of the embedding and of the datasets. The
members are ordinary registered tasks (`dmc/...` from the DMC plugin, `mw/...` from the Meta-World plugin), found
through pwmbench's public API only.

`task_env(task_id, num_envs, seed)` gives a member's batched env behind TD-MPC2's multitask wrapper: observations
zero-padded to the set's width, actions sliced to the member's width. A member's score is DMC return / 1000
(0–1) or Meta-World success (`score_of`).
"""

from __future__ import annotations

from typing import Any

import torch

from pwmbench.api import TaskSet as TaskSetBase
from pwmbench.api import TaskSpec, VecEnv, hookimpl
from pwmbench.api import task as get_task

__version__ = "0.1.0"
__all__ = ["MT30", "MT80", "PaddedVecEnv", "TaskSet"]

MT30 = (
    "walker-stand", "walker-walk", "walker-run", "cheetah-run", "reacher-easy", "reacher-hard", "acrobot-swingup",
    "pendulum-swingup", "cartpole-balance", "cartpole-balance-sparse", "cartpole-swingup", "cartpole-swingup-sparse",
    "cup-catch", "finger-spin", "finger-turn-easy", "finger-turn-hard", "fish-swim", "hopper-stand", "hopper-hop",
    "walker-walk-backwards", "walker-run-backwards", "cheetah-run-backwards", "cheetah-run-front", "cheetah-run-back",
    "cheetah-jump", "hopper-hop-backwards", "reacher-three-easy", "reacher-three-hard", "cup-spin", "pendulum-spin",
)  # fmt: skip
MT30_OBS = (24, 24, 24, 17, 6, 6, 6, 3, 5, 5, 5, 5, 8, 9, 12, 12, 24, 15, 15, 24, 24, 17, 17, 17, 17, 15, 8, 8, 8, 3)
MT30_ACT = (6, 6, 6, 6, 2, 2, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 5, 4, 4, 6, 6, 6, 6, 6, 6, 4, 3, 3, 2, 1)
METAWORLD = (
    "assembly", "basketball", "button-press-topdown", "button-press-topdown-wall", "button-press", "button-press-wall",
    "coffee-button", "coffee-pull", "coffee-push", "dial-turn", "disassemble", "door-open", "door-close", "drawer-close",
    "drawer-open", "faucet-open", "faucet-close", "hammer", "handle-press-side", "handle-press", "handle-pull-side",
    "handle-pull", "lever-pull", "peg-insert-side", "peg-unplug-side", "pick-out-of-hole", "pick-place",
    "pick-place-wall", "plate-slide", "plate-slide-side", "plate-slide-back", "plate-slide-back-side", "push-back",
    "push", "push-wall", "reach", "reach-wall", "shelf-place", "soccer", "stick-push", "stick-pull", "sweep-into",
    "sweep", "window-open", "window-close", "bin-picking", "box-close", "door-lock", "door-unlock", "hand-insert",
)  # fmt: skip
MT80 = tuple(f"dmc/{n}" for n in MT30) + tuple(f"mw/{n}" for n in METAWORLD)
MT80_OBS = MT30_OBS + (39,) * len(METAWORLD)
MT80_ACT = MT30_ACT + (4,) * len(METAWORLD)
SETS = {
    "mt30": (tuple(f"dmc/{n}" for n in MT30), MT30_OBS, MT30_ACT, 64),
    "mt80": (MT80, MT80_OBS, MT80_ACT, 96),
}


def score_of(task_name: str, episode_return: float, success: float | None) -> float:
    """TD-MPC2's per-task score: Meta-World success rate, else the DMC return / 1000."""
    if task_name.startswith("mw/"):
        return float(success if success is not None else 0.0)
    return float(episode_return) / 1000.0


class PaddedVecEnv(VecEnv):
    """A member task's batched env as the multitask agent sees it: obs zero-padded to `obs_dim`, actions of width
    `act_dim` (padded) sliced to the member's width. Everything else passes through."""

    def __init__(self, env: Any, task_id: int, obs_dim: int, act_dim: int) -> None:
        self.env, self.task_id = env, task_id
        self.num_envs, self.episode_length = env.num_envs, env.episode_length
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.task_obs_dim, self.task_act_dim = env.obs_dim, env.act_dim

    def _pad(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(obs, (0, self.obs_dim - obs.shape[-1]))

    def reset(self, seed: int | None = None) -> torch.Tensor:
        return self._pad(self.env.reset(seed=seed))

    def step(self, actions: torch.Tensor):
        if actions.shape[-1] != self.act_dim:
            raise ValueError(f"task set actions have width {self.act_dim}, got {actions.shape[-1]}")
        obs, reward, terminated, truncated, info = self.env.step(actions[..., : self.task_act_dim])
        info = dict(info)
        if "obs_before_reset" in info:
            info["obs_before_reset"] = self._pad(info["obs_before_reset"])
        return self._pad(obs), reward, terminated, truncated, info

    def close(self) -> None:
        if hasattr(self.env, "close"):
            self.env.close()


class TaskSet(TaskSetBase):
    """MT30 or MT80: padded spec, member names in id order, member envs behind the multitask wrapper."""

    def __init__(self, name: str) -> None:
        tasks, obs, act, task_dim = SETS[name]
        self.name, self.tasks = name, tasks
        self.obs_dims, self.action_dims = obs, act
        self.spec = TaskSpec(
            name=name,
            obs_dim=max(obs),
            act_dim=max(act),
            episode_length=500,
            n_tasks=len(tasks),
            task_dim=task_dim,
            action_dims=act,
            score="members",  # each member is scored by its own task: DMC return / 1000, Meta-World success
            description=f"TD-MPC2 {name.upper()}: {len(tasks)} tasks, obs padded to {max(obs)}, actions to {max(act)}",
        )

    def task_id(self, name: str) -> int:
        try:
            return self.tasks.index(name)
        except ValueError:
            raise KeyError(f"{name!r} is not in {self.name}") from None

    def member(self, task_id: int):
        return get_task(self.tasks[task_id])

    def task_env(self, task_id: int, num_envs: int, seed: int, device: str = "cpu") -> PaddedVecEnv:
        env = self.member(task_id).make_env(num_envs, seed, device=device)
        return PaddedVecEnv(env, task_id, self.spec.obs_dim, self.spec.act_dim)

    def make_env(self, num_envs: int, seed: int, device: str = "cpu", differentiable: bool = False) -> Any:
        raise ValueError(
            f"{self.name} is a task set: make one member's env with .task_env(task_id, num_envs, seed) "
            f"(ids 0–{len(self.tasks) - 1}, names in .tasks)"
        )


def _factory(name: str) -> Any:
    def make() -> TaskSet:
        return TaskSet(name)

    make.__doc__ = f"TD-MPC2 task set {name.upper()} ({len(SETS[name][0])} tasks)."
    return make


@hookimpl
def pwmbench_register_tasks(registry: Any) -> None:
    for name in SETS:
        registry.add(name, _factory(name))
