"""What `registry.add` checks before it accepts a plugin's class: the plugin API, at the first mistake.

A class that is not what its hook promises used to be accepted and listed, and failed much later (parity's
AttributeError, a bare NotImplementedError at training time). Each `*_problems` function returns what is wrong with
a registered object, one phrase per problem (empty: nothing), so the registry's PluginError names the plugin, its
distribution and every missing piece at once. The checks are cheap: a dynamics model is built on a small context and
predicts one small batch (with the global RNG state saved and restored), an integrator takes one step, a task factory
is called (factories must be cheap: heavy imports belong in `make_env`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pwmbench.errors import ConfigError, PwmbenchError
from pwmbench.plugin.interfaces import (
    SIGNATURES,
    DynamicsContext,
    DynamicsModel,
    Executor,
    Integrator,
    Task,
    TaskSet,
    TaskSpec,
)
from pwmbench.plugin.options import check_units, coerce, describe_type, resolve_options
from pwmbench.plugin.source import registered_label

# A small context shaped like TD-MPC2's (latent = 2 SimNorm groups of 8) and a batch of 3: cheap to build and run.
VALIDATION_CONTEXT = DynamicsContext(latent_dim=16, action_dim=2, task_dim=0, units=(16,), simnorm_dim=8)
VALIDATION_BATCH = 3


def _name(obj: Any) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _subclass_problem(obj: Any, base: type, what: str) -> str | None:
    if isinstance(obj, base):
        return f"{type(obj).__name__}() is an instance: register the class itself (registry.add(name, {type(obj).__name__}))"
    if not isinstance(obj, type) or not issubclass(obj, base):
        return f"{_name(obj)} is not a subclass of pwmbench.api.{base.__name__} ({what})"
    return None


def _missing_methods(cls: type, base: type, methods: tuple[str, ...]) -> list[str]:
    return [f"{cls.__name__} does not implement {SIGNATURES[m]}" for m in methods if getattr(cls, m, None) is getattr(base, m)]


def options_problems(cls: type) -> list[str]:
    """`default_options` is a dict keyed by option names; `option_types` (optional) names only declared options
    and every default fits its declared type."""
    defaults = getattr(cls, "default_options", {})
    if not isinstance(defaults, Mapping):
        return [f"{cls.__name__}.default_options must be a dict of option name → default, got {type(defaults).__name__}"]
    problems = [f"{cls.__name__}.default_options has a non-string key {k!r}" for k in defaults if not isinstance(k, str)]
    declared = getattr(cls, "option_types", None)
    if declared is None:
        return problems
    if not isinstance(declared, Mapping):
        return [*problems, f"{cls.__name__}.option_types must be a dict of option name → type, got {type(declared).__name__}"]
    extra = sorted(set(declared) - set(defaults))
    if extra:
        problems.append(f"{cls.__name__}.option_types names {extra}, which default_options does not declare (every option needs a default)")
    for name, spec in declared.items():
        if name in defaults:
            try:
                coerce(defaults[name], spec)
            except ConfigError:
                problems.append(f"the default of option {name!r} ({defaults[name]!r}) is not {describe_type(spec)} as option_types declares")
    return problems


def _init_problems(cls: type, leading: tuple[str, ...]) -> list[str]:
    """`__init__` takes every option of `default_options` as a keyword and requires nothing else (after `leading`)."""
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1 + len(leading):]
    except (TypeError, ValueError):
        return []
    defaults = getattr(cls, "default_options", {})
    if not isinstance(defaults, Mapping):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    takes = {p.name for p in params if p.kind in kinds}
    problems = []
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        extra = [k for k in defaults if k not in takes]
        if extra:
            problems.append(f"default_options declares {extra} but {cls.__name__}.__init__ takes no such argument (options are passed as keywords)")
    required = [p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty and p.name not in defaults]
    if required:
        head = ", ".join(("self", *leading))
        problems.append(f"{cls.__name__}.__init__({head}, ...) requires {required}, which default_options does not declare "
                        "(list every option there, with its default)")  # fmt: skip
    return problems


def dynamics_problems(cls: Any) -> list[str]:
    """A DynamicsModel subclass implementing next and step_loss, with usable options, that builds on a small context
    with its default options and whose `next` returns [B, latent_dim]."""
    wrong = _subclass_problem(cls, DynamicsModel, "dynamics models implement next and step_loss")
    if wrong:
        return [wrong]
    problems = _missing_methods(cls, DynamicsModel, ("next", "step_loss"))
    problems += options_problems(cls)
    problems += _init_problems(cls, ("ctx",))
    if problems:
        return problems
    import torch

    ctx, n = VALIDATION_CONTEXT, VALIDATION_BATCH
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            options = resolve_options({}, cls.default_options, cls.option_types, owner=cls.__name__)
            model = cls(ctx, **options)
        except Exception as exc:  # noqa: BLE001 - reported, with the plugin's name, by the registry
            detail = str(exc) if isinstance(exc, PwmbenchError) else f"raised {_first_line(exc)}"
            return [f"{cls.__name__}(ctx) with its default options on a small context ({_ctx_text(ctx)}): {detail}"]
        if getattr(cls.build, "__func__", None) is not DynamicsModel.build.__func__:  # a class with its own build
            try:
                model = cls.build(ctx)
            except Exception as exc:  # noqa: BLE001
                return [f"{cls.__name__}.build(ctx) on a small context ({_ctx_text(ctx)}) raised {_first_line(exc)}"]
        if not isinstance(model, DynamicsModel):
            return [f"{cls.__name__}.build(ctx) returned {type(model).__name__}, not a DynamicsModel"]
        z = torch.softmax(torch.randn(n, ctx.latent_dim // ctx.simnorm_dim, ctx.simnorm_dim), -1).reshape(n, ctx.latent_dim)
        a = torch.rand(n, ctx.action_dim) * 2 - 1
        try:
            out = model.next(z, a)
        except Exception as exc:  # noqa: BLE001
            return [f"{cls.__name__}.next(z, a) raised {_first_line(exc)} on a batch of {n} ({_ctx_text(ctx)})"]
    shape = tuple(getattr(out, "shape", ()))
    if not isinstance(out, torch.Tensor) or shape != (n, ctx.latent_dim):
        got = f"shape {shape}" if isinstance(out, torch.Tensor) else type(out).__name__
        return [f"{cls.__name__}.next(z, a) returned {got} for a batch of {n}; expected shape ({n}, latent_dim={ctx.latent_dim})"]
    return []


def _ctx_text(ctx: DynamicsContext) -> str:
    return f"latent_dim={ctx.latent_dim}, action_dim={ctx.action_dim}, units={list(ctx.units)}"


def integrator_problems(cls: Any) -> list[str]:
    """An Integrator subclass implementing step, with positive int order and evals_per_substep, that integrates a
    small batch with its default options and keeps its shape."""
    wrong = _subclass_problem(cls, Integrator, "integrators implement step(f, x, t, dt)")
    if wrong:
        return [wrong]
    problems = _missing_methods(cls, Integrator, ("step",))
    for attr in ("order", "evals_per_substep"):
        value = getattr(cls, attr, None)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{cls.__name__}.{attr} must be a positive int, got {value!r}")
    problems += options_problems(cls)
    problems += _init_problems(cls, ())
    if problems:
        return problems
    import torch

    try:
        integ = cls.build()
        x0 = torch.ones(VALIDATION_BATCH, 2)
        out = integ.integrate(lambda x, t: -x, x0, 0.0, 1.0, 1)
    except Exception as exc:  # noqa: BLE001
        detail = str(exc) if isinstance(exc, PwmbenchError) else _first_line(exc)
        return [f"{cls.__name__} cannot integrate dx/dt = -x over one step with its default options: {detail}"]
    if not isinstance(out, torch.Tensor) or out.shape != x0.shape:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        return [f"{cls.__name__}.integrate returned {got} for x0 of shape {tuple(x0.shape)}"]
    return []


def task_problems(factory: Any) -> list[str]:
    """`factory()` returns a Task (a class or a function) with a TaskSpec `spec` and a `make_env`."""
    try:
        task = factory()
    except Exception as exc:  # noqa: BLE001
        detail = str(exc) if isinstance(exc, PwmbenchError) else _first_line(exc)
        return [f"calling its factory {_name(factory)}() raised {detail}"]
    if not isinstance(task, Task):
        return [f"its factory {_name(factory)}() returned {type(task).__name__}, not a pwmbench.api.Task (subclass Task, give it a spec and make_env)"]
    problems = []
    spec = getattr(task, "spec", None)
    if not isinstance(spec, TaskSpec):
        problems.append(f"{type(task).__name__}.spec must be a pwmbench.api.TaskSpec, got {type(spec).__name__}")
    problems += _missing_methods(type(task), Task, ("make_env",))
    if isinstance(task, TaskSet):
        problems += _missing_methods(type(task), TaskSet, ("task_env",))
        if not isinstance(getattr(task, "tasks", None), (tuple, list)):
            problems.append(f"{type(task).__name__}.tasks must list the member task names in task-id order")
    return problems


def executor_problems(cls: Any) -> list[str]:
    """An Executor subclass implementing run, whose constructor takes `workers` and its options as keywords."""
    wrong = _subclass_problem(cls, Executor, "executors implement run(jobs)")
    if wrong:
        return [wrong]
    problems = _missing_methods(cls, Executor, ("run",))
    problems += options_problems(cls)
    try:
        params = inspect.signature(cls.__init__).parameters.values()
    except (TypeError, ValueError):
        params = ()
    if params and not any(p.name == "workers" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        problems.append(f"{cls.__name__}.__init__ must accept workers=N (pwmbench passes it to every executor)")
    return problems


def check_variant_options(cls: type[DynamicsModel], options: Mapping[str, Any]) -> None:
    """A variant's dynamics options checked before anything trains: `units` as hidden widths, the others against the
    model's option types, then a trial build on a small context with them — which also catches what the model's own
    constructor refuses (flow's unknown integrator, a value out of range). Raises ConfigError/PluginError naming the
    plugin (callers add the suite file and variant)."""
    import torch

    opts = dict(options)
    units = opts.pop("units", None)
    if units is not None:
        check_units(units, owner=registered_label(cls, "dynamics model"))
    with torch.random.fork_rng(devices=[]):
        cls.build(VALIDATION_CONTEXT, **opts)
