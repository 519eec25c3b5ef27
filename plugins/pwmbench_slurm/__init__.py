"""The Slurm executor: every job an sbatch job (through submitit), the graph's dependencies as `afterok`.

`pwmbench run SUITE --executor slurm [--set executor.partition=gpu] [--detach]` (or the suite's `[executor]` table).
Needs `pip install 'pwmbench[slurm]'` (submitit) and a machine where `sbatch`/`squeue` work; every node must see the
results directory and the job folder (a shared filesystem) and have the same Python environment (jobs run
`sys.executable` of the submitting process). `scripts/local-slurm.sh up` starts a single-node test cluster.

Options (strings from the command line are converted):
- `partition`, `account`, `qos` — passed to sbatch when set (default: the cluster's defaults).
- `folder` — where submitit keeps its pickles, sbatch scripts, results and Slurm's own logs. Default: `.slurm` under
  `record_dir` (the runner's record directory, or `submit`'s), else `./slurm-jobs` in the current directory (not a
  temporary directory: compute nodes must see it).
- `poll_s` — 2: how often `run` looks for finished jobs (result files, then one `squeue` call for the rest).
- `time_min` — the time limit (minutes) of a job whose resources do not give one. Default: the partition's
  DefaultTime, else its MaxTime, else 7 days when the partition has no limit.
- `extra` — a table of further sbatch options (`{mail-type = "END", constraint = "a100"}`), passed through submitit's
  `slurm_additional_parameters`; a JSON object string works from the command line.
- `record_dir` — set by the runner: where a run records what it submitted (the default folder goes under it).

Per job: `--cpus-per-task` = resources.cpus, `--gres=gpu:N` when resources.gpus > 0, `--mem` = memory_gb,
`--time` = time_min, and `--requeue`. Jobs go in dependency order, each with `--dependency=afterok:ID:…` on the jobs
it depends on and `--kill-on-invalid-dep=yes`; jobs with the same group, kind, resources and dependencies go as ONE
job array. `workers` is accepted for the common interface and not used: Slurm decides how many jobs run at once.
Job functions must pickle (cloudpickle: a script's own functions travel by value); each job also gets the submitting
process's `sys.path`, so modules importable there are importable in the job.

Preemption and time limits: every job runs inside a checkpointable call (submitit's `checkpoint()` protocol): on
Slurm's `--signal=USR2@90` (90 s before the time limit) or a preemption (`scancel --signal=USR2 JOBID` simulates one),
submitit requeues the job with the same call, and the job function resumes from its own checkpoint. Time-limit
requeues are capped by submitit (3); preemptions are not.

`run(jobs)` submits the whole graph and yields `(job, outcome)` as jobs finish: the return value, the exception the
job raised (the original one, its remote traceback chained as the cause), `SlurmJobLost` when Slurm ended a job without
a result (cancelled, out of memory, node failure), or `DependencyFailed` for a job whose dependency failed (it is
cancelled: Slurm would leave it pending forever). Closing the iterator (Ctrl-C) cancels every job still queued or
running. `submit(jobs, record_dir)` submits and returns (`record_dir/slurm_jobs.json` records the jobs);
`status(record_dir)` asks the scheduler about them.

Importing this package imports neither submitit nor pwmbench.api (torch): the executor is in
`pwmbench_slurm.executor`, what runs in a job in `pwmbench_slurm.job`, so a job starts in well under a second.
"""

from __future__ import annotations

from typing import Any

from pwmbench.hookspecs import hookimpl

__version__ = "0.1.0"

# The package stays import-light (no pwmbench.api, so no torch; no submitit): a Slurm job unpickles
# pwmbench_slurm.job.SlurmCall, and pays only for that. The executor lives in pwmbench_slurm.executor.
_EXECUTOR_NAMES = ("SlurmExecutor", "SlurmJobLost", "SchedulerUnreachable", "query_states", "parse_time_min")


def __getattr__(name: str) -> Any:
    if name in _EXECUTOR_NAMES:
        from pwmbench_slurm import executor

        return getattr(executor, name)
    raise AttributeError(f"module 'pwmbench_slurm' has no attribute {name!r}")


@hookimpl
def pwmbench_register_executors(registry: Any) -> None:
    from pwmbench_slurm.executor import SlurmExecutor

    registry.add("slurm", SlurmExecutor)
