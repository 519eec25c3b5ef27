"""The task hook: `dflex/cartpole`, `dflex/hopper`, `dflex/ant`, `dflex/humanoid` and `dflex/cheetah`.

Registering costs nothing (no Warp, no model loading); `make_env` builds the model and the simulator, and the first
simulator in a process initialises Warp with the project's kernel cache (warp_setup.py).
"""

from __future__ import annotations

from typing import Any

from pwmbench.api import Task, TaskSpec, hookimpl

from .tasks import TASKS, DflexTask

__all__ = ["DflexTaskHandle"]

PPO_SOURCE = (
    "return / PPO's maximum return, PWM's dflex normalisation (Georgiev et al. 2024): the `perf_scales` of PWM's "
    "results notebook (imgeorgiev/PWM, results/results.ipynb at aa5a1d8: Ant 6604.66, Hopper 4742.30, "
    "Humanoid 7292.79), the values its published figures divide by"
)


class DflexTaskHandle(Task):
    """A dflex task for pwmbench: its spec and batched environments (`env.DflexVecEnv`)."""

    def __init__(self, definition: type[DflexTask]) -> None:
        self.definition = definition()
        d = self.definition
        self.spec = TaskSpec(
            name=f"dflex/{d.name}",
            obs_dim=d.obs_dim,
            act_dim=d.act_dim,
            episode_length=d.episode_length,
            score="return",
            description=f"{d.description}; {d.substeps} substeps per 1/60 s, mass matrix every {d.mm_caching_frequency}",
            num_envs=d.num_envs,
            pretrain_wm_iterations=d.pretrain_wm_iterations,
            random_score=0.0 if d.ppo_reference is not None else None,
            reference_score=d.ppo_reference,
            score_source=PPO_SOURCE if d.ppo_reference is not None else "",
        )

    def make_env(self, num_envs: int, seed: int, device: str = "cpu", differentiable: bool = False) -> Any:
        try:
            import warp  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"{self.spec.name} needs NVIDIA Warp: pip install 'pwmbench[dflex]'") from exc
        from .env import DflexVecEnv

        return DflexVecEnv(self.definition, num_envs, seed, device=device, differentiable=differentiable)


def _factory(definition: type[DflexTask]) -> Any:
    def make() -> DflexTaskHandle:
        return DflexTaskHandle(definition)

    make.__doc__ = definition.description
    return make


@hookimpl
def pwmbench_register_tasks(registry: Any) -> None:
    for name, definition in TASKS.items():
        registry.add(f"dflex/{name}", _factory(definition))
