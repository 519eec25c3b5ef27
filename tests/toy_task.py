"""A tiny real task for fast trainer tests, registered through the public plugin API like any third party's.

A point in the plane pushed by the action: x' = 0.9·x + 0.3·a + noise; reward −|x'|²; terminated when
|x'| > 3; truncated after 12 steps. Seeded per copy; its state can be saved and restored.
"""

import numpy as np
import torch

from pwmbench.api import Task, TaskSpec, VecEnv, hookimpl

EPISODE = 12


class PointEnv(VecEnv):
    def __init__(self, num_envs, seed):
        self.num_envs, self.obs_dim, self.act_dim, self.episode_length = num_envs, 2, 2, EPISODE
        self.rng = np.random.default_rng(seed)
        self.x = np.zeros((num_envs, 2))
        self.t = np.zeros(num_envs, dtype=int)

    def _start(self, idx):
        self.x[idx] = self.rng.uniform(-1, 1, (len(idx), 2))
        self.t[idx] = 0

    def reset(self, seed=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._start(np.arange(self.num_envs))
        return torch.tensor(self.x, dtype=torch.float32)

    def step(self, actions):
        a = np.clip(actions.detach().numpy().astype(np.float64), -1, 1)
        self.x = 0.9 * self.x + 0.3 * a + self.rng.normal(0, 0.05, self.x.shape)
        self.t += 1
        reward = -(self.x**2).sum(1)
        terminated = np.linalg.norm(self.x, axis=1) > 3
        truncated = (self.t >= EPISODE) & ~terminated
        final = torch.tensor(self.x, dtype=torch.float32)
        done = np.nonzero(terminated | truncated)[0]
        if len(done):
            self._start(done)
        info = {"obs_before_reset": final}
        return torch.tensor(self.x, dtype=torch.float32), torch.tensor(reward, dtype=torch.float32), torch.tensor(terminated), torch.tensor(truncated), info

    def state_dict(self):
        return {"x": self.x.copy(), "t": self.t.copy(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.x, self.t = state["x"].copy(), state["t"].copy()
        self.rng.bit_generator.state = state["rng"]


class PointTask(Task):
    spec = TaskSpec(name="toy/point", obs_dim=2, act_dim=2, episode_length=EPISODE, num_envs=4)

    def make_env(self, num_envs, seed, device="cpu", differentiable=False):
        return PointEnv(num_envs, seed)


@hookimpl
def pwmbench_register_tasks(registry):
    registry.add("toy/point", PointTask)


# Settings small enough for a test: everything else is PWM's.
SMALL = {
    "world_model": {"units": [32, 32], "encoder_units": [32], "latent_dim": 16},
    "actor_units": [32, 32],
    "critic_units": [32, 32],
    "horizon": 4,
    "num_envs": 4,
    "max_epochs": 12,
    "wm_batch_size": 8,
    "wm_iterations": 2,
    "initial_wm_iterations": 4,
    "critic_iterations": 2,
    "wm_buffer_size": 2000,
    "eval_every": 5,
    "eval_episodes": 2,
    "checkpoint_every": 0,
}


class ExplodingDynamics:
    """Built lazily (needs torch): an MLP dynamics model whose predictions turn to NaN after `after` calls."""


def _exploding_class():
    from pwmbench.api import DynamicsModel, join_inputs, mlp

    class Exploding(DynamicsModel):
        """Diverges on purpose (tests of divergence handling)."""

        default_options = {"after": 50}

        def __init__(self, ctx, after):
            super().__init__(ctx)
            self.after, self.calls = after, 0
            self.net = mlp(ctx.input_dim, ctx.units, ctx.latent_dim)

        def next(self, z, a, emb=None):
            self.calls += 1
            out = self.net(join_inputs(z, a, emb))
            return out * float("nan") if self.calls > self.after else out

        def step_loss(self, z, a, target, emb=None, *, teacher=None):
            return ((self.next(z, a, emb) - target) ** 2).mean(-1)

    return Exploding


def _fragile_class():
    import os

    from pwmbench.api import DynamicsModel, join_inputs, mlp

    class Fragile(DynamicsModel):
        """Raises after `after` predictions while the file `crash_file` exists (tests of failed cells and their
        retries: delete the file and the cause is gone). Otherwise an MLP."""

        default_options = {"after": 200, "crash_file": ""}

        def __init__(self, ctx, after, crash_file):
            super().__init__(ctx)
            self.after, self.crash_file, self.calls = after, crash_file, 0
            self.net = mlp(ctx.input_dim, ctx.units, ctx.latent_dim)

        def next(self, z, a, emb=None):
            self.calls += 1
            if self.calls > self.after and self.crash_file and os.path.exists(self.crash_file):
                raise RuntimeError(f"toy crash: {self.crash_file} exists")
            return self.net(join_inputs(z, a, emb))

        def step_loss(self, z, a, target, emb=None, *, teacher=None):
            return ((self.next(z, a, emb) - target) ** 2).mean(-1)

    return Fragile


@hookimpl
def pwmbench_register_dynamics(registry):
    registry.add("exploding", _exploding_class())
    registry.add("fragile", _fragile_class())


def suite_base(max_epochs: int, checkpoint_every: int = 5) -> str:
    """The [base] table of the small suites the runner and fault tests train on this task (seconds per cell)."""
    return f"""[base]
world_model = {{ units = [32, 32], encoder_units = [32], latent_dim = 16 }}
actor_units = [32, 32]
critic_units = [32, 32]
horizon = 4
num_envs = 4
max_epochs = {max_epochs}
wm_batch_size = 8
wm_iterations = 2
initial_wm_iterations = 4
critic_iterations = 2
wm_buffer_size = 2000
eval_every = 5
eval_episodes = 2
checkpoint_every = {checkpoint_every}
"""
