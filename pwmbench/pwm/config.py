"""PWM's hyper-parameters as one typed config, with PWM's own key names (reference/pwm.md).

`resolve_config(preset, overrides)` starts from the shared defaults, applies a world-model preset (which
sets `rew_rms`) and then the overrides; an unknown key is an error naming it and the nearest valid key,
and a value of the wrong type is an error naming the key and the expected type. `--set key=value`
strings parse with the field's type.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pwmbench.errors import ConfigError, check_keys
from pwmbench.nn.presets import preset as get_preset
from pwmbench.plugin.options import MAX_WIDTH, is_widths

MAX_COUNT = 2**31 - 1  # every int field (counts, iterations, widths' ceiling is MAX_WIDTH)
# sizes beyond which a run cannot fit any machine or would not finish: refused by name with the number (a typo,
# e.g. 1e7 for 1e3). Each is far above PWM's own values (horizon 16, 64–512 envs, 3 critics, 10–16 eval episodes).
SIZE_LIMITS = {"horizon": 10_000, "num_envs": 65_536, "num_critics": 64, "eval_episodes": 10_000, "wm_batch_size": 1_000_000,
               "policy_batch_size": 1_000_000, "critic_iterations": 10_000, "critic_batches": 100_000, "esnr_batches": 4_096,
               "grad_probe_batches": 4_096, "diagnostics_windows": 1_000_000, "wm_buffer_size": 2_000_000_000}  # fmt: skip
ACTIVATION_LIMIT_BYTES = 2**40  # 1 TiB: a batch × horizon × width no machine holds
LOGSTD_LIMIT = 10.0  # |init_logstd|, |min_logstd|: std between 4.5e-5 and 2.2e4 (actions live in [-1, 1])
DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")  # torch device types a run can use; existence is checked at training time


@dataclass(frozen=True)
class PWMConfig:
    # world model
    preset: str = "pwm"
    dynamics: str = "mlp"
    dynamics_options: dict[str, Any] = field(default_factory=dict)
    world_model: dict[str, Any] = field(default_factory=dict)  # preset overrides shared by every variant (units, latent_dim, ...)
    # rollout and returns
    horizon: int = 16
    gamma: float = 0.99
    lam: float = 0.95
    wm_rho: float | None = None  # discount of the world-model rollout loss; None → gamma (reference/pwm.md)
    # environment
    num_envs: int | None = None  # None → the task's customary count, else 64
    max_epochs: int = 15_000
    # optimisation
    actor_lr: float = 5e-4
    critic_lr: float = 5e-4
    model_lr: float = 3e-4
    min_lr: float = 1e-5
    lr_schedule: str = "linear"  # "linear" (decay to min_lr over max_epochs) or "constant"
    betas: tuple[float, float] = (0.7, 0.95)  # actor and critic Adam betas; the world model uses Adam's defaults
    actor_grad_norm: float = 1.0
    critic_grad_norm: float = 100.0
    wm_grad_norm: float = 20.0
    critic_iterations: int = 8
    critic_batches: int = 4
    wm_batch_size: int = 256
    wm_iterations: int = 8
    initial_wm_iterations: int | None = None  # None → the task's episode length (PWM's first block)
    wm_buffer_size: int = 1_000_000
    # networks
    actor_units: tuple[int, ...] = (400, 200, 100)
    critic_units: tuple[int, ...] = (400, 200)
    num_critics: int = 3
    init_logstd: float = -1.0
    min_logstd: float = -1.427
    detach: bool = True  # the actor sees z.detach()
    # normalisation
    obs_rms: bool = False
    ret_rms: bool = True
    rew_rms: bool | None = None  # None → the preset's value
    rew_clip: float = 5.0
    # evaluation, logging, checkpoints
    esnr_every: int = 10  # epochs between actor-gradient SNR measurements; 0 = never
    esnr_batches: int = 8  # micro-batches (groups of envs) per measurement
    eval_every: int = 100  # epochs; 0 = never
    eval_episodes: int = 10
    # single task: one evaluation of the untrained actor before the first epoch (curves row epoch 0, after any
    # pretraining): the level a learning curve is read against ("has it learned at all?")
    eval_untrained: bool = True
    log_every: int = 1
    checkpoint_every: int = 100  # epochs; 0 = never
    device: str = "cpu"
    # task sets (multitask, offline; pwm/multitask.py): the world model is trained on a TD-MPC2-format dataset,
    # then each task's policy for `max_epochs` iterations of `policy_batch_size` imagined rollouts from dataset
    # states, evaluated every `eval_every` iterations with `eval_episodes` real episodes.
    data_dir: str | None = None  # the dataset directory (chunk_<i>.pt files)
    allow_pickle: bool = False  # unpickle dataset files the safe loader refuses (trusted sources only)
    offline_wm_iterations: int = 100_000  # world-model gradient steps on the dataset (batches of wm_batch_size)
    policy_batch_size: int = 512  # start states per policy iteration
    task_ids: tuple[int, ...] | None = None  # train policies for these task ids only (None: every task of the set)
    wm_recipe: str | None = None  # task sets: "tdmpc2" (TD-MPC2's offline recipe, PWM's source; the default) or "pwm-single"
    critic_targets: str = "pwm-code"  # task sets: "pwm-code" (PWM's code: one-step r + γV(z')) or "td-lambda" (the paper)
    # the reward the actor (and its critic targets) sees from a two-hot head in imagination: "pwm-code" (Σ softmax·bins,
    # no symexp — PWM's `almost_two_hot_inv`, what produced its MT30/MT80 numbers) or "symexp" (the decoded reward)
    actor_reward_decode: str = "pwm-code"
    # task sets: start from a TD-MPC2 or PWM world-model checkpoint instead of training one (PWM's MT30/MT80 runs load
    # TD-MPC2's with `general.checkpoint`); imported with api.import_world_model, MLP dynamics only
    world_model_checkpoint: str | None = None
    world_model_checkpoint_source: str = "tdmpc2"  # "tdmpc2" (its save(): {"model": ...}) or "pwm" (PWM's save(): "world_model"/"wm")
    # single-task pretraining (PWM's `general.pretrain`): world-model steps on a dataset before the first epoch
    pretrain_data: str | None = None  # a TD-MPC2-format dataset directory of this task (pwmbench data collect --task)
    pretrain_wm_iterations: int | None = None  # None → PWM's number for the task where known, else 50,000
    pretrain_checkpoint: str | None = None  # start from a checkpoint instead (a finished cell's policy.pt or pretrained_wm.pt): world model, optimisers, actor, critic, statistics
    # model-quality diagnostics on held-out windows (pwm/diagnostics.py), at every evaluation
    diagnostics_windows: int = 256  # held-out (H+1)-step windows per measurement; 0 = off
    # gradient quality against the simulator (pwm/gradient_probe.py), on tasks with a differentiable env
    grad_probe_every: int = 0  # epochs between probes; 0 = off
    grad_probe_horizons: tuple[int, ...] | None = None  # rollout lengths probed (None → the training horizon)
    grad_probe_batches: int = 8  # micro-batches (groups of envs) for the probe's ESNR and gradient variance

    def validate(self) -> None:
        """Every field's range, the error naming the field. Bounds beyond PWM's own: counts fit a 32-bit int (more is a
        typo that would fail, or never finish, at training time), learning rates are at most 1, log-stds within
        ±LOGSTD_LIMIT, the device one torch knows by type ("cpu", "cuda", "cuda:N", "mps"; it need not exist here)."""
        try:
            get_preset(self.preset).with_overrides(**self.world_model)
        except ConfigError as exc:
            raise ConfigError(f"world_model: {exc}") from None
        for f in fields(self):  # NaN/inf pass every < / > check below: refuse them first, by name; then the int ceiling
            value = getattr(self, f.name)
            for v in value if isinstance(value, tuple) else (value,):
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"{f.name} must be a finite number, got {value!r}")
                if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_COUNT:
                    raise ConfigError(f"{f.name} must be at most {MAX_COUNT:,} (a 32-bit int), got {value!r}")
        for key, limit in SIZE_LIMITS.items():
            value = getattr(self, key)
            if value is not None and value > limit:
                raise ConfigError(f"{key} = {value:,} is beyond what a run can hold or finish (at most {limit:,}; PWM uses far less): a typo?")
        self._check_activation_size()
        positive = ("policy_batch_size", "esnr_batches", "horizon", "max_epochs", "critic_iterations", "critic_batches", "wm_batch_size", "wm_buffer_size", "num_critics", "eval_episodes", "log_every")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        for key in ("actor_units", "critic_units"):
            widths = getattr(self, key)
            if not is_widths(widths):
                raise ConfigError(f"{key} must be a non-empty list of integer widths in [1, {MAX_WIDTH}], got {list(widths)}")
        for key in ("actor_lr", "critic_lr", "model_lr"):
            if not 0 < getattr(self, key) <= 1:
                raise ConfigError(f"{key} must be in (0, 1], got {getattr(self, key)}")
        for key in ("actor_grad_norm", "critic_grad_norm", "wm_grad_norm", "rew_clip"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be > 0, got {getattr(self, key)}")
        if not 0 <= self.min_lr <= min(self.actor_lr, self.critic_lr, self.model_lr):
            raise ConfigError(f"min_lr (where the linear schedule ends) must be in [0, the smallest learning rate], got {self.min_lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two Adam betas in [0, 1), got {list(self.betas)}")
        if self.grad_probe_horizons is not None and (not self.grad_probe_horizons or any(h < 1 for h in self.grad_probe_horizons)):
            raise ConfigError(f"grad_probe_horizons must be a non-empty list of integers ≥ 1, got {list(self.grad_probe_horizons)}")
        if self.task_ids is not None and (not self.task_ids or any(i < 0 for i in self.task_ids) or len(set(self.task_ids)) != len(self.task_ids)):
            raise ConfigError(f"task_ids must be a non-empty list of distinct task ids ≥ 0, got {list(self.task_ids)}")
        if self.grad_probe_batches < 2:
            raise ConfigError(f"grad_probe_batches must be ≥ 2 (a variance needs two micro-batches), got {self.grad_probe_batches}")
        for key in ("wm_iterations", "eval_every", "checkpoint_every", "esnr_every", "offline_wm_iterations", "grad_probe_every", "diagnostics_windows", "initial_wm_iterations", "pretrain_wm_iterations"):
            if (getattr(self, key) or 0) < 0:
                raise ConfigError(f"{key} must be ≥ 0, got {getattr(self, key)}")
        if self.num_envs is not None and self.num_envs < 1:
            raise ConfigError(f"num_envs must be ≥ 1, got {self.num_envs}")
        if not 0 < self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ConfigError(f"need 0 < gamma ≤ 1 and 0 ≤ lam ≤ 1, got gamma={self.gamma}, lam={self.lam}")
        if self.wm_rho is not None and not 0 < self.wm_rho <= 1:
            raise ConfigError(f"wm_rho (the world-model loss discount) must be in (0, 1], got {self.wm_rho}")
        for key in ("init_logstd", "min_logstd"):
            if abs(getattr(self, key)) > LOGSTD_LIMIT:
                raise ConfigError(f"{key} must be in [-{LOGSTD_LIMIT}, {LOGSTD_LIMIT}] (a log standard deviation), got {getattr(self, key)}")
        if self.min_logstd > self.init_logstd:
            raise ConfigError(f"min_logstd {self.min_logstd} is above init_logstd {self.init_logstd}")
        for key, choices in (("lr_schedule", ("linear", "constant")), ("wm_recipe", (None, "tdmpc2", "pwm-single")), ("critic_targets", ("pwm-code", "td-lambda")), ("actor_reward_decode", ("pwm-code", "symexp")),
                             ("world_model_checkpoint_source", ("tdmpc2", "pwm"))):
            if getattr(self, key) not in choices:
                raise ConfigError(f"{key} must be one of {', '.join(repr(c) for c in choices if c is not None)}, got {getattr(self, key)!r}")
        if not DEVICE.fullmatch(self.device):
            raise ConfigError(f"device must be \"cpu\", \"cuda\", \"cuda:N\" (N = 0, 1, ...) or \"mps\", got {self.device!r}")
        for key in ("data_dir", "pretrain_data", "pretrain_checkpoint", "world_model_checkpoint", "dynamics"):
            if getattr(self, key) == "":
                raise ConfigError(f"{key} must not be an empty string")
        if self.world_model_checkpoint is not None and self.dynamics != "mlp":
            raise ConfigError(
                f"world_model_checkpoint holds a {self.world_model_checkpoint_source} world model with MLP dynamics; this variant's dynamics "
                f"is {self.dynamics!r}: set world_model_checkpoint on the mlp variant only, or train every variant (comparing an imported "
                "world model with a freshly trained one is not a comparison of dynamics models)"
            )

    def _check_activation_size(self) -> None:
        """The largest batch × (horizon + 1) × widest layer × 4 bytes, the activations one imagined rollout keeps for
        its backward pass: refused with the number when no machine could hold it (checked before anything allocates)."""
        widths = [*self.actor_units, *self.critic_units, *(self.world_model.get("units") or [512]), self.world_model.get("latent_dim") or 512]
        batch = max(self.wm_batch_size, self.policy_batch_size, self.num_envs or 64)
        need = batch * (self.horizon + 1) * max(int(w) for w in widths) * 4 * 2
        if need > ACTIVATION_LIMIT_BYTES:
            raise ConfigError(f"a rollout of batch {batch:,} × horizon {self.horizon:,} × width {max(widths):,} needs ~{need / 2**40:.1f} TiB of "
                              f"activations: more than any machine holds (reduce wm_batch_size / policy_batch_size / num_envs or horizon)")  # fmt: skip

    @property
    def wm_training_steps(self) -> int:
        """World-model steps a task-set cell trains: none when it imports `world_model_checkpoint`."""
        return 0 if self.world_model_checkpoint else self.offline_wm_iterations

    @property
    def rho(self) -> float:
        return self.gamma if self.wm_rho is None else self.wm_rho

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The keys that define what is trained (run rows, config hash, the resume check): `to_dict` without the
        permissions of one invocation (`allow_pickle`, given on the command line), which change no result."""
        return {k: v for k, v in self.to_dict().items() if k not in INVOCATION_KEYS}

    def to_json(self) -> str:
        return json.dumps(self.identity(), sort_keys=True)


INVOCATION_KEYS = ("allow_pickle",)  # set by the person running the command (`--allow-pickle`), never by a suite file


KEYS = tuple(f.name for f in fields(PWMConfig))
_HINTS = typing.get_type_hints(PWMConfig)


def _coerce(key: str, value: Any) -> Any:
    """Check/convert `value` to the type of field `key` (ints accepted for floats, lists for tuples)."""
    hint = _HINTS[key]
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is str and isinstance(value, str):
            return value
        if origin is tuple and isinstance(value, (list, tuple)):
            item = typing.get_args(option)[0]
            kinds = (int,) if item is int else (int, float)  # a width of 1.7 is an error, not 1
            if all(isinstance(v, kinds) and not isinstance(v, bool) for v in value):
                return tuple(item(v) for v in value)
        if origin is dict and isinstance(value, dict):
            return dict(value)
    expected = " or ".join(_describe(o) for o in options)
    raise ConfigError(f"config key {key!r} expects {expected}, got {value!r} ({type(value).__name__})")


def _describe(hint: Any) -> str:
    """A field type in words: tuple[int, ...] → 'a list of ints'."""
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return f"a list of {item.__name__}s"
    return getattr(hint, "__name__", str(hint))


def resolve_config(overrides: dict[str, Any] | None = None, where: str | None = None) -> PWMConfig:
    """Defaults → preset (sets rew_rms unless overridden) → overrides; validated."""
    overrides = dict(overrides or {})
    check_keys(overrides, KEYS, kind="config key", where=where)
    try:
        values = {k: _coerce(k, v) for k, v in overrides.items()}
        cfg = PWMConfig(**values)
        if cfg.rew_rms is None:
            cfg = dataclasses.replace(cfg, rew_rms=get_preset(cfg.preset).rew_rms)
        cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None
    return cfg


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """['horizon=8', 'betas=[0.9,0.99]', 'preset=pwm_5M'] → dict; values parse as JSON, else as strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        check_keys([key], KEYS, kind="config key", where="--set")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = {"true": True, "false": False, "none": None, "null": None}.get(raw.strip().lower(), raw.strip())
    return out


def check_device(device: str) -> None:
    """The device exists on the machine the job runs on (checked there, not where the suite was parsed: a login
    node has no GPU): a ConfigError naming what this machine has, instead of torch's assertion deep in a constructor."""
    import torch

    kind, _, index = device.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device!r}: this machine has no CUDA device (torch {torch.__version__}); use device = \"cpu\"")
        if index and int(index) >= count:
            raise ConfigError(f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r}: MPS is not available on this machine; use device = \"cpu\"")
