"""pwmbench's public API: everything a plugin implements, receives or may call.

Plugins import from here (and `pwmbench.hookspecs.hookimpl`, `pwmbench.testing`) and nowhere else in
pwmbench; anything a built-in plugin needs that is missing here is added here, because third parties
will need it too.
"""

from __future__ import annotations

from typing import Any

from pwmbench.errors import ConfigError, PluginError, PwmbenchError, check_keys, suggest
from pwmbench.hookspecs import hookimpl
from pwmbench.jobs.graph import JobGraph, order_jobs
from pwmbench.nn import (
    PRESETS,
    FeatureAffine,
    NormedLinear,
    RewardHead,
    SimNorm,
    WorldModel,
    WorldModelLoss,
    WorldModelPreset,
    build_world_model,
    count_parameters,
    init_weights,
    mlp,
    symexp,
    symlog,
    two_hot,
)
from pwmbench.nn.checkpoint_import import import_world_model, read_checkpoint
from pwmbench.plugin.interfaces import (
    JOB_STATES,
    DependencyFailed,
    DynamicsContext,
    DynamicsModel,
    Executor,
    Integrator,
    Job,
    JobStatus,
    Resources,
    RunEvent,
    Task,
    TaskSet,
    TaskSpec,
    VecEnv,
    VelocityFn,
    check_substeps,
    join_inputs,
)
from pwmbench.plugin.job_output import RemoteTraceback, captured_output
from pwmbench.plugin.manager import Plugins, get_plugins, set_plugins
from pwmbench.plugin.options import Range, resolve_options
from pwmbench.plugin.registry import (
    DynamicsRegistry,
    ExecutorRegistry,
    IntegratorRegistry,
    PluginSource,
    RegistryEntry,
    TaskRegistry,
)


def integrator(name: str, **options: Any) -> Integrator:
    """A fresh instance of the integrator registered as `name` (e.g. "heun"), built with `options` (checked against
    its `default_options`)."""
    return get_plugins().integrators.get(name).build(**options)


def dynamics(name: str) -> type[DynamicsModel]:
    """The dynamics-model class registered as `name` (e.g. "flow"); build it with `cls.build(ctx, **options)`."""
    return get_plugins().dynamics.get(name)


def task(name: str) -> Task:
    """The task or task set registered as `name` (e.g. "dmc/walker-walk", "mt30")."""
    return get_plugins().tasks.get(name)()


def executor(name: str, **options: Any) -> Executor:
    """An executor registered as `name`, constructed with `options` (e.g. workers=4)."""
    return get_plugins().executors.get(name)(**options)


__all__ = [
    # errors
    "ConfigError", "PluginError", "PwmbenchError", "Range", "check_keys", "suggest", "resolve_options",
    # plugin contract
    "hookimpl", "DynamicsContext", "DynamicsModel", "Executor", "Integrator", "Job", "JobStatus", "JOB_STATES", "Resources",
    "DependencyFailed", "JobGraph", "order_jobs", "RemoteTraceback", "captured_output", "RunEvent", "Task", "TaskSet", "TaskSpec", "VecEnv",
    "VelocityFn", "check_substeps", "join_inputs",
    "DynamicsRegistry", "ExecutorRegistry", "IntegratorRegistry", "TaskRegistry", "PluginSource", "RegistryEntry",
    "Plugins", "get_plugins", "set_plugins",
    # building blocks
    "FeatureAffine", "NormedLinear", "SimNorm", "mlp", "init_weights", "RewardHead", "symlog", "symexp", "two_hot",
    "PRESETS", "WorldModelPreset", "WorldModel", "WorldModelLoss", "build_world_model", "count_parameters",
    "import_world_model", "read_checkpoint",
    # accessors
    "integrator", "dynamics", "task", "executor",
]
