"""THE plugin API of pwmbench: every hook, its arguments, and what an implementation must do.

A plugin is a module (or object) with functions marked `@hookimpl`, made known to pwmbench through an
entry point in the group ``pwmbench`` of its distribution::

    [project.entry-points.pwmbench]
    my_dynamics = "my_package.pwmbench_plugin"

and implementing any subset of the hooks below (pluggy matches them by name; an implementation may take
fewer arguments than the spec). Registration hooks receive a registry object and call ``registry.add``;
a name that two plugins register is an error naming both. Set ``PWMBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` to
load only pwmbench's own plugins, ``PWMBENCH_PLUGINS=mod1,mod2`` to load modules that are not installed,
and ``PWMBENCH_BLOCK_PLUGINS=name1,name2`` to skip plugins by entry-point name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pwmbench.plugin.interfaces import RunEvent
    from pwmbench.plugin.registry import DynamicsRegistry, ExecutorRegistry, IntegratorRegistry, TaskRegistry

PROJECT = "pwmbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def pwmbench_register_dynamics(registry: DynamicsRegistry) -> None:
    """Register dynamics models.

    :param registry: call ``registry.add(name, cls, description=...)`` with ``cls`` a subclass of
        ``pwmbench.api.DynamicsModel``. ``cls.default_options`` lists every option the model accepts
        (suite files and ``--dynamics name:key=value`` are validated against it: names, and types from the
        defaults or ``cls.option_types``); ``cls.build(ctx, **options)`` constructs it for a
        ``pwmbench.api.DynamicsContext``. ``add`` checks the class (subclass, ``next`` and ``step_loss``
        implemented, options, a build and one ``next`` on a small context) and refuses it with a message
        naming the plugin and what is missing.

    Called once per plugin when the plugin manager starts; every implementation runs. Check your model
    with ``pwmbench.testing.check_dynamics_model``.
    """


@hookspec
def pwmbench_register_integrators(registry: IntegratorRegistry) -> None:
    """Register ODE integrators used by flow-style dynamics models.

    :param registry: call ``registry.add(name, cls)`` with ``cls`` a ``pwmbench.api.Integrator`` subclass that
        declares ``order`` and ``evals_per_substep`` (positive ints) and implements ``step(f, x, t, dt)``
        (checked by ``add``); ``cls.build(**options)`` constructs it.

    Called once per plugin; every implementation runs. Check an integrator with
    ``pwmbench.testing.check_integrator`` (exactness, convergence order, differentiability).
    """


@hookspec
def pwmbench_register_tasks(registry: TaskRegistry) -> None:
    """Register tasks and task sets.

    :param registry: call ``registry.add(name, factory)``; ``factory()`` returns a ``pwmbench.api.Task``
        with a ``spec`` (``pwmbench.api.TaskSpec``) and ``make_env(num_envs, seed, device, differentiable)``.
        Names are namespaced by family: ``dmc/walker-walk``, ``dflex/ant``, ``mt30``.

    Called once per plugin; every implementation runs. ``add`` calls the factory once to check what it
    returns, so factories should be cheap: heavy imports (mujoco, warp) belong inside ``make_env``.
    """


@hookspec
def pwmbench_register_executors(registry: ExecutorRegistry) -> None:
    """Register executors that run a suite's job graph (local processes, Ray, Slurm, ...).

    :param registry: call ``registry.add(name, cls)`` with ``cls`` a ``pwmbench.api.Executor`` subclass;
        ``cls(workers=N, **options)`` constructs it (options from the suite's ``[executor]`` table and
        ``--set executor.KEY=VALUE``). Its ``run(jobs)`` gets ``pwmbench.api.Job`` objects — a picklable function
        and arguments, a ``kind`` (cell, world_model, member, collect), ``depends_on`` keys, ``resources`` (cpus,
        gpus, memory_gb, time_min), a ``log`` path and a ``group`` (jobs that may go as one array) — starts each
        once its dependencies have returned (``pwmbench.api.JobGraph`` does the bookkeeping), and yields
        ``(job, outcome)`` as each ends, an exception object for a job that raised and ``DependencyFailed`` for one
        never run. ``cancel()`` stops what it started (Ctrl-C); executors whose jobs outlive the caller set
        ``detachable = True`` and implement ``submit(jobs, record_dir)`` and ``status(record_dir)`` (JobStatus per
        job: queued, running, done, failed, preempted, cancelled, unknown). ``record_dir`` is set to the results'
        ``.executor/`` before ``run``. Jobs are idempotent: an executor may run one again after a lost worker.

    Called once per plugin; every implementation runs.
    """


@hookspec
def pwmbench_run_event(event: RunEvent) -> None:
    """Hear what a training cell does: ``started``, ``metrics`` at each logging step, ``finished``.

    :param event: a ``pwmbench.api.RunEvent`` (cell identity, step, metrics, status, resolved config).

    Every implementation is called, in the training process, for every event. Loggers (W&B, TensorBoard)
    implement this hook; they must not raise (an exception is reported and the logger is skipped for the
    rest of the run) and should be quick, because they run on the training loop's thread.
    """
