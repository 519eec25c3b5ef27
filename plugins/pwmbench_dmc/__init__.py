"""DeepMind Control single tasks with TD-MPC2's conventions, as batched environments.

The 30 DMC tasks of MT30: dm_control's 19 standard tasks, loaded through `suite.load`, and TD-MPC2's 11 custom
ones (backwards/one-foot/jump locomotion, a 3-link reacher, cup-spin, pendulum-spin), re-created as dm_control
tasks in `custom.py` and built from there with the same seeding, time limits and conventions.

Conventions (reference/multitask.md): `suite.load(domain, task, task_kwargs={"random": seed})`; actions in
[−1, 1] rescaled to the action spec; action repeat 2 with rewards summed; 500 agent steps per episode
(dm_control's 1000-step limit), never a terminal state; observation = the observation dict's values
flattened in spec order, float32. `MUJOCO_GL=off` is set before dm_control is imported (state only).

N copies are stepped in lockstep in one process (on 2 cores a process pool gains ≤ 1.25×); copy i is
seeded with the i-th child of `numpy.random.SeedSequence(seed)`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from pwmbench.api import Task, TaskSpec, VecEnv, hookimpl

__version__ = "0.1.0"

ACTION_REPEAT = 2
EPISODE_LENGTH = 500  # agent steps

# Model fields that dm_control tasks change in `initialize_episode` (target positions and sizes, finger's hinge
# damping); `state_dict` keeps them, since `physics.get_state()` holds only qpos/qvel/act.
TASK_MODEL_FIELDS = ("geom_pos", "geom_size", "site_pos", "site_size", "dof_damping")

# The 19 standard dm_control tasks of MT30 (TD-MPC2 order), with their observation and action widths.
STANDARD_TASKS: dict[str, tuple[int, int]] = {
    "walker-stand": (24, 6),
    "walker-walk": (24, 6),
    "walker-run": (24, 6),
    "cheetah-run": (17, 6),
    "reacher-easy": (6, 2),
    "reacher-hard": (6, 2),
    "acrobot-swingup": (6, 1),
    "pendulum-swingup": (3, 1),
    "cartpole-balance": (5, 1),
    "cartpole-balance-sparse": (5, 1),
    "cartpole-swingup": (5, 1),
    "cartpole-swingup-sparse": (5, 1),
    "cup-catch": (8, 2),
    "finger-spin": (9, 2),
    "finger-turn-easy": (12, 2),
    "finger-turn-hard": (12, 2),
    "fish-swim": (24, 5),
    "hopper-stand": (15, 4),
    "hopper-hop": (15, 4),
}

# TD-MPC2's 11 custom tasks (MT30 ids 19–29), defined in custom.py.
CUSTOM_TASKS: dict[str, tuple[int, int]] = {
    "walker-walk-backwards": (24, 6),
    "walker-run-backwards": (24, 6),
    "cheetah-run-backwards": (17, 6),
    "cheetah-run-front": (17, 6),
    "cheetah-run-back": (17, 6),
    "cheetah-jump": (17, 6),
    "hopper-hop-backwards": (15, 4),
    "reacher-three-easy": (8, 3),
    "reacher-three-hard": (8, 3),
    "cup-spin": (8, 2),
    "pendulum-spin": (3, 1),
}

# All 30 in MT30 task-id order: the dict order is the id order.
TASKS: dict[str, tuple[int, int]] = {**STANDARD_TASKS, **CUSTOM_TASKS}


def domain_and_task(name: str) -> tuple[str, str]:
    """'cup-catch' → ('ball_in_cup', 'catch'); 'cartpole-balance-sparse' → ('cartpole', 'balance_sparse')."""
    domain, task = name.replace("-", "_").split("_", 1)
    return ("ball_in_cup" if domain == "cup" else domain), task


def copy_seeds(seed: int, n: int) -> list[int]:
    """Independent per-copy seeds derived from one seed."""
    return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(n)]


def load_env(name: str, seed: int) -> Any:
    """One dm_control environment for a registered task name, seeded."""
    os.environ.setdefault("MUJOCO_GL", "off")
    if name in CUSTOM_TASKS:
        from pwmbench_dmc import custom

        return custom.load(name, seed)
    from dm_control import suite

    domain, task = domain_and_task(name)
    return suite.load(domain, task, task_kwargs={"random": seed})


class DMCVecEnv(VecEnv):
    """`num_envs` copies of one dm_control task stepped in lockstep; torch tensors out."""

    def __init__(self, name: str, num_envs: int, seed: int, device: str | torch.device = "cpu") -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be ≥ 1, got {num_envs}")
        self.name, self.num_envs, self.device = name, num_envs, torch.device(device)
        self.envs = [load_env(name, s) for s in copy_seeds(seed, num_envs)]
        spec = self.envs[0].action_spec()
        self._low, self._high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.act_dim = int(spec.shape[0])
        self.obs_dim = int(sum(int(np.prod(v.shape)) for v in self.envs[0].observation_spec().values()))
        self.episode_length = EPISODE_LENGTH
        self.action_repeat = ACTION_REPEAT
        self._t = np.zeros(num_envs, dtype=np.int64)

    @staticmethod
    def _flatten(observation: Any) -> np.ndarray:
        return np.concatenate([np.ravel(v) for v in observation.values()])

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if seed is not None:
            for env, s in zip(self.envs, copy_seeds(seed, self.num_envs)):
                env.task.random.seed(s)
        self._t[:] = 0
        return self._tensor(np.stack([self._flatten(env.reset().observation) for env in self.envs]))

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        a = np.clip(actions.detach().cpu().numpy().astype(np.float64), -1.0, 1.0)
        if a.shape != (self.num_envs, self.act_dim):
            raise ValueError(f"{self.name}: actions must have shape ({self.num_envs}, {self.act_dim}), got {a.shape}")
        scaled = self._low + (a + 1.0) * 0.5 * (self._high - self._low)
        final = np.empty((self.num_envs, self.obs_dim), dtype=np.float32)
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        resets: list[tuple[int, Any]] = []
        for i, env in enumerate(self.envs):
            action, total = scaled[i], 0.0
            for _ in range(self.action_repeat):
                ts = env.step(action)
                total += ts.reward or 0.0
                if ts.last():
                    break
            rewards[i] = total
            t = int(self._t[i]) + 1
            final[i] = self._flatten(ts.observation)
            if t >= self.episode_length or ts.last():
                t = 0
                resets.append((i, env.reset().observation))
            self._t[i] = t
        final_t = torch.from_numpy(final)  # fresh arrays every step: sharing their memory is safe
        obs_t = final_t.clone()  # the caller may keep one and change the other
        truncated = torch.zeros(self.num_envs, dtype=torch.bool)
        if resets:
            for i, observation in resets:
                obs_t[i] = torch.from_numpy(self._flatten(observation).astype(np.float32))
                truncated[i] = True
        terminated = torch.zeros(self.num_envs, dtype=torch.bool)
        out = (obs_t, torch.from_numpy(rewards), terminated, truncated)
        if self.device.type != "cpu":
            out = tuple(x.to(self.device) for x in out)
            final_t = final_t.to(self.device)
        return (*out, {"obs_before_reset": final_t})

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides future steps: physics state, solver warm start, RNGs, step counters, and the
        model fields that tasks re-draw at reset (reacher, finger and fish move their targets in the model)."""
        copies = []
        for env in self.envs:
            data = env.physics.data
            copies.append(
                {
                    "physics": env.physics.get_state().copy(),
                    "model": {f: np.array(getattr(env.physics.model, f)) for f in TASK_MODEL_FIELDS},
                    "ctrl": np.array(data.ctrl),
                    "warmstart": np.array(data.qacc_warmstart),
                    "random": env.task.random.get_state(),
                    "step_count": env._step_count,
                    "reset_next_step": env._reset_next_step,
                }
            )
        return {"copies": copies, "t": self._t.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for env, saved in zip(self.envs, state["copies"], strict=True):
            with env.physics.reset_context():
                env.physics.set_state(saved["physics"])
                for field, value in saved.get("model", {}).items():  # absent in states saved before it was kept
                    getattr(env.physics.model, field)[:] = value
            env.physics.data.ctrl[:] = saved["ctrl"]
            env.physics.data.qacc_warmstart[:] = saved["warmstart"]
            env.task.random.set_state(saved["random"])
            env._step_count, env._reset_next_step = saved["step_count"], saved["reset_next_step"]
        self._t = state["t"].copy()


class DMCTask(Task):
    """A dm_control task under TD-MPC2's conventions."""

    def __init__(self, name: str) -> None:
        obs_dim, act_dim = TASKS[name]
        origin = " (TD-MPC2 custom task)" if name in CUSTOM_TASKS else ""
        self.task_name = name
        self.spec = TaskSpec(
            name=f"dmc/{name}",
            obs_dim=obs_dim,
            act_dim=act_dim,
            episode_length=EPISODE_LENGTH,
            score="return",
            random_score=0.0,
            reference_score=1000.0,
            score_source=(
                "return / 1000 (TD-MPC2's DMC score): dm_control rewards lie in [0, 1] per simulator step and an episode "
                f"is {EPISODE_LENGTH} agent steps × action repeat {ACTION_REPEAT} = 1000 simulator steps"
            ),
            description=(
                f"dm_control {'/'.join(domain_and_task(name))}{origin}, "
                f"action repeat {ACTION_REPEAT}, {EPISODE_LENGTH} steps"
            ),
        )

    def make_env(self, num_envs: int, seed: int, device: str = "cpu", differentiable: bool = False) -> DMCVecEnv:
        if differentiable:
            raise ValueError(f"{self.spec.name} is simulated by MuJoCo, which gives no gradients; use differentiable=False")
        return DMCVecEnv(self.task_name, num_envs, seed, device)


def _factory(name: str) -> Any:
    def make() -> DMCTask:
        return DMCTask(name)

    make.__doc__ = f"DeepMind Control {name} (TD-MPC2 conventions)."
    return make


@hookimpl
def pwmbench_register_tasks(registry: Any) -> None:
    for name in TASKS:
        registry.add(f"dmc/{name}", _factory(name))
