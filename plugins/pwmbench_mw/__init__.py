"""The 50 Meta-World tasks of MT80 with TD-MPC2's conventions, as batched environments.

Conventions (reference/multitask.md): metaworld 3.x `<name>-v3-goal-observable` envs (TD-MPC2 used the v2
names; they map one to one); the goal is re-drawn at every reset; after each reset one extra zero-action
step is taken and the observation from *before* it is returned; action repeat 2 with rewards summed;
100 agent steps per episode (201 simulator steps, well inside Meta-World's 500-step limit, past which it
raises), never a terminal state; `info["success"]` is Meta-World's success flag at the end of the agent
step. `MUJOCO_GL=off` is set before metaworld/mujoco are imported (state only).

Seeding: copy i is built with the i-th child of `numpy.random.SeedSequence(seed)`. Meta-World draws reset
positions from the global `np.random` unless `seeded_rand_vec` is set, so every copy sets it and draws from
its own `env.np_random` instead: copies are independent and the same seed gives bit-identical rollouts,
whatever else uses `np.random`.

N copies are stepped in lockstep in one process (on 2 cores a process pool gains ≤ 1.25×).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from pwmbench.api import Task, TaskSpec, VecEnv, hookimpl

__version__ = "0.1.0"

ACTION_REPEAT = 2
EPISODE_LENGTH = 100  # agent steps
OBS_DIM, ACT_DIM = 39, 4

# MT80's Meta-World tasks in TD-MPC2 order (task ids 30–79 of MT80), without the "mw-" prefix.
TASKS: tuple[str, ...] = (
    "assembly", "basketball", "button-press-topdown", "button-press-topdown-wall", "button-press",
    "button-press-wall", "coffee-button", "coffee-pull", "coffee-push", "dial-turn",
    "disassemble", "door-open", "door-close", "drawer-close", "drawer-open",
    "faucet-open", "faucet-close", "hammer", "handle-press-side", "handle-press",
    "handle-pull-side", "handle-pull", "lever-pull", "peg-insert-side", "peg-unplug-side",
    "pick-out-of-hole", "pick-place", "pick-place-wall", "plate-slide", "plate-slide-side",
    "plate-slide-back", "plate-slide-back-side", "push-back", "push", "push-wall",
    "reach", "reach-wall", "shelf-place", "soccer", "stick-push",
    "stick-pull", "sweep-into", "sweep", "window-open", "window-close",
    "bin-picking", "box-close", "door-lock", "door-unlock", "hand-insert",
)  # fmt: skip


def env_id(name: str) -> str:
    """'push' → 'push-v3-goal-observable' (metaworld 3.x's key)."""
    return f"{name}-v3-goal-observable"


def copy_seeds(seed: int, n: int) -> list[int]:
    """Independent per-copy seeds derived from one seed (copy i's seed does not depend on n)."""
    return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(n)]


def load_env(name: str, seed: int) -> Any:
    """One raw Meta-World environment for a task name, seeded, with goals re-drawn from its own RNG.

    The goal-observable constructor resets once with the global `np.random` temporarily seeded with `seed`
    (then restores it) and sets `env.np_random` from `seed`; from then on `seeded_rand_vec` makes every
    reset draw from `env.np_random`, and `_freeze_rand_vec = False` makes it draw a new goal each time.
    """
    os.environ.setdefault("MUJOCO_GL", "off")
    import metaworld

    if name not in TASKS:
        raise KeyError(f"unknown Meta-World task {name!r}")
    env = metaworld.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[env_id(name)](seed=seed)
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    return env


# ------------------------------------------------------------------------------------------ exact state
# Meta-World keeps task state in three places: MuJoCo's data (physics, mocap, controls, warm start), the
# model (reset moves bodies and sites: `model.body(...).pos`, `model.site("goal").pos`) and plain Python
# attributes of the env (goal, initial positions, frame-stacked previous observation, step counter).
# Some attributes are live views into MuJoCo's buffers (e.g. `init_left_pad` is `data.xpos[...]`); they are
# saved as a reference to that buffer and re-created as a view on load, so they stay live.
_MODEL_FIELDS = ("body_pos", "body_quat", "site_pos", "site_quat", "geom_pos", "geom_quat", "eq_data")


def _mj_view(owner: str, field: str, start: int, shape: tuple[int, ...]) -> dict[str, Any]:
    """A saved attribute that was a view into `env.<owner>.<field>` (flat element offset, shape): a plain dict, so
    that checkpoints load without unpickling any class."""
    return {"__mjview__": [owner, field, int(start), [int(n) for n in shape]]}


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def _owned_by_python(array: np.ndarray) -> bool:
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return isinstance(base, np.ndarray)


def _locate_view(env: Any, array: np.ndarray) -> dict[str, Any]:
    start = _address(array)
    for owner in ("data", "model"):
        obj = getattr(env, owner)
        for field in dir(obj):
            if field.startswith("_"):
                continue
            buf = getattr(obj, field)
            if (
                not isinstance(buf, np.ndarray)
                or buf.dtype != array.dtype
                or buf.size == 0
                or not buf.flags.c_contiguous
            ):
                continue
            offset = start - _address(buf)
            if 0 <= offset < buf.nbytes and offset % buf.itemsize == 0:
                if array.flags.c_contiguous and offset + array.nbytes <= buf.nbytes:
                    return _mj_view(owner, field, offset // buf.itemsize, tuple(array.shape))
                raise TypeError(
                    f"{type(env).__name__}: an attribute is a strided view of {owner}.{field}; cannot save it"
                )
    raise TypeError(f"cannot save an array attribute of {type(env).__name__} that views unknown MuJoCo memory")


def _is_skipped(value: Any) -> bool:
    """MuJoCo handles, renderers, spaces and the RNG: restored in place or constant, never copied."""
    import gymnasium
    import mujoco

    if isinstance(value, (mujoco.MjModel, mujoco.MjData, gymnasium.spaces.Space, np.random.Generator)):
        return True
    return type(value).__name__ == "MujocoRenderer"


def _freeze(env: Any, value: Any, memo: dict[int, Any]) -> Any:
    """A detached copy of a plain attribute value (shared objects stay shared through `memo`)."""
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, np.ndarray):
        out: Any = value.copy() if _owned_by_python(value) else _locate_view(env, value)
    elif value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic)):
        return value
    elif isinstance(value, list):
        out = [_freeze(env, v, memo) for v in value]
    elif isinstance(value, tuple):
        out = tuple(_freeze(env, v, memo) for v in value)
    elif isinstance(value, dict):
        out = {k: _freeze(env, v, memo) for k, v in value.items()}
    else:
        raise TypeError(f"cannot save attribute value of type {type(value).__name__} of {type(env).__name__}")
    memo[id(value)] = out
    return out


def _thaw(env: Any, value: Any, memo: dict[int, Any]) -> Any:
    """The inverse of `_freeze`, copying again so that one saved state can be loaded many times."""
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, dict) and "__mjview__" in value:
        owner, field, start, shape = value["__mjview__"]
        buf = getattr(getattr(env, owner), field).reshape(-1)
        out: Any = buf[start : start + int(np.prod(shape))].reshape(tuple(shape))
    elif isinstance(value, np.ndarray):
        out = value.copy()
    elif isinstance(value, list):
        out = [_thaw(env, v, memo) for v in value]
    elif isinstance(value, tuple):
        out = tuple(_thaw(env, v, memo) for v in value)
    elif isinstance(value, dict):
        out = {k: _thaw(env, v, memo) for k, v in value.items()}
    else:
        return value
    memo[id(value)] = out
    return out


def env_state(env: Any) -> dict[str, Any]:
    """Everything that decides a raw Meta-World env's future: physics, moved bodies/sites, attributes, RNG."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    physics = np.empty(mujoco.mj_stateSize(env.model, spec))
    mujoco.mj_getState(env.model, env.data, physics, spec)
    memo: dict[int, Any] = {}
    attrs = {k: _freeze(env, v, memo) for k, v in vars(env).items() if not _is_skipped(v)}
    return {
        "physics": physics,
        "model": {f: np.array(getattr(env.model, f)) for f in _MODEL_FIELDS},
        "attrs": attrs,
        "rng": env.np_random.bit_generator.state,
    }


def set_env_state(env: Any, state: dict[str, Any]) -> None:
    """Restore `env_state`; the env must be of the same task (any seed)."""
    import mujoco

    for f, saved in state["model"].items():
        getattr(env.model, f)[...] = saved
    physics, spec = np.array(state["physics"]), mujoco.mjtState.mjSTATE_INTEGRATION
    mujoco.mj_setState(env.model, env.data, physics, spec)
    mujoco.mj_forward(env.model, env.data)  # derived quantities (positions read through live views) ...
    mujoco.mj_setState(env.model, env.data, physics, spec)  # ... but mj_forward overwrites the warm start
    for k in [k for k, v in vars(env).items() if not _is_skipped(v) and k not in state["attrs"]]:
        delattr(env, k)
    memo: dict[int, Any] = {}
    for k, v in state["attrs"].items():
        setattr(env, k, _thaw(env, v, memo))
    env.np_random.bit_generator.state = state["rng"]


# ------------------------------------------------------------------------------------------ batched env
class MetaWorldVecEnv(VecEnv):
    """`num_envs` copies of one Meta-World task stepped in lockstep; torch tensors out."""

    def __init__(self, name: str, num_envs: int, seed: int, device: str | torch.device = "cpu") -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be ≥ 1, got {num_envs}")
        self.name, self.num_envs, self.device = name, num_envs, torch.device(device)
        self.envs = [load_env(name, s) for s in copy_seeds(seed, num_envs)]
        self.obs_dim, self.act_dim = OBS_DIM, ACT_DIM
        self.episode_length = EPISODE_LENGTH
        self.action_repeat = ACTION_REPEAT
        self._t = np.zeros(num_envs, dtype=np.int64)
        self._zero = np.zeros(ACT_DIM, dtype=np.float32)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device)

    def _reset_copy(self, env: Any) -> np.ndarray:
        """Reset, then one zero-action step; the observation from before that step (TD-MPC2)."""
        obs, _ = env.reset()
        env.step(self._zero)
        return obs

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if seed is not None:
            for env, s in zip(self.envs, copy_seeds(seed, self.num_envs)):
                env.seed(s)
        self._t[:] = 0
        return self._tensor(np.stack([self._reset_copy(env) for env in self.envs]))

    def step(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        # float32 like the actions TD-MPC2's agent hands Meta-World (the mocap offset is computed in that dtype)
        a = np.clip(actions.detach().cpu().numpy().astype(np.float32), -1.0, 1.0)
        if a.shape != (self.num_envs, self.act_dim):
            raise ValueError(
                f"mw/{self.name}: actions must have shape ({self.num_envs}, {self.act_dim}), got {a.shape}"
            )
        obs = np.empty((self.num_envs, self.obs_dim))
        final = np.empty_like(obs)
        rewards = np.zeros(self.num_envs)
        success = np.zeros(self.num_envs, dtype=np.float32)
        truncated = np.zeros(self.num_envs, dtype=bool)
        for i, env in enumerate(self.envs):
            for _ in range(self.action_repeat):
                o, r, _, _, info = env.step(a[i])
                rewards[i] += r
            success[i] = float(info["success"])
            final[i] = o
            self._t[i] += 1
            if self._t[i] >= self.episode_length:
                truncated[i] = True
                self._t[i] = 0
                obs[i] = self._reset_copy(env)
            else:
                obs[i] = o
        info = {"obs_before_reset": self._tensor(final), "success": torch.as_tensor(success, device=self.device)}
        terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return (
            self._tensor(obs),
            self._tensor(rewards),
            terminated,
            torch.as_tensor(truncated, device=self.device),
            info,
        )

    def state_dict(self) -> dict[str, Any]:
        """Exact resume: every copy's physics, moved bodies/sites, env attributes and RNG, plus step counters."""
        return {"task": self.name, "copies": [env_state(env) for env in self.envs], "t": self._t.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["task"] != self.name or len(state["copies"]) != self.num_envs:
            raise ValueError(
                f"state of mw/{state['task']} × {len(state['copies'])} cannot be loaded into mw/{self.name} × {self.num_envs}"
            )
        for env, saved in zip(self.envs, state["copies"], strict=True):
            set_env_state(env, saved)
        self._t = np.array(state["t"], dtype=np.int64)

    def close(self) -> None:
        for env in self.envs:
            env.close()


class MetaWorldTask(Task):
    """A Meta-World task under TD-MPC2's conventions."""

    def __init__(self, name: str) -> None:
        self.task_name = name
        self.spec = TaskSpec(
            name=f"mw/{name}",
            obs_dim=OBS_DIM,
            act_dim=ACT_DIM,
            episode_length=EPISODE_LENGTH,
            score="success",
            score_source="success rate at the episode's end (TD-MPC2's Meta-World score)",
            description=f"Meta-World {env_id(name)}, action repeat {ACTION_REPEAT}, {EPISODE_LENGTH} steps",
        )

    def make_env(self, num_envs: int, seed: int, device: str = "cpu", differentiable: bool = False) -> MetaWorldVecEnv:
        if differentiable:
            raise ValueError(
                f"{self.spec.name} is simulated by MuJoCo, which gives no gradients; use differentiable=False"
            )
        return MetaWorldVecEnv(self.task_name, num_envs, seed, device)


def _factory(name: str) -> Any:
    def make() -> MetaWorldTask:
        return MetaWorldTask(name)

    make.__doc__ = f"Meta-World {name} (TD-MPC2 conventions, goal observable, success score)."
    return make


@hookimpl
def pwmbench_register_tasks(registry: Any) -> None:
    for name in TASKS:
        registry.add(f"mw/{name}", _factory(name))
