"""The smoke and mt30-mini job graphs at a test budget, and what their results must stay (W13 item 6).

`tiny_suite(name, tmp)` shrinks suites/smoke.toml or suites/mt30-mini.toml (one seed, a few epochs, a small dataset)
without changing anything else; `snapshot(out)` reads every cell's run.arrow and curves.arrow with the columns that
depend on the machine or the clock left out (wall times, versions, paths, the config JSON that holds them). The
reference in tests/data/job_graph_reference.json was recorded before the runner, the cell kinds and the data jobs
were reorganised:

    python tests/job_graph_reference.py     # records it again (only when a change of results is intended)

Float results are bit-identical on one CPU model; another CPU may sum in another order (AVX-512 against AVX2), so
there the comparison allows 1e-4 relative.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).resolve().parent / "data" / "job_graph_reference.json"

SHRINK = {
    "smoke": {"seeds": [42], "base": {"max_epochs": 36, "eval_every": 18, "eval_episodes": 2, "initial_wm_iterations": 8, "checkpoint_every": 18}},
    "mt30-mini": {"seeds": [42], "base": {"offline_wm_iterations": 20, "max_epochs": 4, "eval_every": 4, "eval_episodes": 2, "task_ids": [8, 29]},
                  "data": {"episodes_per_task": 2, "task_ids": [8, 29], "num_envs": 2}},
}  # fmt: skip
FILES = {"smoke": "smoke.toml", "mt30-mini": "mt30-mini.toml"}
VOLATILE = {"wall_s", "fps", "config", "config_hash", "data_dir", "git_commit", "platform", "cpu_model", "cpu_count", "plugins",
            "pretrain_wall_s", "python_version", "device_name"}  # fmt: skip


def tiny_suite(name: str, tmp: Path) -> Any:
    from pwmbench.suite.spec import parse_suite, prepare

    data = tomllib.loads((ROOT / "suites" / FILES[name]).read_text())
    shrink = SHRINK[name]
    data["seeds"] = shrink["seeds"]
    data["base"] = {**data["base"], **shrink["base"]}
    if "data" in shrink:
        data["data"] = {**data["data"], **shrink["data"]}
        data["base"]["data_dir"] = str(tmp / "data")
    return prepare(parse_suite(data, ROOT / "suites" / FILES[name]))


def _volatile(column: str) -> bool:
    return column in VOLATILE or column.endswith("_version") or column.startswith("time_")


def _rows(path: Path) -> list[dict[str, Any]]:
    from pwmbench.results.tables import read_table

    table = read_table(path)
    keep = [c for c in table.column_names if not _volatile(c)]
    return table.select(keep).to_pylist()


def snapshot(out: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{cell directory (relative): {"run": rows, "curves": rows}} for every cell with a run.arrow."""
    cells = {}
    for run in sorted(Path(out).rglob("run.arrow")):
        cells[str(run.parent.relative_to(out))] = {"run": _rows(run), "curves": _rows(run.parent / "curves.arrow")}
    return cells


def run_tiny(name: str, tmp: Path) -> dict[str, Any]:
    from pwmbench.jobs.runner import run_suite

    suite = tiny_suite(name, tmp)
    summary = run_suite(suite, tmp / "results", workers=2, progress=False)
    assert summary.ok, summary.problems
    return snapshot(tmp / "results")


def differences(got: Any, want: Any, exact: bool, where: str = "") -> list[str]:
    """Where two snapshots differ: every value equal (`exact`), or floats within 1e-4 relative."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return [f"{where}: keys {sorted(set(got) ^ set(want)) if isinstance(got, dict) else type(got).__name__}"]
        return [d for k in want for d in differences(got[k], want[k], exact, f"{where}/{k}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{where}: {len(got) if isinstance(got, list) else type(got).__name__} items, want {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, exact, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, float) and not exact:
        same = got == want or (got != got and want != want) or abs(got - want) <= 1e-4 * max(abs(want), 1e-6)
        return [] if same else [f"{where}: {got!r} != {want!r}"]
    if got == want or (isinstance(want, float) and got != got and want != want):
        return []
    return [f"{where}: {got!r} != {want!r}"]


def main() -> None:
    import tempfile

    from pwmbench.results.provenance import cpu_model

    record: dict[str, Any] = {"cpu_model": cpu_model(), "suites": {}}
    for name in SHRINK:
        with tempfile.TemporaryDirectory() as tmp:
            record["suites"][name] = run_tiny(name, Path(tmp))
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps(record, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size / 1e3:.0f} kB) on {record['cpu_model']}", file=sys.stderr)


if __name__ == "__main__":
    main()
