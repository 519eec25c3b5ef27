"""`suites/mt30-mini.toml` end to end on each executor at 2 workers: wall-clock, and whether the results are the same.

The suite's dataset is collected once first (as its [data] table would), so every executor times the same work: 4
task-set cells = 4 world-model jobs, 12 member jobs and 4 collecting jobs. Each run is `pwmbench run` in a fresh
process into its own results directory; afterwards every run row (final return, score, epochs, world-model steps,
data sampled) is compared with the first executor's.

    python benchmarks/mt30_mini_executors.py                       # local and ray (and slurm when its cluster is up)
    python benchmarks/mt30_mini_executors.py --executors local ray # writes benchmarks/results/mt30_mini_executors.{json,md}
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "mt30-mini.toml"
COMPARED = ("task", "variant", "seed", "status", "final_return", "final_score", "epochs", "wm_iterations", "data_transitions_sampled")


def slurm_up() -> bool:
    script = ROOT / "scripts" / "local-slurm.sh"
    return script.exists() and subprocess.run([str(script), "status"], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executors", nargs="+", default=None, help="default: local, ray, and slurm when its local cluster is up")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/pwmbench-mt30-mini-executors"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--set", dest="settings", action="append", default=[], help="EXECUTOR:executor.KEY=VALUE, passed to that executor's run")
    args = parser.parse_args()
    executors = args.executors or ["local", "ray"] + (["slurm"] if slurm_up() else [])
    args.work.mkdir(parents=True, exist_ok=True)
    os.chdir(args.work)  # the suite's data_dir (results/mt30-mini/data) is relative: one dataset for every executor

    from pwmbench.data.chunks import chunk_paths
    from pwmbench.data.collect import collect
    from pwmbench.results.provenance import cpu_model
    from pwmbench.results.tables import read_dir
    from pwmbench.suite.spec import load_suite

    spec = load_suite(SUITE).data
    data = Path(load_suite(SUITE).base["data_dir"])
    if not (data.is_dir() and chunk_paths(data)):
        collect(spec["taskset"], spec["episodes_per_task"], data, seed=spec["seed"], num_envs=spec["num_envs"], task_ids=spec["task_ids"])
    rows: dict[str, list[dict]] = {}
    results = []
    for name in executors:
        out = args.work / name
        extra = [x for s in args.settings if s.startswith(f"{name}:") for x in ("--set", s.split(":", 1)[1])]
        command = [sys.executable, "-m", "pwmbench", "run", str(SUITE), "--workers", str(args.workers), "--executor", name,
                   "--out", str(out), "--restart", "--no-progress", *extra]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        print(f"{name}: exit {proc.returncode} in {wall:.1f} s", flush=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        rows[name] = sorted(({k: r[k] for k in COMPARED} for r in read_dir(out, "run.arrow").to_pylist()), key=lambda r: (r["task"], r["variant"], r["seed"]))
        results.append({"executor": name, "exit": proc.returncode, "wall_s": round(wall, 1), "runs": len(rows[name]),
                        "ok": sum(r["status"] == "ok" for r in rows[name])})  # fmt: skip
    first = executors[0]
    for r in results:
        r["identical_to_" + first] = rows[r["executor"]] == rows[first]
    machine = f"{cpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end"
    record = {"date": datetime.date.today().isoformat(), "machine": machine, "workers": args.workers, "suite": str(SUITE.relative_to(ROOT)), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mt30_mini_executors.json").write_text(json.dumps(record, indent=1))
    lines = [f"# suites/mt30-mini.toml on each executor ({args.workers} workers)", "",
             f"{record['date']}, {machine}. `python benchmarks/mt30_mini_executors.py`: 4 task-set cells (20 jobs: 4 world-model, "
             "12 member, 4 collecting), the dataset collected once beforehand; each executor's run rows compared with the first's.", "",
             f"| executor | exit | wall-clock (s) | run rows ok | identical to {first} |", "|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        lines.append(f"| {r['executor']} | {r['exit']} | {r['wall_s']} | {r['ok']}/{r['runs']} | {'yes' if r['identical_to_' + first] else '**no**'} |")
    (args.out / "mt30_mini_executors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
