"""The types a plugin implements (Integrator, DynamicsModel, Task, Executor) or receives (contexts, events).

Plugin authors reach these through `pwmbench.api`; this module holds their definitions so that the
accessor functions in `api` stay short.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pwmbench.errors import ConfigError, PluginError, PwmbenchError
from pwmbench.plugin.options import is_number, resolve_options
from pwmbench.plugin.source import registered_label

VelocityFn = Callable[[Tensor, Any], Tensor]

# What a subclass must implement, as error messages and the registration checks (pwmbench.plugin.validation) name it.
SIGNATURES = {
    "next": "next(self, z, a, emb=None) -> Tensor [B, latent_dim]",
    "step_loss": "step_loss(self, z, a, target, emb=None, *, teacher=None) -> Tensor [B]",
    "step": "step(self, f, x, t, dt) -> Tensor",
    "make_env": "make_env(self, num_envs, seed, device='cpu', differentiable=False) -> VecEnv",
    "task_env": "task_env(self, task_id, num_envs, seed, device='cpu') -> VecEnv",
    "reset": "reset(self, seed=None) -> Tensor [num_envs, obs_dim]",
    "env_step": "step(self, actions) -> (obs, reward, terminated, truncated, info)",
    "run": "run(self, jobs) -> Iterator[(job, outcome)]",
}


def _must_implement(obj: object, method: str) -> NotImplementedError:
    return NotImplementedError(f"{type(obj).__name__} must implement {SIGNATURES[method]}")


def _build_error(owner: str, exc: Exception) -> PluginError:
    """One line naming the plugin, the exception type and its message (the traceback stays chained)."""
    lines = str(exc).strip().splitlines()
    return PluginError(f"{owner}: constructor raised {type(exc).__name__}" + (f": {lines[0]}" if lines else ""))


# --------------------------------------------------------------------------------------------- integrators
def check_substeps(substeps: object) -> int:
    """Return `substeps` as an int ≥ 1, or raise ConfigError saying what was wrong."""
    if isinstance(substeps, bool) or not isinstance(substeps, numbers.Integral):
        raise ConfigError(f"substeps must be an integer ≥ 1, got {substeps!r} ({type(substeps).__name__})")
    if substeps < 1:
        raise ConfigError(f"substeps must be an integer ≥ 1, got {substeps}")
    return int(substeps)


class Integrator:
    """A fixed-step ODE integrator for dx/dt = f(x, t), differentiable end to end.

    Subclasses set `name`, `order` (global order of accuracy) and `evals_per_substep` (calls of `f` per
    substep) and implement `step`. `integrate` splits [t0, t1] into `substeps` equal steps; `t` is passed
    to `f` as a Python float when t0 and t1 are floats. Works batched, on any dtype and device: only
    tensor arithmetic on `x` is used.
    """

    name: ClassVar[str] = "integrator"
    order: ClassVar[int] = 1
    evals_per_substep: ClassVar[int] = 1
    default_options: ClassVar[dict[str, Any]] = {}  # every option __init__ accepts, with its default
    option_types: ClassVar[dict[str, Any] | None] = None  # types where a default does not say (pwmbench.plugin.options)

    @classmethod
    def build(cls, **options: Any) -> Integrator:
        """Check options against `default_options` (names and types; strings coerced), fill defaults, construct."""
        owner = registered_label(cls, "integrator")
        resolved = resolve_options(options, cls.default_options, cls.option_types, owner=owner)
        try:
            return cls(**resolved)
        except PwmbenchError:
            raise
        except Exception as exc:
            raise _build_error(owner, exc) from exc

    def step(self, f: VelocityFn, x: Tensor, t: Any, dt: Any) -> Tensor:
        raise _must_implement(self, "step")

    def integrate(self, f: VelocityFn, x0: Tensor, t0: Any = 0.0, t1: Any = 1.0, substeps: int = 1) -> Tensor:
        k = check_substeps(substeps)
        dt = (t1 - t0) / k
        x = x0
        for i in range(k):
            x = self.step(f, x, t0 + i * dt, dt)
        return x

    def evals(self, substeps: int) -> int:
        """Velocity evaluations one `integrate` call costs."""
        return self.evals_per_substep * check_substeps(substeps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order}, evals_per_substep={self.evals_per_substep})"


# --------------------------------------------------------------------------------------------- dynamics
@dataclass(frozen=True)
class DynamicsContext:
    """What the world-model shell tells a dynamics model about the shapes around it.

    `units` are the hidden widths of the dynamics network: the preset's, unless the variant overrides
    them with the `units` dynamics option (the parity solver does exactly that).
    """

    latent_dim: int
    action_dim: int
    task_dim: int = 0
    units: tuple[int, ...] = (512, 512)
    simnorm_dim: int = 8

    @property
    def input_dim(self) -> int:
        """Width of `[z, a(, task embedding)]`."""
        return self.latent_dim + self.action_dim + self.task_dim


class DynamicsModel(nn.Module):
    """A latent dynamics model: the one part of the world model that variants swap.

    Subclasses declare `default_options` (every option they accept, with its default) and implement
    `next` and `step_loss`. The world-model shell owns the rollout, the γ^t weighting and the /H
    aggregation, so every dynamics model is trained under the same rules.

    - `next(z, a, emb)`: differentiable one-step prediction z_{t+1} (world-model rollout and the actor's
      imagined rollouts both use it).
    - `step_loss(z, a, target, emb, teacher=...)`: per-sample training loss for one rollout step, shape [B];
      `target` = encode(obs_{t+1}) (no grad), `teacher` = encode(obs_t).
    - `train_step`: loss and next latent together (override when they share work, as MSE does).
    - `evals_per_next` / `evals_per_train_step`: network evaluations each costs (cost accounting).
    """

    default_options: ClassVar[dict[str, Any]] = {}
    # Optional: option → type spec for options whose default does not say enough (a None default, a list that may be
    # empty, a choice: Literal["a", "b"]); the others are checked against their default's type (pwmbench.plugin.options).
    option_types: ClassVar[dict[str, Any] | None] = None

    def __init__(self, ctx: DynamicsContext) -> None:
        super().__init__()
        self.ctx = ctx

    @classmethod
    def build(cls, ctx: DynamicsContext, **options: Any) -> DynamicsModel:
        """Check options against `default_options` (names and types; CLI strings coerced), fill defaults, construct.

        A ConfigError names the plugin, the option, the expected type and the value; an exception from the
        constructor becomes one PluginError line naming the plugin, the exception type and its message."""
        owner = registered_label(cls, "dynamics model")
        resolved = resolve_options(options, cls.default_options, cls.option_types, owner=owner)
        try:
            model = cls(ctx, **resolved)
        except PwmbenchError:
            raise
        except Exception as exc:
            raise _build_error(owner, exc) from exc
        model._build_options = resolved  # what options() returns unless the class overrides it
        return model

    @property
    def evals_per_next(self) -> int:
        return 1

    @property
    def evals_per_train_step(self) -> int:
        return self.evals_per_next

    def options(self) -> dict[str, Any]:
        """The resolved options, recorded with results: by default every option `build` resolved (declared ones with
        their defaults filled in); override it when the model normalises them."""
        return dict(getattr(self, "_build_options", {}))

    def next(self, z: Tensor, a: Tensor, emb: Tensor | None = None) -> Tensor:
        raise _must_implement(self, "next")

    def step_loss(
        self, z: Tensor, a: Tensor, target: Tensor, emb: Tensor | None = None, *, teacher: Tensor | None = None
    ) -> Tensor:
        raise _must_implement(self, "step_loss")

    def train_step(
        self, z: Tensor, a: Tensor, target: Tensor, emb: Tensor | None = None, *, teacher: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        return self.step_loss(z, a, target, emb, teacher=teacher), self.next(z, a, emb)


def join_inputs(*parts: Tensor | None) -> Tensor:
    """Concatenate the non-None parts along the last dim (e.g. `[z, a, emb]` with emb optional)."""
    return torch.cat([p for p in parts if p is not None], dim=-1)


# --------------------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class TaskSpec:
    """Static facts of a task or a task set (padded dims for sets)."""

    name: str
    obs_dim: int
    act_dim: int
    episode_length: int
    n_tasks: int = 1
    task_dim: int = 0
    action_dims: tuple[int, ...] | None = None
    score: str = "return"  # see SCORES
    description: str = ""
    num_envs: int | None = None  # the task's customary number of parallel envs (PWM's), if it has one
    pretrain_wm_iterations: int | None = None  # world-model pretraining steps PWM used for the task (its README), if any
    random_score: float | None = None  # "return" tasks: the raw return that normalises to 0 ...
    reference_score: float | None = None  # ... and the one that normalises to 1 (both or neither)
    score_source: str = ""  # where the references come from (a paper, a table, a definition)

    SCORES: ClassVar[dict[str, str]] = {
        "return": "(final return − random_score) / (reference_score − random_score); without references the scorer "
        "falls back to a baseline-anchored scale, flagged in the verdict",
        "success": "success rate at the episode's end, already in [0, 1]",
        "members": "a task set: each member task is scored by its own spec",
    }

    def __post_init__(self) -> None:
        for key in ("obs_dim", "act_dim", "episode_length", "n_tasks"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"TaskSpec({self.name!r}).{key} must be a positive int, got {value!r}")
        steps = self.pretrain_wm_iterations
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
            raise ConfigError(f"TaskSpec({self.name!r}).pretrain_wm_iterations must be an int ≥ 0 or None, got {steps!r}")
        if self.action_dims is not None and len(self.action_dims) != self.n_tasks:
            raise ConfigError(f"TaskSpec({self.name!r}): {len(self.action_dims)} action_dims for {self.n_tasks} tasks")
        if self.score not in self.SCORES:
            raise ConfigError(f"TaskSpec({self.name!r}).score must be one of {sorted(self.SCORES)}, got {self.score!r}")
        refs = (self.random_score, self.reference_score)
        if (refs[0] is None) != (refs[1] is None):
            raise ConfigError(f"TaskSpec({self.name!r}): give both random_score and reference_score, or neither")
        if refs[0] is not None:
            if self.score != "return":
                raise ConfigError(f"TaskSpec({self.name!r}): score references only apply to score='return' tasks")
            if not all(is_number(r) for r in refs) or refs[1] == refs[0]:
                raise ConfigError(f"TaskSpec({self.name!r}): random_score and reference_score must be finite and differ, got {refs}")

    @property
    def has_references(self) -> bool:
        """Whether the task fixes its own normalisation (success tasks do by definition)."""
        return self.score == "success" or self.reference_score is not None

    def score_record(self) -> dict[str, Any]:
        """The score definition as run rows record it, so that results are scored without the plugin installed."""
        return {"score_kind": self.score, "score_random": self.random_score, "score_reference": self.reference_score,
                "score_source": self.score_source or None}  # fmt: skip

    def normalised_score(self, value: float) -> float | None:
        """`value` (the final return; the success rate for "success" tasks) on the task's fixed scale, or None when
        the task declares no references (the scorer then uses its flagged fallback)."""
        if self.score == "success":
            return float(value)
        if self.reference_score is None or self.random_score is None:
            return None
        return (float(value) - self.random_score) / (self.reference_score - self.random_score)


class VecEnv:
    """A batch of `num_envs` environments stepped together; every tensor has a leading `num_envs` dim.

    - `reset(seed=None) -> obs`: reset every copy (the same seed → the same initial states).
    - `step(actions) -> (obs, reward, terminated, truncated, info)`: actions in [−1, 1]. Copies that finish
      are reset at once: `obs` is then the post-reset observation and `info["obs_before_reset"]` holds the
      final one. `terminated` means a true terminal state (no bootstrap); `truncated` a time limit.
    - `success` (optional, in `info`): per-copy task success, for tasks that define it.
    """

    num_envs: int
    obs_dim: int
    act_dim: int
    episode_length: int

    def reset(self, seed: int | None = None) -> Tensor:
        raise _must_implement(self, "reset")

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        raise _must_implement(self, "env_step")

    def close(self) -> None:
        """Release simulator resources (optional)."""


class Task:
    """A task (or a task set): a spec and a way to make batched environments.

    `make_env(num_envs, seed, device="cpu", differentiable=False)` returns an object with
    `reset(seed=None) -> obs` and `step(actions) -> (obs, reward, terminated, truncated, info)`, all torch
    tensors with a leading `num_envs` dimension.
    """

    spec: TaskSpec

    def make_env(self, num_envs: int, seed: int, device: str = "cpu", differentiable: bool = False) -> Any:
        raise _must_implement(self, "make_env")


class TaskSet(Task):
    """A task set (MT30, MT80, ...): a `Task` whose spec holds the padded widths, `n_tasks`, `task_dim` and every
    member's action width (`spec.action_dims`), whose `tasks` names the members in task-id order (the id is the
    position), and whose `task_env(task_id, num_envs, seed, device)` makes one member's batched env as the
    multitask agent sees it: observations zero-padded to `spec.obs_dim`, actions of width `spec.act_dim` sliced to
    the member's. Offline training reads the set's data from a directory (`pwmbench.data`)."""

    tasks: tuple[str, ...]

    def task_env(self, task_id: int, num_envs: int, seed: int, device: str = "cpu") -> VecEnv:
        raise _must_implement(self, "task_env")


# --------------------------------------------------------------------------------------------- executors
@dataclass(frozen=True)
class Resources:
    """What one job needs from the machine that runs it (a suite's `[executor.resources.<kind>]`).

    `memory_gb` and `time_min` are None when the suite does not say (the scheduler's defaults apply)."""

    cpus: int = 1
    gpus: int = 0
    memory_gb: float | None = None
    time_min: int | None = None

    def __post_init__(self) -> None:
        for key, most in (("cpus", 4096), ("gpus", 64)):  # one job on one node: more is a typo no scheduler could place
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not (1 if key == "cpus" else 0) <= value <= most:
                raise ConfigError(f"resources.{key} must be an int in [{1 if key == 'cpus' else 0}, {most}] (one job on one node), got {value!r}")
        for key, most in (("memory_gb", 100_000), ("time_min", 525_600)):  # 100 TB, a year
            value = getattr(self, key)
            if value is not None and (not is_number(value) or not 0 < value <= most):
                raise ConfigError(f"resources.{key} must be a positive number at most {most:,}, got {value!r}")


@dataclass(frozen=True)
class Job:
    """One unit of work for an executor: a picklable function of picklable keyword arguments.

    - `kind`: what the job is ("cell" a single-task cell, "world_model" a task set's world model, "member" one
      member task's policy); suites give resources per kind.
    - `depends_on`: keys of jobs that must have finished (returned, whatever status they recorded) before this one
      starts; a job whose dependency raised is not run (its outcome is a `DependencyFailed`).
    - `log`: the file an executor that captures output writes the job's stdout/stderr to (None: not captured).
    - `group`: jobs with the same group, kind and dependencies may be submitted together (a Slurm job array).

    Job functions are idempotent: run again after a crash, preemption or retry, they resume from their own
    checkpoint and write their result files once (atomic renames), so an executor may rerun any job.
    """

    key: str
    fn: Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "cell"
    depends_on: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)
    log: str | None = None
    group: str | None = None


class DependencyFailed(RuntimeError):
    """The outcome of a job that was not run because a job it depends on raised."""

    def __init__(self, key: str, dependency: str, error: str) -> None:
        super().__init__(f"{key} not run: its dependency {dependency} failed ({error})")
        self.key, self.dependency, self.error = key, dependency, error


JOB_STATES = ("queued", "running", "done", "failed", "preempted", "cancelled", "unknown")


@dataclass(frozen=True)
class JobStatus:
    """One job as an executor or scheduler sees it: `state` is one of JOB_STATES; `log` where its output is."""

    key: str
    state: str
    log: str | None = None
    detail: str | None = None
    scheduler_id: str | None = None

    def __post_init__(self) -> None:
        if self.state not in JOB_STATES:
            raise ValueError(f"JobStatus.state must be one of {JOB_STATES}, got {self.state!r}")


class Executor:
    """Runs a graph of jobs (`Job.depends_on`) and yields `(job, outcome)` as each finishes.

    - `run(jobs)`: start every job once its dependencies have finished, at most the executor's capacity at a time,
      and yield `(job, return value)` or `(job, exception)` as each ends (a job whose dependency raised yields a
      `DependencyFailed` without running). Jobs come in dependency order (`pwmbench.api.order_jobs` checks a graph).
      Closing the iterator early (Ctrl-C in the caller) must stop what the executor started: `cancel()`.
    - `cancel()`: stop every job this executor started and is still running.
    - `detachable` / `submit(jobs, record_dir)`: executors whose jobs outlive the caller (a cluster scheduler) submit
      the whole graph, write what they need to find it again under `record_dir`, and return at once.
    - `status(record_dir)`: the scheduler's view of what `submit` sent (JobStatus per job), when it is reachable.
    """

    detachable: ClassVar[bool] = False
    record_dir: str | None = None  # set by the runner before `run`: a directory of the results (`.executor/`) for its own files
    # Optional, as for dynamics models: every option the constructor accepts besides `workers`, with its default;
    # check them with `pwmbench.api.resolve_options(options, self.default_options, owner=...)`.
    default_options: ClassVar[dict[str, Any]] = {}
    option_types: ClassVar[dict[str, Any] | None] = None

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Any]]:
        raise _must_implement(self, "run")

    def cancel(self) -> None:
        """Stop what is running (default: nothing to stop)."""

    def submit(self, jobs: Iterable[Job], record_dir: str) -> list[JobStatus]:
        raise NotImplementedError(f"{type(self).__name__} cannot detach: its jobs live in this process")

    def status(self, record_dir: str) -> list[JobStatus]:
        return []


# --------------------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class RunEvent:
    """What loggers hear: a cell `started`, reported `metrics` at a step, or `finished` with a status."""

    kind: str  # "started" | "metrics" | "finished"
    cell: Mapping[str, Any]
    step: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    status: str | None = None
    reason: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    KINDS: ClassVar[tuple[str, ...]] = ("started", "metrics", "finished")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"RunEvent.kind must be one of {self.KINDS}, got {self.kind!r}")
