"""The `pwmbench` command line. Imports stay inside commands: `pwmbench --help` must not load torch or warp."""

from __future__ import annotations

import json
import sys

import click


class _FinitePercent(click.ParamType):
    """A finite number in [0, 100] (a percentage): click's FloatRange lets NaN through every comparison."""

    name = "percent"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not 0 <= number <= 100:  # False for NaN too
            self.fail(f"{value!r} is not a finite percentage in [0, 100]", param, ctx)
        return number


FINITE_PERCENT = _FinitePercent()

from pwmbench import __version__


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pwmbench")
def main() -> None:
    """pwmbench: fair, reproducible comparisons of world-model dynamics models inside PWM."""


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def plugins_cmd(as_json: bool) -> None:
    """List every registered dynamics model, integrator, task and executor with its plugin, distribution and source;
    then plugin problems (a refused registration, a name two plugins register, a misnamed hook) and warnings (a
    hook-like function without @hookimpl). Exit 1 when a plugin has a problem."""
    from pwmbench.errors import PwmbenchError
    from pwmbench.plugin.manager import get_plugins

    try:
        plugins = get_plugins()
        rows = plugins.describe()
    except PwmbenchError as exc:
        _fail(str(exc))
    problems = plugins.problems()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        header = ("kind", "name", "plugin", "distribution", "source", "description")

        def cells(r):
            dist = f"{r['distribution']} {r['version'] or ''}".strip() if r["distribution"] else "-"
            problem = r.get("problem")
            note = (r["description"] or "") if not problem else ("CLASH: registered twice (see below)" if "registered twice" in problem else "REFUSED (see below)")
            return (r["kind"], r["name"], r["plugin"], dist, r["source"], note)

        table = [header] + [cells(r) for r in rows]
        widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
        for row in table:
            click.echo("  ".join(str(cell).ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1])
    for warning in plugins.warnings:
        click.echo(f"warning: {warning}", err=True)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(1)


@main.command("parity")
@click.option("--preset", default="pwm", show_default=True, help="World-model preset (pwm, pwm_5M, pwm_19M, pwm_48M, pwm_317M).")
@click.option("--task", "task_name", default=None, help="Take the dimensions from a registered task or task set.")
@click.option("--obs-dim", type=click.IntRange(1, 1_000_000), default=None, help="Observation width (padded width for task sets).")
@click.option("--act-dim", type=click.IntRange(1, 1_000_000), default=None, help="Action width (padded width for task sets).")
@click.option("--n-tasks", type=click.IntRange(1, 100_000), default=None, help="Number of tasks (task sets).")
@click.option("--task-dim", type=click.IntRange(1, 1_000_000), default=None, help="Task-embedding width (task sets: MT30 64, MT80 96).")
@click.option(
    "--dynamics",
    "dynamics_specs",
    multiple=True,
    help="NAME[:key=value,...]; repeat. The first is the baseline. Default: mlp and flow.",
)
@click.option("--tolerance", type=FINITE_PERCENT, default=2.0, show_default=True, help="Allowed gap in percent of the baseline.")
@click.option("--solve", is_flag=True, help="Find each non-baseline variant's dynamics width that minimises the gap.")
@click.option("--strict", is_flag=True, help="Exit 1 when a variant is over the tolerance.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--suite", "suite_file", default=None, type=click.Path(dir_okay=False),
              help="Print the parity gate of a suite file instead: its presets, world_model overrides, variants and tasks, as run and check apply it.")
def parity_cmd(preset, task_name, obs_dim, act_dim, n_tasks, task_dim, dynamics_specs, tolerance, solve, strict, as_json, suite_file) -> None:
    """Compare parameter counts of world-model variants on real task dimensions: every variant's total must be
    within ±tolerance % of the first's (the baseline's); see docs/protocol.md#parameter-parity."""
    from pwmbench.errors import PwmbenchError
    from pwmbench.suite.parity import VariantSpec, format_report, parity_report, solve_width

    if suite_file is not None:  # the gate exactly as the suite applies it (its world_model override included)
        from pwmbench.suite.spec import load_suite, parity_line, prepare

        try:
            suite = prepare(load_suite(suite_file))
        except PwmbenchError as exc:
            _fail(str(exc))
        if as_json:
            click.echo(json.dumps({task: info["report"] for task, info in suite.parity.items()}, indent=2, default=str))
        else:
            for task in suite.parity:
                click.echo(f"{task}: {parity_line(suite, task)}")
        return
    try:
        dims = _resolve_dims(task_name, obs_dim, act_dim, n_tasks, task_dim)
        variants = [VariantSpec.parse(s) for s in (dynamics_specs or ("mlp", "flow"))]
        report = parity_report(preset, dims, variants, tolerance)
        solutions = [solve_width(preset, dims, variants[0], v) for v in variants[1:]] if solve else []
    except PwmbenchError as exc:
        _fail(str(exc))
    if as_json:
        out = report.to_dict()
        if solve:
            out["solutions"] = [s.to_dict() for s in solutions]
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(format_report(report, solutions))
    if not report.ok:
        if as_json:
            click.echo(f"warning: parity gap {report.max_gap_pct:.2f}% is over ±{tolerance}%", err=True)
        if strict:
            sys.exit(1)


class _RegisteredOption(click.Option):
    """An option whose help lists what is registered now (plugins included), looked up only when help is shown:
    `pwmbench --help` must not load plugins (torch)."""

    def __init__(self, *args, kind: str, registry: str, **kwargs) -> None:
        self.kind, self.registry, self.help_text = kind, registry, kwargs.get("help", "")
        super().__init__(*args, **kwargs)

    def get_help_record(self, ctx: click.Context):
        try:
            from pwmbench.plugin.manager import get_plugins

            names = ", ".join(getattr(get_plugins(), self.registry).names()) or "none registered"
        except Exception as exc:  # noqa: BLE001 - help must render even when a plugin is broken
            names = f"cannot list them: {exc}"
        self.help = f"{self.help_text} Registered {self.kind}s: {names}."
        return super().get_help_record(ctx)


@main.command("train")
@click.option("--task", "task_name", required=True, help="Registered task, e.g. dmc/cartpole-swingup.")
@click.option("--dynamics", default="mlp", show_default=True, help="Dynamics model NAME[:key=value,...].")
@click.option("--integrator", default=None, cls=_RegisteredOption, kind="integrator", registry="integrators",
              help="Flow integrator (the flow dynamics option `integrator`).")
@click.option("--substeps", type=click.IntRange(1, 10_000), default=None, help="Integrator substeps K.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=42, show_default=True)
@click.option("--preset", default=None, help="World-model preset (default: pwm).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key; repeat.")
@click.option("--device", default=None, help="cpu or cuda[:N].")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory for curves.arrow and run.arrow.")
@click.option("--restart", is_flag=True, help="Discard an existing result or checkpoint in --out.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress line.")
def train_cmd(task_name, dynamics, integrator, substeps, seed, preset, sets, device, out_dir, restart, progress) -> None:
    """Train one cell (task × dynamics × seed) with PWM and write its Arrow results."""
    from pwmbench.errors import PwmbenchError
    from pwmbench.pwm.cell import train_cell
    from pwmbench.pwm.config import parse_set, resolve_config
    from pwmbench.suite.parity import VariantSpec

    try:
        overrides = parse_set(sets)
        spec = VariantSpec.parse(dynamics)
        options = dict(spec.options)
        if integrator is not None:
            options["integrator"] = integrator
        if substeps is not None:
            options["substeps"] = substeps
        overrides.update(dynamics=spec.dynamics, dynamics_options={**overrides.get("dynamics_options", {}), **options})
        if preset is not None:
            overrides["preset"] = preset
        if device is not None:
            overrides["device"] = device
        cfg = resolve_config(overrides)
        result = train_cell(task_name, cfg, seed, out_dir, restart=restart, progress=progress)
    except PwmbenchError as exc:
        _fail(str(exc))
    row = result.row
    click.echo(
        f"{result.status}: {row['task']} {row['variant']} seed {row['seed']} — final eval return "
        f"{row['final_return'] if row['final_return'] is not None else '-'}, {row['epochs']} epochs, "
        f"{row['wall_s']:.0f} s → {result.out_dir}"
    )
    if result.status != "ok":
        click.echo(f"reason: {row['reason']}", err=True)
        sys.exit(1)


@main.command("run")
@click.argument("suite_file", type=click.Path(dir_okay=False))
@click.option("--out", "--results", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Results directory (default: results/<suite name>); on a cluster, a path every node sees.")
@click.option("--workers", type=click.IntRange(1, 4096), default=1, show_default=True, help="Cells trained at once (one process each).")
@click.option("--only", default=None, help="Filter cells: task=…,variant=…,seed=… (keys may repeat).")
@click.option("--dry-run", is_flag=True, help="Validate, audit and print the plan (the job graph); train nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the job graph as JSON (key, kind, depends_on, resources per job).")
@click.option("--restart", is_flag=True, help="Train the selected cells again even if they finished (ok or diverged).")
@click.option("--executor", default=None, help="Executor plugin that runs the jobs (default: the suite's [executor] name, else local).")
@click.option("--set", "settings", multiple=True, metavar="executor.KEY=VALUE", help="An executor option (repeatable), e.g. executor.address=auto.")
@click.option("--detach", is_flag=True, help="Submit the jobs and return (executors whose jobs outlive this process: slurm); follow with `pwmbench status`.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--allow-pickle", is_flag=True, help="Unpickle dataset files the safe loader refuses (a pickle can run code: trusted data only). "
              "Only here, never in a suite file.")
def run_cmd(suite_file, out_dir, workers, only, dry_run, as_json, restart, executor, settings, detach, progress, allow_pickle) -> None:
    """Run every cell of a suite (task × variant × seed): parity gate, fairness audit, training, results.

    Cells that finished (ok, or diverged: a NaN/Inf is a result) are skipped; failed cells (an exception) are
    trained again from their last checkpoint. Ends with one line per cell that is not ok (its reason and the
    file that explains it); exit status 0 only when every selected cell is ok, 1 otherwise."""
    from collections import Counter
    from pathlib import Path

    from pwmbench.errors import PwmbenchError
    from pwmbench.jobs.runner import (
        Submission,
        cell_status,
        check_results_dir,
        parse_executor_settings,
        parse_only,
        plan,
        plan_graph,
        run_suite,
    )
    from pwmbench.suite.spec import load_suite, parity_line, prepare, unsafe_options, with_invocation

    if as_json and not dry_run:
        _fail("--json prints the job graph of a dry run: add --dry-run")
    try:
        suite = with_invocation(prepare(load_suite(suite_file)), allow_pickle=allow_pickle)
        out = Path(out_dir) if out_dir else Path("results") / suite.name
        filters = parse_only(only)
        _check_only(suite, filters)
        options = parse_executor_settings(settings)
        check_results_dir(out)
        cells, todo = plan(suite, out, filters, restart)
        graph = plan_graph(suite, out, todo, restart) if dry_run else None
    except PwmbenchError as exc:
        _fail(str(exc))
    for line in unsafe_options(suite):
        click.echo(f"UNSAFE: {line}", err=True)
    if as_json:
        click.echo(json.dumps(graph.to_json(), indent=1))
        return
    click.echo(f"suite {suite.name}: {len(suite.tasks)} tasks × {len(suite.variants)} variants × {len(suite.seeds)} seeds = {len(suite.cells())} cells; selected {len(cells)}, to run {len(todo)} → {out}")
    for task, info in suite.parity.items():
        click.echo(f"  parity on {task}: {parity_line(suite, task)}" + (f", widths solved for {', '.join(info['solved'])}" if info["solved"] else ""))
    click.echo("  fairness audit: variants differ only in their dynamics blocks" + (" and declared compute matching" if suite.audit["declared_differences"] else ""))
    click.echo(_threads_line(suite, workers))
    for name in suite.audit["declared_differences"]:
        cfg = suite.configs[(suite.tasks[0], name)]
        ratio = suite.compute_matched.get("flop_ratio")
        click.echo(f"  {name}: wm_iterations = {cfg.wm_iterations}" + (f" (update FLOP ratio {ratio:.2f} × base)" if ratio else " (given)"))
    if dry_run:
        for job in graph.jobs:
            cell = graph.cell_of[job.key]
            if cell is None:
                click.echo(f"  would collect ({job.kind}) → {Path(job.log).parent}")
            elif job.kind == graph.kinds[cell.key].cell_job:
                retry = not restart and cell_status(cell, out) == "failed"
                click.echo(f"  would {'retry' if retry else 'train'} {cell.task} {cell.variant} seed {cell.seed} ({cell.config.max_epochs} epochs)"
                           f"{' — it failed in an earlier run' if retry else ''} → {cell.directory(out)}")  # fmt: skip
        inner = sum(1 for j in graph.jobs if graph.cell_of[j.key] is not None and j.kind != graph.kinds[graph.cell_of[j.key].key].cell_job)
        click.echo(f"  {len(graph.jobs)} jobs ({inner} inner task-set jobs); the graph as JSON: add --json")
        return
    try:
        _sigterm_is_ctrl_c()
        summary = run_suite(suite, out, workers=workers, filters=filters, restart=restart, executor=executor, options=options,
                            progress=progress, detach=detach)  # fmt: skip
    except KeyboardInterrupt:
        click.echo("\nstopped: finished cells are kept and running cells checkpointed; run the same command to resume", err=True)
        sys.exit(130)
    except PwmbenchError as exc:
        _fail(str(exc))
    if isinstance(summary, Submission):
        click.echo(f"submitted {len(summary.jobs)} jobs to {summary.executor} (record: {summary.record_dir}); follow them with: pwmbench status {out}")
        return
    counts = ", ".join(f"{n} {s}" for s, n in sorted((summary.statuses + Counter({"error": len(summary.errors)})).items())) or "none trained"
    earlier = ", ".join(f"{n} {s}" for s, n in sorted(summary.skipped_statuses.items()) if s != "ok")
    click.echo(f"done in {summary.wall_s / 60:.1f} min: {counts}; {summary.skipped} already finished" + (f" ({earlier})" if earlier else "") + f"; results in {out}")
    if summary.problems:
        n = len(summary.problems)
        click.echo(f"{n} run{'s' if n != 1 else ''} did not finish ok:", err=True)
        for problem in summary.problems:
            click.echo(f"  {problem.line()}", err=True)
    sys.exit(0 if summary.ok else 1)


def _threads_line(suite, workers: int) -> str:
    """How many torch threads each job computes with: fixed by the suite (results depend on it), never by --workers;
    a hint when the run leaves most of the machine idle."""
    import os

    from pwmbench.jobs.cell_kinds import job_resources

    by_kind = {kind: job_resources(suite, kind).cpus for kind in ("cell", "world_model", "member")}
    threads = max(by_kind.values())
    each = f"{threads} per job" if len(set(by_kind.values())) == 1 else ", ".join(f"{k} {n}" for k, n in by_kind.items())
    line = f"  threads: {each} ([executor.resources.<kind>] cpus; results depend on it, --workers does not change it)"
    cpus = os.cpu_count() or 1
    if workers * threads * 2 <= cpus:
        line += f"; {workers} × {threads} of {cpus} CPUs busy: --workers {max(1, cpus // threads)} uses the rest"
    return line


def _sigterm_is_ctrl_c() -> None:
    """SIGTERM to `pwmbench run` (a scheduler, `kill`) stops it like Ctrl-C: workers stopped at an epoch boundary,
    checkpoints kept, exit 130 — instead of dying and orphaning its workers."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@main.command("status")
@click.argument("results", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print every job's state as JSON.")
def status_cmd(results, as_json) -> None:
    """Every job of a results directory: its state from the result files (done / failed / running / queued) and,
    after `run --detach`, the scheduler's view when it is reachable. Exit 0 when every job is done and ok."""
    from collections import Counter
    from pathlib import Path

    from pwmbench.errors import PwmbenchError
    from pwmbench.jobs.status import results_status

    try:
        rows, scheduler_note = results_status(Path(results))
    except PwmbenchError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps({"jobs": rows, "scheduler": scheduler_note}, indent=1, default=str))
    else:
        for r in rows:
            extra = " — ".join(x for x in (r.get("detail"), r.get("scheduler")) if x)
            click.echo(f"{r['state']:<9} {r['job']}" + (f": {extra}" if extra else "") + (f" (log: {r['log']})" if r.get("log") and r["state"] != "done" else ""))
        counts = Counter(r["state"] for r in rows)
        click.echo((", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs: suite.json plans no cells") + (f"; {scheduler_note}" if scheduler_note else ""))
    sys.exit(0 if rows and all(r["state"] == "done" for r in rows) else 1)


def decision_options(command):
    """The [decision] settings as flags (score, report): each overrides the suite's value (docs/protocol.md#the-decision)."""
    for option in reversed([
        click.option("--metric", type=click.Choice(["iqm", "mean", "median"]), default=None, help="Aggregate the decision is taken on (suite default: iqm)."),
        click.option("--margin", type=float, default=None, help="Non-inferiority margin δ in normalised points (suite default: 0.02)."),
        click.option("--alpha", type=float, default=None, help="Error rate of the scoring, split over candidates (suite default: 0.05)."),
        click.option("--model-quality", type=click.Choice(["gate", "report"]), default=None, help="Gate decisions on model quality, or only report it."),
        click.option("--score-at", type=click.Choice(["final", "peak"]), default=None, help="Score the final evaluation, or the peak of the seed-averaged curve (PWM)."),
    ]):  # fmt: skip
        command = option(command)
    return command


@main.command("score")
@click.argument("results", type=click.Path(file_okay=False))
@click.option("--candidate", "candidates", multiple=True, help="Variant compared with the baseline (repeatable; default: every other variant).")
@click.option("--baseline", default=None, help="Baseline variant (default: the suite's).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@click.option("--bootstrap", "reps", type=click.IntRange(100, 10_000_000), default=50_000, show_default=True, help="Bootstrap resamples for the CIs.")
@decision_options
def score_cmd(results, candidates, baseline, as_json, reps, metric, margin, alpha, model_quality, score_at) -> None:
    """Decide every candidate against the baseline (docs/protocol.md#the-decision): exit 0 when every candidate is
    accepted (better or non-inferior, every required criterion), 1 when one is not (named in the last line), 3 when
    none fails but one is inconclusive (we cannot tell yet), 2 when the results cannot be scored."""
    from pwmbench.analysis.decision import DecisionSettings
    from pwmbench.analysis.scoring import format_scoring, load_results, score_all
    from pwmbench.errors import PwmbenchError

    try:
        runs, suite, curves = load_results(results, curves=True)
        settings = DecisionSettings.from_record(suite.get("decision")).with_flags(
            "pwmbench score", metric=metric, margin=margin, alpha=alpha, model_quality=model_quality, score_at=score_at)
        scoring = score_all(runs, suite, curves, candidates=list(candidates) or None, baseline=baseline, reps=reps, settings=settings)
    except (PwmbenchError, ValueError) as exc:
        _fail(str(exc))
    click.echo(json.dumps(scoring.to_dict(), indent=2, default=str) if as_json else format_scoring(scoring))
    sys.exit(scoring.exit_code)


@main.command("report")
@click.argument("results", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory for report.md, PNG plots and CSV.")
@click.option("--candidate", "candidates", multiple=True, help="Variant compared with the baseline (repeatable; default: every other variant).")
@click.option("--baseline", default=None, help="Baseline variant (default: the suite's).")
@click.option("--bootstrap", "reps", type=click.IntRange(100, 10_000_000), default=50_000, show_default=True, help="Bootstrap resamples for the CIs.")
@click.option("--latex", is_flag=True, help="Also write summary.tex (the summary and per-task tables, booktabs) for a paper.")
@decision_options
def report_cmd(results, out_dir, candidates, baseline, reps, latex, metric, margin, alpha, model_quality, score_at) -> None:
    """Write the Markdown report (decisions first, summary, plots as PNG and PDF) and CSV exports of a results directory."""
    from pwmbench.analysis.report import build_report
    from pwmbench.errors import PwmbenchError

    try:
        flags = {"metric": metric, "margin": margin, "alpha": alpha, "model_quality": model_quality, "score_at": score_at}
        path = build_report(results, out_dir, candidates=list(candidates) or None, baseline=baseline, reps=reps, latex=latex, decision=flags)
    except (PwmbenchError, ValueError) as exc:
        _fail(str(exc))
    click.echo(f"report: {path}")
    incomplete = json.loads((path.parent / "verdict.json").read_text())["incomplete"]  # written by the report just now
    if incomplete:  # the report says so at its top; the exit status must too
        for note in incomplete:
            click.echo(f"incomplete results: {note}", err=True)
        sys.exit(3)


@main.command("check")
@click.argument("suite_file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False), help="Results directory to check (default: results/<suite name>).")
@click.option("--allow-pickle", is_flag=True, help="Check as `run --allow-pickle` would run (named as unsafe).")
def check_cmd(suite_file, out_dir, allow_pickle) -> None:
    """The pre-flight checklist for a suite (plugins, suite file, seeds, parity gate, fairness audit, data,
    environments, results directory), one line each; exit 1 if any check fails.
    See docs/protocol.md#the-pre-flight-checklist."""
    from pwmbench.suite.checklist import preflight

    results = preflight(suite_file, out_dir, allow_pickle=allow_pickle)
    for name, ok, detail in results:
        click.echo(f"[{'pass' if ok else 'FAIL'}] {name}: {detail}")
    sys.exit(0 if all(ok for _, ok, _ in results) else 1)


@main.group("data")
def data_group() -> None:
    """Offline data in TD-MPC2's format: collect a dataset, inspect one."""


@data_group.command("collect")
@click.option("--taskset", default=None, help="Task set (mt30, mt80) or a single task (e.g. dmc/walker-walk): full-length episodes only.")
@click.option("--task", "single_task", default=None, help="One task (e.g. dflex/hopper) for single-task pretraining data: episodes that end early are kept, NaN-padded.")
@click.option("--episodes-per-task", type=click.IntRange(1, 10_000_000), default=None, help="Full episodes to collect for every task (--taskset).")
@click.option("--episodes", type=click.IntRange(1, 10_000_000), default=None, help="Episodes to collect (--task).")
@click.option("--policy", default="random", show_default=True, help="Behaviour policy: random, or a policy.pt written by `pwmbench train`.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--num-envs", type=click.IntRange(1, 65_536), default=8, show_default=True, help="Copies of each task stepped together.")
@click.option("--tasks", "task_ids", default=None, help="Only these task ids, comma-separated (e.g. 0,3,8).")
@click.option("--episodes-per-chunk", type=click.IntRange(1, 10_000_000), default=10_000, show_default=True, help="Episodes per chunk file.")
@click.option("--overwrite", is_flag=True, help="Replace a dataset already in --out.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory for chunk_<i>.pt and metadata.json.")
def data_collect_cmd(taskset, single_task, episodes_per_task, episodes, policy, seed, num_envs, task_ids, episodes_per_chunk, overwrite, out_dir) -> None:
    """Run a behaviour policy in the real environments and write TD-MPC2-format chunk files."""
    from pwmbench.data.collect import collect, collect_task
    from pwmbench.errors import PwmbenchError

    if (taskset is None) == (single_task is None):
        _fail("give exactly one of --taskset SET (task-set data) or --task TASK (single-task pretraining data)")
    if single_task is not None:
        count = episodes if episodes is not None else episodes_per_task
        if count is None or task_ids:
            _fail("--task needs --episodes N (and takes no --tasks)")
        try:
            meta = collect_task(single_task, count, out_dir, policy=policy, seed=seed, num_envs=num_envs,
                                episodes_per_chunk=episodes_per_chunk, overwrite=overwrite, progress=click.echo)  # fmt: skip
        except PwmbenchError as exc:
            _fail(str(exc))
        click.echo(f"wrote {len(meta['chunks'])} chunk file(s) to {out_dir} in {meta['seconds']:.1f} s ({meta['ended_early']} episode(s) ended early)")
        return
    episodes_per_task = episodes_per_task if episodes_per_task is not None else episodes
    if episodes_per_task is None:
        _fail("--taskset needs --episodes-per-task N")

    ids = None
    if task_ids:
        try:
            ids = [int(x) for x in task_ids.split(",") if x.strip()]
        except ValueError:
            _fail(f"--tasks takes comma-separated task ids, got {task_ids!r}")
    try:
        meta = collect(taskset, episodes_per_task, out_dir, policy=policy, seed=seed, num_envs=num_envs, task_ids=ids,
                       episodes_per_chunk=episodes_per_chunk, overwrite=overwrite, progress=click.echo)  # fmt: skip
    except PwmbenchError as exc:
        _fail(str(exc))
    click.echo(f"wrote {len(meta['chunks'])} chunk file(s) to {out_dir} in {meta['seconds']:.1f} s")


@data_group.command("inspect")
@click.argument("directory", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--allow-pickle", is_flag=True, help="Unpickle files the safe loader refuses (trusted sources only).")
def data_inspect_cmd(directory, as_json, allow_pickle) -> None:
    """Episodes and transitions overall and per task id, widths, episode length, and anything malformed.
    Exit status 1 when something is malformed."""
    from pwmbench.data.inspect import format_report, inspect_dataset

    report = inspect_dataset(directory, allow_pickle=allow_pickle)
    if as_json:
        click.echo(json.dumps(report, indent=1, default=str))
    else:
        names = (report.get("metadata") or {}).get("tasks")
        click.echo(format_report(report, names))
    if report["malformed"]:
        sys.exit(1)


def _check_only(suite, filters) -> None:
    """Every `--only` value names something the suite has; otherwise say what it has (and what was probably meant)."""
    from pwmbench.errors import ConfigError, suggest

    cells = suite.cells()
    for key in ("task", "variant", "seed"):
        valid = list(dict.fromkeys(str(getattr(c, key)) for c in cells))
        for value in sorted(filters.get(key, ())):
            if value in valid:
                continue
            hint = suggest(value, valid)
            msg = f"--only {key}={value} matches no cell of suite {suite.name!r}"
            if key == "variant":
                using = [v.name for v in suite.variants if v.dynamics == value]
                if using:
                    msg += f" ({value!r} is a dynamics model; the variants that use it are {', '.join(using)})"
            if hint is not None:
                msg += f"; did you mean {hint!r}?"
            raise ConfigError(f"{msg} (its {key}s: {', '.join(valid)})")


def _resolve_dims(task_name, obs_dim, act_dim, n_tasks, task_dim):
    from pwmbench.errors import ConfigError
    from pwmbench.suite.parity import Dims

    if task_name is not None:
        from pwmbench.api import task

        spec = task(task_name).spec
        return Dims(
            obs_dim or spec.obs_dim,
            act_dim or spec.act_dim,
            n_tasks or spec.n_tasks,
            spec.task_dim if task_dim is None else task_dim,
        )
    if obs_dim is None or act_dim is None:
        raise ConfigError("give --task NAME, or both --obs-dim and --act-dim (the real task dimensions)")
    n = n_tasks or 1
    if n > 1 and not task_dim:
        raise ConfigError(f"--n-tasks {n} needs --task-dim (MT30 uses 64, MT80 96)")
    return Dims(obs_dim, act_dim, n, task_dim or 0)


if __name__ == "__main__":
    main()
