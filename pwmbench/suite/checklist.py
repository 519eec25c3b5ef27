"""The pre-flight checklist for a suite: what must hold before anything trains (docs/protocol.md#the-pre-flight-checklist)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pwmbench.errors import PwmbenchError

Check = tuple[str, bool, str]


def _decision_text(suite) -> str:
    """The [decision] settings, and a warning (not a failure) when the seeds cannot detect the margin."""
    from pwmbench.analysis.decision import power_warning

    d = suite.decision
    text = f"{d.metric}, margin {d.margin:g}, α {d.alpha:g}, model quality {d.model_quality}, scored at the {d.score_at} evaluation"
    warning = power_warning(len(suite.seeds), d)
    return text + (f"; WARNING: {warning} (docs/protocol.md#seeds-and-power)" if warning else f"; {len(suite.seeds)} seeds detect the margin at noise_sd {d.noise_sd:g}")


def preflight(suite_file: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, *, allow_pickle: bool = False) -> list[Check]:
    checks: list[Check] = []

    def record(name: str, fn) -> object:
        try:
            detail = fn()
            checks.append((name, True, str(detail)))
            return detail
        except Exception as exc:  # noqa: BLE001 - a checklist reports every failure as one line, never a traceback
            lines = str(exc).strip().splitlines()
            text = lines[0] if lines else ""
            if not isinstance(exc, (PwmbenchError, OSError)):  # plugin code's own exception: say which kind it was
                text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            checks.append((name, False, text))
            return None

    from pwmbench.plugin.manager import get_plugins
    from pwmbench.suite.spec import load_suite, prepare, unsafe_options, with_invocation

    plugins = record("plugins import (dynamics models, integrators, tasks)", lambda: ", ".join(f"{k}: {len(r)}" for k, r in get_plugins().registries().items()) + _plugin_problems())
    suite = record("suite file valid", lambda: load_suite(suite_file))
    if suite is None or plugins is None:
        return checks
    checks[-1] = (checks[-1][0], True, f"{suite.name}: {len(suite.tasks)} tasks × {len(suite.variants)} variants × {len(suite.seeds)} seeds")
    record("seeds", lambda: f"{list(suite.seeds)}" + ("" if tuple(suite.seeds) == (42, 123, 456) else " (not the protocol's default 42, 123, 456: docs/protocol.md#seeds-and-determinism)"))
    record("decision settings and the seeds' power", lambda: _decision_text(suite))
    for variant in suite.variants:
        if variant.dynamics == "flow":
            record(f"flow model and integrator of {variant.name} import", lambda v=variant: _flow_check(v))
    prepared = record("parity gate on the real task dimensions", lambda: (prepare(suite), _parity_text(suite))[1])
    if prepared is None:
        return checks
    with_invocation(suite, allow_pickle=allow_pickle)
    record("unsafe options (code from data)", lambda: "; ".join(unsafe_options(suite)) or "none: datasets are read with the safe loader only")
    record("identical settings across variants (fairness audit)", lambda: "only dynamics blocks differ" + (f"; declared: {suite.audit['declared_differences']}" if suite.audit["declared_differences"] else ""))
    for task, recipes in suite.audit.get("wm_recipes", {}).items():  # identical across variants (the audit refuses otherwise)
        record(f"task set {task}: world-model recipe, every variant", lambda r=recipes: _recipe_text(r))
    for task in suite.tasks:
        if _is_task_set(task):
            record(f"task set {task}: offline dataset", lambda t=task: _data_check(t, suite))
            record(f"task set {task}: member environments build", lambda t=task: _members_check(t, suite))
        else:
            record(f"task {task} builds an environment", lambda t=task: _env_check(t))
            if suite.pretrain:
                record(f"task {task}: world-model pretraining data", lambda t=task: _pretrain_check(t, suite))
    out = Path(out_dir) if out_dir else Path("results") / suite.name
    record("results directory writable", lambda: _writable(out))
    record("logging: run events reach loggers", lambda: f"{len(get_plugins().pm.hook.pwmbench_run_event.get_hookimpls())} logger plugin(s); Arrow curves are always written")
    return checks


def _plugin_problems() -> str:
    """Problems of plugins the suite may not use (refused registrations, clashes): named here, failed where used."""
    from pwmbench.plugin.manager import get_plugins

    n = len(get_plugins().problems())
    return f"; {n} plugin problem{'s' if n != 1 else ''} (`pwmbench plugins` lists them)" if n else ""


def _flow_check(variant) -> str:
    from pwmbench.api import integrator

    name = variant.options.get("integrator", "heun")
    integ = integrator(name)
    substeps = variant.options.get("substeps", 2)
    if isinstance(substeps, str) and substeps.strip().isdigit():  # coerced as the suite's own option check does (run --dry-run)
        substeps = int(substeps)
    return f"{name}: order {integ.order}, {integ.evals(substeps)} velocity evaluations per step"


def _parity_text(suite) -> str:
    from pwmbench.suite.spec import parity_line

    return "; ".join(f"{task}: {parity_line(suite, task)}" for task in suite.parity)


def _env_check(task: str) -> str:
    from pwmbench.api import task as get_task

    spec = get_task(task).spec
    env = get_task(task).make_env(1, 0)
    obs = env.reset(seed=0)
    if tuple(obs.shape) != (1, spec.obs_dim):
        raise ValueError(f"reset gave shape {tuple(obs.shape)}, spec says (1, {spec.obs_dim})")
    return f"obs {spec.obs_dim}, act {spec.act_dim}, episode {spec.episode_length}"


def _is_task_set(task: str) -> bool:
    from pwmbench.api import TaskSet
    from pwmbench.api import task as get_task

    return isinstance(get_task(task), TaskSet)


def _data_check(task: str, suite) -> str:
    """base.data_dir holds a well-formed dataset of the set's widths (or [data] will collect one)."""
    from pwmbench.data.chunks import chunk_paths
    from pwmbench.data.inspect import inspect_dataset
    from pwmbench.data.jobs import check_suite_data

    data_dir = suite.base.get("data_dir")
    if data_dir and Path(data_dir).expanduser().is_dir() and chunk_paths(Path(data_dir).expanduser()):
        report = inspect_dataset(Path(data_dir).expanduser())
        if report["malformed"]:
            raise ValueError(f"{data_dir}: {report['malformed'][0]}")
        return f"{data_dir}: {report['episodes']:,} episodes, {report['transitions']:,} transitions, {len(report['tasks'])} task ids"
    if suite.data:
        return f"{data_dir} is empty: `pwmbench run` will collect {suite.data['episodes_per_task']} episodes per task first"
    check_suite_data(suite, next(iter(suite.configs.values())).horizon)  # raises with the fix
    return "ok"


def _pretrain_check(task: str, suite) -> str:
    """[pretrain]: the task's dataset is there and fits the task (or the collector spec will make it)."""
    from pwmbench.api import task as get_task
    from pwmbench.data.chunks import chunk_paths
    from pwmbench.pwm.pretrain import open_pretrain_data, pretrain_iterations
    from pwmbench.suite.spec import pretrain_dir

    directory = Path(pretrain_dir(suite, task) or "").expanduser()
    spec = get_task(task).spec
    steps = pretrain_iterations(suite.configs[(task, suite.variants[0].name)], spec)
    if directory.is_dir() and chunk_paths(directory):
        data = open_pretrain_data(directory, spec, suite.configs[(task, suite.variants[0].name)].horizon)
        return f"{directory}: {data.num_episodes:,} episodes, {data.transitions():,} transitions; {steps:,} pretraining steps"
    if "episodes" in suite.pretrain:
        return f"{directory} is empty: `pwmbench run` will collect {suite.pretrain['episodes']} episodes first; {steps:,} pretraining steps"
    raise ValueError(f"[pretrain] data {str(directory)!r} holds no chunk_<i>.pt files: collect it with `pwmbench data collect --task {task} --episodes N --out {directory}`")


def _members_check(task: str, suite) -> str:
    """The members the suite trains (base.task_ids, else all) are registered; the first one builds."""
    from pwmbench.api import task as get_task

    task_set = get_task(task)
    ids = suite.base.get("task_ids") or list(range(task_set.spec.n_tasks))
    for i in ids:
        get_task(task_set.tasks[i])
    env = task_set.task_env(ids[0], 1, 0)
    obs = env.reset(seed=0)
    if tuple(obs.shape) != (1, task_set.spec.obs_dim):
        raise ValueError(f"{task_set.tasks[ids[0]]}: padded reset gave shape {tuple(obs.shape)}")
    return f"{len(ids)} member(s) registered; {task_set.tasks[ids[0]]} builds (obs padded to {task_set.spec.obs_dim})"


def _writable(out: Path) -> str:
    """Checked without creating anything (a check leaves no empty results directory behind): the nearest existing
    ancestor is a writable directory, and a file can be made and removed there."""
    from pwmbench.jobs.runner import check_results_dir

    check_results_dir(out)
    existing = Path(out).absolute()
    while not existing.exists():
        existing = existing.parent
    probe = existing / f".pwmbench-write-test-{os.getpid()}"
    probe.write_text("ok")
    probe.unlink()
    free = shutil.disk_usage(existing).free / 2**30
    return f"{out} ({'exists' if Path(out).exists() else 'will be created'}; {free:.1f} GiB free)"


def _recipe_text(recipes: dict) -> str:
    from pwmbench.pwm.recipes import recipe_summary

    return f"{', '.join(recipes)}: " + recipe_summary(next(iter(recipes.values())))
