"""What an executor costs per job: 50 trivial jobs (`os.getpid`, returns at once), 2 workers, per executor.

For each executor the whole `run()` is timed from construction to the last outcome, so the total includes what
the executor pays once (the local pool's spawned processes importing pwmbench; Ray starting a local instance and
its workers; Slurm submitting and queueing). Reported per executor, best of `--repeats` runs (least disturbed by
other load): the total, the time to the first outcome (start-up), the steady per-job cost after it
((last − first) / (n − 1)), and the total per job.

Rows: `local`, `ray` (when Ray is installed: `pip install 'pwmbench[ray]'`) and `slurm` — the slurm row is measured
only when an executor named "slurm" is registered AND the local test cluster is up (`scripts/local-slurm.sh status`
exits 0); its options come from SLURM_OPTIONS below (or `--set slurm.KEY=VALUE`). Other executors: `--executor NAME`.

    python benchmarks/executor_overhead.py                  # writes benchmarks/results/executor_overhead.{json,md}
    python benchmarks/executor_overhead.py --jobs 10 --repeats 1 --out /tmp/eo   # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from pwmbench import api
from pwmbench.results.provenance import cpu_model

ROOT = Path(__file__).resolve().parents[1]
SLURM_STATUS = [str(ROOT / "scripts" / "local-slurm.sh"), "status"]
# Options of the slurm row on the local test cluster: submitit's files in a temporary directory (not ./slurm-jobs),
# and the results looked for every 0.5 s (the default 2 s would dominate trivial jobs). Each job is its own sbatch
# job (no group: no array), so the row measures sbatch + scheduling + a Python start-up on the node per job.
SLURM_OPTIONS: dict[str, Any] = {"folder": os.path.join(tempfile.gettempdir(), "pwmbench-executor-overhead-slurm"), "poll_s": 0.5}


def slurm_available() -> tuple[bool, str]:
    """Whether the slurm row can run here, and why not."""
    if "slurm" not in api.get_plugins().executors:
        return False, "no executor named 'slurm' is registered"
    if not Path(SLURM_STATUS[0]).exists():
        return False, f"{Path(SLURM_STATUS[0]).relative_to(ROOT)} does not exist"
    try:
        status = subprocess.run(["bash", *SLURM_STATUS], check=False, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"scripts/local-slurm.sh status failed: {exc}"
    if status.returncode != 0:
        return False, "the local Slurm cluster is not up (scripts/local-slurm.sh status exited non-zero)"
    return True, ""


def default_rows() -> tuple[list[str], dict[str, str]]:
    """Executors to measure, and the reasons others were skipped."""
    rows, skipped = ["local"], {}
    if importlib.util.find_spec("ray") is not None:
        rows.append("ray")
    else:
        skipped["ray"] = "Ray is not installed (pip install 'pwmbench[ray]')"
    ok, why = slurm_available()
    if ok:
        rows.append("slurm")
    else:
        skipped["slurm"] = why
    return rows, skipped


def measure_once(name: str, n: int, workers: int, options: dict[str, Any]) -> dict[str, Any]:
    jobs = [api.Job(f"j{i:03d}", os.getpid) for i in range(n)]
    start = time.perf_counter()
    executor = api.executor(name, workers=workers, **options)
    times, pids, errors = [], set(), []
    for job, outcome in executor.run(jobs):
        times.append(time.perf_counter())
        if isinstance(outcome, BaseException):
            errors.append(f"{job.key}: {type(outcome).__name__}: {outcome}")
        else:
            pids.add(outcome)
    if errors or len(times) != n:
        raise RuntimeError(f"{name}: {len(times)} outcomes of {n}; errors: {errors[:3]}")
    total, first = times[-1] - start, times[0] - start
    return {
        "total_s": total,
        "first_outcome_s": first,
        "steady_per_job_ms": 1000 * (times[-1] - times[0]) / max(1, n - 1),
        "per_job_ms": 1000 * total / n,
        "processes": len(pids),
    }


def measure(name: str, n: int, workers: int, repeats: int, options: dict[str, Any]) -> dict[str, Any]:
    runs = [measure_once(name, n, workers, options) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["total_s"])
    return {"executor": name, "options": options, **best, "runs": runs}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("pwmbench", "ray", "submitit", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def markdown(result: dict[str, Any]) -> str:
    machine, v = result["machine"], result["versions"]
    lines = [
        "# Executor overhead",
        "",
        (f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['platform']}), load average {machine['load_average']:.1f} "
        f"at the start; {result['date']}."),
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        (f"{result['jobs']} trivial jobs (`os.getpid`, returns at once), {result['workers']} workers, best of "
        f"{result['repeats']} runs by total time. Total: from constructing the executor to the last outcome (start-up "
        "included: the local pool spawning processes that import pwmbench, Ray starting a local instance and its "
        "workers; Slurm submitting every job with sbatch to the local single-node cluster, each job then starting "
        "Python under srun). First outcome: start-up plus one job. Steady: (last − first outcome) / (n − 1)."),
        "",
        "| executor | total s | first outcome s | steady ms/job | total ms/job | processes used |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['executor']} | {row['total_s']:.2f} | {row['first_outcome_s']:.2f} | "
                     f"{row['steady_per_job_ms']:.1f} | {row['per_job_ms']:.1f} | {row['processes']} |")
    for name, why in result["skipped"].items():
        lines.append(f"\n`{name}` not measured: {why}.")
    lines += ["", "Measured with `python benchmarks/executor_overhead.py`.", ""]
    return "\n".join(lines)


def parse_sets(items: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, option = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--set expects EXECUTOR.KEY=VALUE, got {item!r}")
        out.setdefault(name, {})[option] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--executor", action="append", default=None, help="Executor to measure (repeatable; default: local, ray, slurm where available).")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="EXECUTOR.KEY=VALUE option (repeatable).")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    if args.executor:
        rows, skipped = args.executor, {}
    else:
        rows, skipped = default_rows()
    sets = parse_sets(args.sets)
    load = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    results = []
    for name in rows:
        options = {**(SLURM_OPTIONS if name == "slurm" else {}), **sets.get(name, {})}
        print(f"{name}: {args.jobs} jobs × {args.repeats} runs …", flush=True)
        row = measure(name, args.jobs, args.workers, args.repeats, options)
        print(f"  total {row['total_s']:.2f} s, first {row['first_outcome_s']:.2f} s, steady {row['steady_per_job_ms']:.1f} ms/job", flush=True)
        results.append(row)
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(), "load_average": load},
        "versions": versions(),
        "jobs": args.jobs,
        "workers": args.workers,
        "repeats": args.repeats,
        "rows": results,
        "skipped": skipped,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "executor_overhead.json").write_text(json.dumps(result, indent=1))
    (out / "executor_overhead.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
