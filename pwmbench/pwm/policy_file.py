"""`policy.pt`: a trained single-task policy (encoder + actor, and what is needed to rebuild them), written when a
cell finishes ok, so that it can act again — e.g. as the behaviour policy of `pwmbench data collect`.

Loading uses `torch.load(weights_only=True)`: the file holds only tensors, numbers, strings and lists.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pwmbench.errors import PwmbenchError
from pwmbench.pwm.pretrain import agent_state
from pwmbench.results.atomic_files import torch_save_atomic

__all__ = ["POLICY_FILE", "LoadedPolicy", "load_policy", "save_policy"]

POLICY_FILE = "policy.pt"


def save_policy(trainer: Any, task_name: str, path: str | os.PathLike) -> Path:
    """The trainer's world model and actor (state dicts), the rest of its agent state (pwm/pretrain.py: agent_state),
    its config and the task, written atomically."""

    path = Path(path)
    state = {
        "format": "pwmbench-policy-1",
        "task": task_name,
        "config": trainer.cfg.to_json(),
        "wm": trainer.wm.state_dict(),
        "actor": trainer.actor.state_dict(),
        "obs_rms": trainer.obs_rms.state_dict() if trainer.obs_rms is not None else None,
        "rew_rms": trainer.rew_rms.state_dict() if trainer.rew_rms is not None else None,  # the reward head's scale (pretrain_checkpoint)
        **agent_state(trainer),  # critic, optimisers, ret_rms: what pretrain_checkpoint restores, as PWM's checkpoint
    }
    return torch_save_atomic(state, path)


class LoadedPolicy:
    """Acts in `task`'s real environment: a = tanh(π(E(o))), sampled (behaviour) or deterministic."""

    def __init__(self, state: dict[str, Any]) -> None:
        import json

        from pwmbench.api import task as get_task
        from pwmbench.nn.world_model import build_world_model
        from pwmbench.pwm.config import resolve_config
        from pwmbench.pwm.networks import Actor
        from pwmbench.pwm.normalizers import RunningMeanStd

        cfg = resolve_config({**json.loads(state["config"]), "device": "cpu"})
        spec = get_task(state["task"]).spec
        self.task = state["task"]
        self.wm = build_world_model(cfg.preset, obs_dim=spec.obs_dim, act_dim=spec.act_dim, dynamics=cfg.dynamics,
                                    dynamics_options=cfg.dynamics_options, **cfg.world_model)  # fmt: skip
        self.wm.load_state_dict(state["wm"])
        self.actor = Actor(self.wm.config.latent_dim, spec.act_dim, cfg.actor_units, cfg.init_logstd, cfg.min_logstd)
        self.actor.load_state_dict(state["actor"])
        self.obs_rms = None
        if state.get("obs_rms") is not None:
            self.obs_rms = RunningMeanStd((spec.obs_dim,))
            self.obs_rms.load_state_dict(state["obs_rms"])
        self.wm.eval()
        self.actor.eval()

    @torch.no_grad()
    def __call__(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        obs = obs.float()
        if self.obs_rms is not None:
            obs = self.obs_rms.normalize(obs)
        return self.actor.act(self.wm.encode(obs), deterministic=deterministic)


def load_policy(path: str | os.PathLike) -> LoadedPolicy:
    path = Path(path)
    if not path.is_file():
        raise PwmbenchError(f"{path}: no such policy file (a finished `pwmbench train` cell writes {POLICY_FILE})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PwmbenchError(f"{path}: not a pwmbench policy file ({str(exc).splitlines()[0][:200]})") from exc
    if not isinstance(state, dict) or state.get("format") != "pwmbench-policy-1":
        raise PwmbenchError(f"{path}: not a pwmbench policy file")
    return LoadedPolicy(state)
