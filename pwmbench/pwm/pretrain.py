"""Single-task world-model pretraining, PWM's protocol (`general.pretrain=PATH pretrain_steps=N`, `pretrain_wm`).

Why: PWM's dflex results start from a world model pretrained on data (Hopper 50,000 steps, Ant 100,000, Humanoid
200,000). Without it the first epochs' budget decides the verdict: the MLP's 16-step rollout is worse than "no
change" after 1k steps, while flow's residual form gets the identity for free (reference/fidelity-audit.md).

What PWM's code does, and this module with it:
1. the dataset's episodes go into the replay buffer (they stay there for online training);
2. obs_rms / rew_rms are updated once from the data, NaN → 0 (entry 0's NaN reward counts as 0, as in PWM);
3. N world-model steps: a batch of (H+1)-windows from the buffer, obs/rew normalised by the rms (not updated per
   batch), the ordinary loss, grad clip `wm_grad_norm`, the ordinary Adam at a constant `model_lr` (PWM steps no
   schedule during pretraining);
4. the world model is marked bootstrapped (no initial block of `episode_length` steps in the first epoch).
`pretrain_checkpoint` loads a checkpoint instead (PWM's `general.checkpoint`): the world model, obs/rew rms and the rest
of the agent (world-model, actor and critic optimisers with their learning rates, actor, critic, ret_rms); with
`pretrain_data` too, the data is still loaded into the buffer and the rms (PWM's `actually_train=False`) but not
trained on.

Windows are drawn with a `torch.Generator` seeded by the cell seed alone, so every dynamics variant of a seed sees
the same windows in the same order. Loss rows go to the curves every `PRETRAIN_LOG_EVERY` steps (phase
"pretrain"); the state (step, generator, partial sums) is part of the trainer's checkpoint, so a cell killed
mid-pretraining resumes where it stopped, bit-identically.

Departures (docs/fidelity.md): only valid entries of an episode that ended early (NaN padding) count in the rms
(PWM's data had no padding); a dataset larger than `wm_buffer_size` keeps its newest whole episodes (PWM draws a
random subset with replacement).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pwmbench.errors import ConfigError, PwmbenchError
from pwmbench.results.atomic_files import torch_save_atomic

if TYPE_CHECKING:  # pragma: no cover
    from pwmbench.data.dataset import OfflineDataset

# The trainer this phase belongs to (pwmbench.pwm.trainer.PWMTrainer). Named, not imported: the trainer imports this
# module to build its pretraining phase, and this module only reads and writes the trainer's attributes.
PWMTrainer = Any

__all__ = [
    "DEFAULT_PRETRAIN_ITERATIONS", "PRETRAINED_WM_FILE", "PRETRAIN_CHECKPOINT_EVERY", "PRETRAIN_LOG_EVERY",
    "AGENT_PARTS", "Pretraining", "agent_state", "load_pretrained_wm", "open_pretrain_data", "pretrain_iterations",
    "restore_agent_state", "save_pretrained_wm",
]  # fmt: skip

DEFAULT_PRETRAIN_ITERATIONS = 50_000  # PWM's config default (`pretrain_steps`)
PRETRAIN_LOG_EVERY = 100  # steps per curves row
PRETRAIN_CHECKPOINT_EVERY = 5_000  # steps between checkpoints of a cell (PWM saves every N/5)
PRETRAINED_WM_FILE = "pretrained_wm.pt"
_FORMAT = "pwmbench-pretrained-wm-1"


def pretrain_iterations(cfg: Any, spec: Any) -> int:
    """`pretrain_wm_iterations`, else the task's own number (PWM's README), else PWM's default 50,000."""
    if cfg.pretrain_wm_iterations is not None:
        return int(cfg.pretrain_wm_iterations)
    return int(getattr(spec, "pretrain_wm_iterations", None) or DEFAULT_PRETRAIN_ITERATIONS)


def _fix(spec: Any) -> str:
    return f"collect one with `pwmbench data collect --task {spec.name} --episodes N --out DIR`"


def open_pretrain_data(directory: str | os.PathLike, spec: Any, horizon: int) -> OfflineDataset:
    """The dataset of `pretrain_data`, checked against the task: readable chunks, this task (metadata.json),
    task id 0 only, the task's obs/action widths, and an episode long enough for one (H+1)-window.
    Anything else is a ConfigError naming the directory and the fix (raised before any training)."""
    from pwmbench.data.chunks import ChunkError
    from pwmbench.data.dataset import OfflineDataset

    path = Path(directory).expanduser()
    where = f"pretrain_data {str(directory)!r}"
    try:
        data = OfflineDataset(path)
    except ChunkError as exc:
        raise ConfigError(f"{where}: {exc}; {_fix(spec)}") from None
    meta_path = path / "metadata.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise ConfigError(f"{where}: {meta_path} is not JSON ({exc})") from None
        named = meta.get("task") or (meta["tasks"][0] if len(meta.get("tasks") or []) == 1 else meta.get("taskset"))
        if named and named != spec.name:
            raise ConfigError(f"{where} holds data of {named!r}, not {spec.name!r}; point pretrain_data at {spec.name}'s data or {_fix(spec)}")
    if data.task_ids != [0]:
        raise ConfigError(f"{where} holds task ids {data.task_ids}; single-task pretraining data has task id 0 only ({_fix(spec)})")
    if (data.obs_dim, data.act_dim) != (spec.obs_dim, spec.act_dim):
        raise ConfigError(f"{where}: obs/action widths {(data.obs_dim, data.act_dim)} are not {spec.name}'s "
                          f"{(spec.obs_dim, spec.act_dim)}; {_fix(spec)}")  # fmt: skip
    if not bool((data.lengths > horizon).any()):
        raise ConfigError(f"{where}: no episode has the {horizon + 1} entries one window needs; collect longer episodes")
    return data


# ----------------------------------------------------------------------------------------- world-model files
def _dynamics_block(cfg: Any) -> dict[str, Any]:
    """What must match for a pretrained world model to be reused: its shape and dynamics variant."""
    block = {"dynamics": cfg.dynamics, "dynamics_options": cfg.dynamics_options, "preset": cfg.preset, "world_model": cfg.world_model}
    return json.loads(json.dumps(block, sort_keys=True))


AGENT_PARTS = ("wm_opt", "actor", "critic", "actor_opt", "critic_opt", "ret_rms")  # what PWM's checkpoint restores too


def agent_state(trainer: PWMTrainer) -> dict[str, Any]:
    """Everything PWM's `general.checkpoint` restores besides the world model and obs/rew statistics: the world
    model's optimiser, the actor, the critic, ret_rms, the actor's and critic's optimisers (their state dicts carry
    the learning rates). Saved in pretrained_wm.pt and policy.pt, restored by `pretrain_checkpoint`."""
    return {
        "wm_opt": trainer.wm_opt.state_dict(), "actor": trainer.actor.state_dict(), "critic": trainer.critic.state_dict(),
        "actor_opt": trainer.actor_opt.state_dict(), "critic_opt": trainer.critic_opt.state_dict(),
        "ret_rms": trainer.ret_rms.state_dict() if trainer.ret_rms is not None else None,
    }  # fmt: skip


def restore_agent_state(trainer: PWMTrainer, state: dict[str, Any], where: str) -> list[str]:
    """Load the parts of `agent_state` that `state` has (files written before W12 have none); returns their names.
    A part that does not fit this cell (other actor/critic widths) is a ConfigError naming it."""
    targets = {"wm_opt": trainer.wm_opt, "actor": trainer.actor, "critic": trainer.critic, "actor_opt": trainer.actor_opt,
               "critic_opt": trainer.critic_opt, "ret_rms": trainer.ret_rms}  # fmt: skip
    loaded = []
    for name in AGENT_PARTS:
        if state.get(name) is None or targets[name] is None:
            continue
        try:
            targets[name].load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ConfigError(f"{where}: its {name} does not fit this cell ({str(exc).splitlines()[0][:200]}); use a checkpoint of the same config") from None
        loaded.append(name)
    return loaded


def save_pretrained_wm(trainer: PWMTrainer, path: str | os.PathLike) -> Path:
    """`pretrained_wm.pt`: the world model, obs/rew rms, the rest of the agent's state (`agent_state`, as PWM's
    checkpoint after pretraining holds it) and the config's dynamics block, written atomically."""
    path = Path(path)
    state = {
        "format": _FORMAT,
        "task": trainer.task.spec.name,
        "block": json.dumps(_dynamics_block(trainer.cfg), sort_keys=True),
        "wm": trainer.wm.state_dict(),
        "obs_rms": trainer.obs_rms.state_dict() if trainer.obs_rms is not None else None,
        "rew_rms": trainer.rew_rms.state_dict() if trainer.rew_rms is not None else None,
        "pretrain_data": trainer.cfg.pretrain_data,
        "iterations": trainer.pretraining.step if trainer.pretraining is not None else 0,
        **agent_state(trainer),
    }
    return torch_save_atomic(state, path)


def _read_world_model_file(path: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(task, dynamics block, state) of a pretrained_wm.pt or a finished cell's policy.pt."""
    if not path.is_file():
        raise ConfigError(f"pretrain_checkpoint {str(path)!r}: no such file (give a finished cell's policy.pt or a {PRETRAINED_WM_FILE})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"pretrain_checkpoint {str(path)!r}: not a pwmbench world-model file ({str(exc).splitlines()[0][:200]})") from None
    kind = state.get("format") if isinstance(state, dict) else None
    if kind == _FORMAT:
        return state["task"], json.loads(state["block"]), state
    if kind == "pwmbench-policy-1":
        return state["task"], _dynamics_block(_config_of(json.loads(state["config"]))), state
    raise ConfigError(f"pretrain_checkpoint {str(path)!r}: not a policy.pt or {PRETRAINED_WM_FILE} (format {kind!r})")


def _config_of(values: dict[str, Any]) -> Any:
    from pwmbench.pwm.config import resolve_config

    return resolve_config({k: v for k, v in values.items() if k != "device"})


def load_pretrained_wm(trainer: PWMTrainer, path: str | os.PathLike) -> None:
    """Load a pretrained world model, its rms and the rest of the agent's state (optimisers with their learning
    rates, actor, critic, ret_rms — what PWM's `general.checkpoint` restores; older files have only the world model
    and rms) into `trainer`; refuse one of another task, dynamics variant, preset or world-model shape, naming what
    differs."""
    path = Path(path).expanduser()
    task, block, state = _read_world_model_file(path)
    where = f"pretrain_checkpoint {str(path)!r}"
    if task != trainer.task.spec.name:
        raise ConfigError(f"{where} is a world model of {task!r}, not {trainer.task.spec.name!r}; pretrain one for this task")
    mine = _dynamics_block(trainer.cfg)
    differ = [k for k in mine if mine[k] != block.get(k)]
    if differ:
        detail = "; ".join(f"{k}: file {block.get(k)!r}, this cell {mine[k]!r}" for k in differ)
        raise ConfigError(f"{where} was trained with another world model ({detail}); use a checkpoint of this variant")
    try:
        trainer.wm.load_state_dict(state["wm"])
    except RuntimeError as exc:
        raise ConfigError(f"{where}: its weights do not fit this world model ({str(exc).splitlines()[0][:200]})") from None
    for key, rms in (("obs_rms", trainer.obs_rms), ("rew_rms", trainer.rew_rms)):
        if rms is not None and state.get(key) is not None:
            rms.load_state_dict(state[key])
    restore_agent_state(trainer, state, where)
    trainer.wm_bootstrapped = True


# ----------------------------------------------------------------------------------------------- the phase
class Pretraining:
    """The pretraining phase of one trainer: what is done, and the state a resumed cell needs."""

    def __init__(self, trainer: PWMTrainer) -> None:
        cfg, spec = trainer.cfg, trainer.task.spec
        self.data = open_pretrain_data(cfg.pretrain_data, spec, cfg.horizon) if cfg.pretrain_data else None
        if cfg.pretrain_checkpoint:
            load_pretrained_wm(trainer, cfg.pretrain_checkpoint)
        self.total = 0 if cfg.pretrain_checkpoint else pretrain_iterations(cfg, spec)
        self.step = 0
        self.loaded = False  # the dataset is in the buffer and the rms
        self.done = False
        self.generator = torch.Generator().manual_seed(trainer.seed)  # the cell seed only: same windows per variant
        self.curves: list[dict[str, Any]] = []
        self.wall_s = 0.0
        self._sums = {"wm_loss": 0.0, "dynamics_loss": 0.0, "reward_loss": 0.0, "count": 0.0}

    # ------------------------------------------------------------------ data
    def load_data(self, trainer: PWMTrainer) -> None:
        """Every episode into the replay buffer; obs_rms / rew_rms from every valid entry, NaN → 0 (PWM)."""
        if self.data is None:
            return
        for obs, act, rew, lengths in self.data.episode_blocks():
            trainer.buffer.add_episodes(obs, act, rew, lengths)
            valid = torch.arange(obs.shape[1])[None, :] < lengths[:, None]
            if trainer.obs_rms is not None:
                trainer.obs_rms.update(torch.nan_to_num(obs[valid]).to(trainer.device))
            if trainer.rew_rms is not None:
                trainer.rew_rms.update(torch.nan_to_num(rew[valid]).to(trainer.device))

    # ------------------------------------------------------------------ steps
    def run(self, trainer: PWMTrainer, save: Any = None, every: int | None = None, on_step: Any = None) -> bool:
        """Load the data (once), then the remaining steps; `save()` every `every` steps and at the end; `on_step(step)`
        after each step (tests interrupt there). Returns True when this call finished the phase."""
        if self.done:
            return False
        if not self.loaded:
            self.load_data(trainer)
            self.loaded = True
        cfg, every = trainer.cfg, PRETRAIN_CHECKPOINT_EVERY if every is None else every
        for group in trainer.wm_opt.param_groups:  # PWM: the optimiser's initial rate, no schedule while pretraining
            group["lr"] = cfg.model_lr
        while self.step < self.total:
            start = time.perf_counter()
            self._one_step(trainer)
            self.step += 1
            self.wall_s += time.perf_counter() - start
            if self.step % PRETRAIN_LOG_EVERY == 0 or self.step == self.total:
                self._log(cfg.model_lr)
            if on_step is not None:
                on_step(self.step)
            if save is not None and every and self.step % every == 0 and self.step < self.total:
                save()
        self.done = True
        trainer.wm_bootstrapped = True
        if save is not None:
            save()
        return True

    def _one_step(self, trainer: PWMTrainer) -> None:
        losses, grad_norm = trainer.world_model_step(generator=self.generator, update_rms=False, label="pretrain ")
        for key, value in losses.items():
            if key in self._sums:
                self._sums[key] += value
        self._sums["count"] += 1
        self._sums["wm_grad_norm"] = grad_norm

    def _log(self, lr: float) -> None:
        n = max(self._sums["count"], 1.0)
        row = {"epoch": self.step, "env_steps": 0, "wall_s": self.wall_s, "model_lr": lr, "wm_updates": self._sums["count"],
               "wm_grad_norm": self._sums.get("wm_grad_norm"), **{k: self._sums[k] / n for k in ("wm_loss", "dynamics_loss", "reward_loss")}}  # fmt: skip
        self.curves.append(row)
        self._sums = {"wm_loss": 0.0, "dynamics_loss": 0.0, "reward_loss": 0.0, "count": 0.0}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "total": self.total, "loaded": self.loaded, "done": self.done, "generator": self.generator.get_state(),
                "curves": [dict(r) for r in self.curves], "wall_s": self.wall_s, "sums": dict(self._sums)}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["total"] != self.total:
            raise PwmbenchError(f"the checkpoint pretrains for {state['total']} steps, this cell for {self.total}; pass --restart")
        self.step, self.loaded, self.done, self.wall_s = state["step"], state["loaded"], state["done"], state["wall_s"]
        self.generator.set_state(state["generator"])
        self.curves, self._sums = [dict(r) for r in state["curves"]], dict(state["sums"])
