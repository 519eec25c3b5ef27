"""Suite files (TOML) → a validated Suite → cells (task × variant × seed).

    name = "smoke"
    tasks = ["dmc/cartpole-balance", "dmc/cheetah-run"]
    seeds = [42, 123, 456]                 # default
    baseline = "mlp"                       # default: the first variant
    parity_tolerance = 2.0                 # percent
    thresholds = { "dmc/cheetah-run" = 100.0 }   # returns for steps-to-threshold (optional)

    [base]                                 # PWM config shared by every variant (pwmbench.pwm.config keys)
    max_epochs = 100

    [variants.mlp]
    dynamics = "mlp"

    [variants.flow]                        # a dynamics block: dynamics, its options, parity policy, sweep
    dynamics = "flow"
    integrator = "heun"
    substeps = 2
    parity = "check"                       # "check" (fail over tolerance) or "match" (solve the width)
    sweep = [{ integrator = "heun", substeps = 4 }, { integrator = "euler", substeps = 2 }]

    [pretrain]                             # PWM's single-task world-model pretraining, the same for every variant
    episodes = 1000                        # collect this many episodes per task where `dir` holds no data yet,
    dir = "data/pretrain/{task}"           #   with `policy` ("random" or a policy.pt), `seed`, `num_envs`;
    iterations = 50000                     # optional: pretrain_wm_iterations (default: the task's, PWM's numbers)
    # or: data = "DIR" (an existing dataset; "{task}" is replaced by the task name)

    [decision]                             # how `pwmbench score` decides (docs/protocol.md#the-decision); all optional
    metric = "iqm"                         # "iqm", "mean" or "median" of normalised scores
    margin = 0.02                          # δ: non-inferiority margin, normalised points
    alpha = 0.05                           # error rate of one scoring (split over candidates)
    model_quality = "gate"                 # or "report": untrained world models make a "better" inconclusive
    score_at = "final"                     # or "peak" (PWM's convention: the peak of the seed-averaged curve)
    noise_sd = 0.05                        # expected std of a seed's paired difference: check's power warning

    [compute_matched]                      # the baseline with more world-model iterations
                                           #   (docs/protocol.md#compute-matched-comparison)
    variant = "mlp"
    match = "flow"
    wm_iterations = "auto"                 # or an int; auto = base × (update FLOPs of `match` / of `variant`)

Variants are built as one shared base config plus each variant's dynamics block, so the fairness audit can
diff them: a variant that sets any other config key is refused with the diff shown. Unknown keys, wrong
types and impossible values are errors naming the file, the key and the nearest valid key. The suite's name is a
results directory (results/<name>), so it is one plain path component; variant names (plain, sweep-expanded and
compute-matched) are unique, also as the directory names their cells get (`safe_name`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pwmbench.analysis.decision import DecisionSettings
from pwmbench.errors import ConfigError, PwmbenchError, check_keys, suggest
from pwmbench.plugin.options import is_int, is_number
from pwmbench.pwm.config import KEYS as CONFIG_KEYS
from pwmbench.pwm.config import MAX_COUNT, PWMConfig, resolve_config
from pwmbench.suite.parity import DEFAULT_TOLERANCE_PCT, Dims, VariantSpec, parity_report, solve_width

DEFAULT_SEEDS = (42, 123, 456)
TOP_KEYS = ("name", "description", "tasks", "seeds", "baseline", "parity_tolerance", "thresholds", "base", "variants", "compute_matched", "data", "pretrain", "executor", "decision")
RESOURCE_KEYS = ("cpus", "gpus", "memory_gb", "time_min")
DATA_KEYS = ("taskset", "episodes_per_task", "task_ids", "seed", "num_envs", "policy")
PRETRAIN_KEYS = ("data", "iterations", "episodes", "dir", "policy", "seed", "num_envs")
VARIANT_KEYS = ("dynamics", "parity", "sweep")
COMPUTE_KEYS = ("variant", "match", "wm_iterations", "name")
PARITY_POLICIES = ("check", "match")
SUITE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")  # one path component: results/<name> stays in results/
MAX_SEED = 2**32 - 1  # numpy's legacy seeding (np.random.seed, RandomState) takes 32-bit seeds
MAX_NAME_CHARS = 200  # variant names become directory names (a file name is at most 255 bytes)


class SuiteError(ConfigError):
    """A suite file is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Variant:
    name: str
    dynamics: str
    options: Mapping[str, Any] = field(default_factory=dict)
    parity: str = "check"
    overrides: Mapping[str, Any] = field(default_factory=dict)  # config keys other than the dynamics block
    declared: Mapping[str, Any] = field(default_factory=dict)  # differences the suite declares (compute matching)

    @property
    def spec(self) -> VariantSpec:
        return VariantSpec(self.dynamics, dict(self.options))


@dataclass(frozen=True)
class Cell:
    task: str
    variant: str
    seed: int
    config: PWMConfig

    @property
    def key(self) -> str:
        return f"{self.task}|{self.variant}|{self.seed}"

    def directory(self, root: Path) -> Path:
        return root / "cells" / safe_name(self.task) / safe_name(self.variant) / str(self.seed)


def safe_name(text: str) -> str:
    """A task or variant name as one directory name: no separators, never empty, ".", ".." or hidden."""
    name = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text.replace("/", "__"))
    return name if name and not name.startswith(".") else f"_{name}"


@dataclass
class Suite:
    name: str
    path: Path | None
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    base: dict[str, Any]
    variants: tuple[Variant, ...]
    baseline: str
    parity_tolerance: float = DEFAULT_TOLERANCE_PCT
    thresholds: dict[str, float] = field(default_factory=dict)
    description: str = ""
    compute_matched: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # [data]: collect base.data_dir's dataset first, if it has none
    pretrain: dict[str, Any] = field(default_factory=dict)  # [pretrain]: single-task world-model pretraining
    executor: dict[str, Any] = field(default_factory=dict)  # [executor]: name, options, resources per job kind
    decision: DecisionSettings = field(default_factory=DecisionSettings)  # [decision]: how score decides
    # filled by prepare(): per (task, variant) resolved config, and the audits
    configs: dict[tuple[str, str], PWMConfig] = field(default_factory=dict)
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise SuiteError(f"{self.where()}: no variant named {name!r} (variants: {', '.join(v.name for v in self.variants)})")

    def where(self) -> str:
        return str(self.path) if self.path else f"suite {self.name!r}"

    def cells(self) -> list[Cell]:
        if not self.configs:
            raise RuntimeError("call prepare() first")
        return [Cell(t, v.name, s, self.configs[(t, v.name)]) for t in self.tasks for v in self.variants for s in self.seeds]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "description": self.description,
            "tasks": list(self.tasks),
            "seeds": list(self.seeds),
            "baseline": self.baseline,
            "parity_tolerance": self.parity_tolerance,
            "thresholds": self.thresholds,
            "base": self.base,
            "variants": [dataclasses.asdict(v) for v in self.variants],
            "compute_matched": self.compute_matched,
            "data": self.data,
            "pretrain": self.pretrain,
            "executor": self.executor,
            "decision": self.decision.to_dict(),
            "parity": self.parity,
            "audit": self.audit,
            "configs": {f"{t}|{v}": c.to_dict() for (t, v), c in self.configs.items()},
        }


# ---------------------------------------------------------------------------------------------- parsing
MAX_SUITE_BYTES = 1_000_000


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file (nothing is trained; call `prepare` for the audits)."""
    path = Path(path)
    try:
        if not path.is_file():  # a directory, a named pipe (reading it would block), a device
            what = "is not a regular file" if path.exists() else "is a symbolic link that leads nowhere (a loop or a missing target)" if os.path.islink(path) else "does not exist"
            raise SuiteError(f"suite file {path} {what}")
        if path.stat().st_size > MAX_SUITE_BYTES:
            raise SuiteError(f"suite file {path} is {path.stat().st_size:,} bytes: a suite file is a few kB (at most {MAX_SUITE_BYTES:,})")
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:  # a symlink loop, no permission, ...
        raise SuiteError(f"suite file {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not UTF-8 text (byte {exc.start}): TOML files are UTF-8") from None
    except RecursionError:
        raise SuiteError(f"{path}: nested too deeply to be a suite file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: not valid TOML: {exc}") from None
    return parse_suite(data, path)


def _expect(where: str, key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise SuiteError(f"{where}: {key!r} must be {what}, got {value!r}")
    return value


def parse_suite(data: Mapping[str, Any], path: Path | None = None) -> Suite:
    where = str(path) if path else "suite"
    try:
        check_keys(data, TOP_KEYS, kind="suite key", where=where)
    except ConfigError as exc:
        raise SuiteError(str(exc)) from None
    name = _expect(where, "name", data.get("name", path.stem if path else "suite"), str, "a string")
    if not SUITE_NAME.fullmatch(name) or ".." in name:
        raise SuiteError(f"{where}: 'name' must be one plain directory name (results/<name>): letters, digits, '_', '-' and '.', "
                         f"1 to 100 characters, not starting with '.' and without '..', got {name!r}")  # fmt: skip
    description = _expect(where, "description", data.get("description", ""), str, "a string")
    tasks = _expect(where, "tasks", data.get("tasks"), list, "a non-empty list of task names")
    if not tasks or not all(isinstance(t, str) and t for t in tasks) or len(set(tasks)) != len(tasks):
        raise SuiteError(f"{where}: 'tasks' must be a non-empty list of distinct task names, got {tasks!r}")
    seeds = data.get("seeds", list(DEFAULT_SEEDS))
    if not isinstance(seeds, list) or not seeds or not all(is_int(s, 0, MAX_SEED) for s in seeds) or len(set(seeds)) != len(seeds):
        raise SuiteError(f"{where}: 'seeds' must be a non-empty list of distinct integers in [0, 2**32 - 1], got {seeds!r}")
    tolerance = data.get("parity_tolerance", DEFAULT_TOLERANCE_PCT)
    if not is_number(tolerance) or tolerance <= 0:  # a large one is how a test suite turns the gate off
        raise SuiteError(f"{where}: 'parity_tolerance' must be a positive finite number (percent), got {tolerance!r}")
    thresholds = _expect(where, "thresholds", data.get("thresholds", {}), dict, "a table of task → return")
    for task, value in thresholds.items():
        if task not in tasks:
            try:
                check_keys([task], tasks, kind="task in thresholds (not in 'tasks')", where=where)
            except ConfigError as exc:
                raise SuiteError(str(exc)) from None
        if not is_number(value):
            raise SuiteError(f"{where}: thresholds.{task} must be a finite number (a return), got {value!r}")

    base = dict(_expect(where, "base", data.get("base", {}), dict, "a table of config keys"))
    _refuse_invocation_keys(f"{where} [base]", base)
    for key in ("dynamics", "dynamics_options"):
        if key in base:
            raise SuiteError(f"{where}: base.{key} is not allowed: the dynamics model belongs in each [variants.NAME] block")
    try:
        resolve_config(base, where=f"{where} [base]")
    except ConfigError as exc:
        raise SuiteError(str(exc)) from None

    raw_variants = _expect(where, "variants", data.get("variants"), dict, "a table of [variants.NAME] blocks")
    if not raw_variants:
        raise SuiteError(f"{where}: at least one [variants.NAME] block is needed")
    variants: list[Variant] = []
    for vname, block in raw_variants.items():
        variants.extend(_parse_variant(where, vname, _expect(where, f"variants.{vname}", block, dict, "a table")))
    _check_unique_names(where, variants)
    names = [v.name for v in variants]
    baseline = data.get("baseline", names[0])
    if baseline not in names:
        raise SuiteError(f"{where}: baseline {baseline!r} is not a variant (variants: {', '.join(names)})")

    compute = dict(_expect(where, "compute_matched", data.get("compute_matched", {}), dict, "a table"))
    if compute:
        variants.append(_parse_compute_matched(where, compute, variants, base))
        _check_unique_names(where, variants)
    collect = _parse_data(where, data.get("data", {}), base)
    pretrain = _parse_pretrain(where, data.get("pretrain", {}), base)
    executor = parse_executor(where, data.get("executor", {}))
    try:
        decision = DecisionSettings.parse(data.get("decision", {}), where=f"{where} [decision]")
    except ConfigError as exc:
        raise SuiteError(str(exc)) from None
    return Suite(name, path, tuple(tasks), tuple(seeds), base, tuple(variants), baseline, float(tolerance), {k: float(v) for k, v in thresholds.items()}, description, compute, collect, pretrain, executor, decision)


def _check_unique_names(where: str, variants: list[Variant]) -> None:
    """Plain, sweep-expanded and compute-matched variant names are distinct, also as cell directory names (a clash
    would make two variants share, and overwrite, their cells' results)."""
    seen: dict[str, str] = {}
    for v in variants:
        if not v.name or len(v.name) > MAX_NAME_CHARS:
            raise SuiteError(f"{where}: variant name {v.name!r} must be 1 to {MAX_NAME_CHARS} characters")
        other = seen.setdefault(safe_name(v.name), v.name)
        if other != v.name:
            raise SuiteError(f"{where}: variants {other!r} and {v.name!r} would share the cell directory {safe_name(v.name)!r}; rename one")
        elif sum(w.name == v.name for w in variants) > 1:
            raise SuiteError(f"{where}: variant name {v.name!r} is given twice (by [variants] blocks, sweep points or compute_matched.name); "
                             "variant names must be unique")  # fmt: skip


def parse_executor(where: str, block: Any) -> dict[str, Any]:
    """[executor]: `name` (optional: `--executor` overrides it), `[executor.resources.<kind>]` tables (cpus, gpus,
    memory_gb, time_min for kind cell, world_model, member or collect), and any other key as an option of the executor
    (checked here by building the named executor once; unnamed, by the executor the run picks). Returns {"name",
    "options", "resources"}."""
    from pwmbench.plugin.interfaces import Resources

    here = f"{where} [executor]"
    block = dict(_expect(where, "executor", block, dict, "a table"))
    name = block.pop("name", None)
    if name is not None:
        _expect(here, "name", name, str, "an executor name")
    resources = dict(_expect(here, "resources", block.pop("resources", {}), dict, "a table of [executor.resources.KIND] tables"))
    try:
        from pwmbench.jobs.cell_kinds import (
            job_kinds,  # the kinds of job the registered cell kinds and the data jobs emit
        )

        check_keys(resources, job_kinds(), kind="job kind", where=f"{here} resources")
        for kind, spec in resources.items():
            check_keys(_expect(here, f"resources.{kind}", spec, dict, "a table"), RESOURCE_KEYS, kind="resource", where=f"{here} resources.{kind}")
            try:
                Resources(**spec)
            except ConfigError as exc:
                raise SuiteError(f"{here} resources.{kind}: {exc}") from None
            for key in ("cpus", "gpus", "time_min"):  # whole numbers that a scheduler can be asked for
                if spec.get(key) is not None and not is_int(spec[key], 0, MAX_COUNT):
                    raise SuiteError(f"{here} resources.{kind}: {key} must be a whole number at most {MAX_COUNT:,}, got {spec[key]!r}")
    except ConfigError as exc:
        raise SuiteError(str(exc)) from None
    if name is not None:
        _check_executor_options(here, name, block)
    return {"name": name, "options": block, "resources": resources}


def _check_executor_options(here: str, name: str, options: dict[str, Any]) -> None:
    """The named executor exists and takes these options: a trial construction (executors only check their options
    when built; none starts anything before `run`). A missing optional dependency (Ray, submitit) is left to the run,
    which may choose another executor."""
    from pwmbench.errors import PluginError
    from pwmbench.plugin.manager import get_plugins

    try:
        factory = get_plugins().executors.get(name)
    except PwmbenchError as exc:
        raise SuiteError(f"{here}: name: {exc}") from None
    try:
        factory(workers=1, **options)
    except (ConfigError, TypeError) as exc:
        near = [f"{key!r} (did you mean {close!r}?)" for key in options if (close := suggest(key, ("name", "resources")))]
        raise SuiteError(f"{here}: executor {name!r}: {exc}" + (f"; [executor] itself takes 'name' and 'resources', not {', '.join(near)}" if near else "")) from None
    except PluginError:
        pass


def _parse_pretrain(where: str, block: Any, base: Mapping[str, Any]) -> dict[str, Any]:
    """[pretrain]: `data` (a dataset directory) or a collector spec (`episodes`, `dir`, optional `policy`, `seed`,
    `num_envs`), plus optional `iterations`. "{task}" in a directory is replaced by each task's name."""
    here = f"{where} [pretrain]"
    block = dict(_expect(where, "pretrain", block, dict, "a table"))
    if not block:
        return {}
    try:
        check_keys(block, PRETRAIN_KEYS, kind="pretrain key", where=here)
    except ConfigError as exc:
        raise SuiteError(str(exc)) from None
    clash = [k for k in ("pretrain_data", "pretrain_wm_iterations", "pretrain_checkpoint") if k in base]
    if clash:
        raise SuiteError(f"{here}: base also sets {clash}; set pretraining in one place (the [pretrain] table)")
    collector = [k for k in ("episodes", "dir", "policy", "seed", "num_envs") if k in block]
    if ("data" in block) == bool(collector):
        raise SuiteError(f"{here}: give either data = \"DIR\" (an existing dataset) or a collector spec "
                         f"(episodes = N, dir = \"data/pretrain/{{task}}\"), not {'both' if collector else 'neither'}")  # fmt: skip
    if collector:
        for key in ("episodes", "dir"):
            if key not in block:
                raise SuiteError(f"{here}: a collector spec needs {key!r} (e.g. episodes = 1000, dir = \"data/pretrain/{{task}}\")")
    for key in ("data", "dir", "policy"):
        if key in block and (not isinstance(block[key], str) or not block[key]):
            raise SuiteError(f"{here}: {key!r} must be a non-empty string, got {block[key]!r}")
    for key, low, high in (("episodes", 1, MAX_COUNT), ("num_envs", 1, MAX_COUNT), ("seed", 0, MAX_SEED), ("iterations", 0, MAX_COUNT)):
        value = block.get(key, low)
        if not is_int(value, low, high):
            raise SuiteError(f"{here}: {key!r} must be an integer in [{low}, {high:,}], got {value!r}")
    return block


def pretrain_dir(suite: Suite, task: str) -> str | None:
    """The pretraining dataset directory of `task` under the suite's [pretrain] table (None without one)."""
    return pretrain_dir_of(suite.pretrain, task)


def pretrain_dir_of(spec: Mapping[str, Any] | None, task: str) -> str | None:
    """The same from a [pretrain] table as recorded (suite.json), for readers without a Suite (pwmbench status)."""
    if not spec:
        return None
    return str(spec.get("data", spec.get("dir"))).replace("{task}", task)


def pretrain_overrides(suite: Suite, task: str) -> dict[str, Any]:
    """The config keys [pretrain] sets for every variant of `task` (identical across variants)."""
    if not suite.pretrain:
        return {}
    out: dict[str, Any] = {"pretrain_data": pretrain_dir(suite, task)}
    if "iterations" in suite.pretrain:
        out["pretrain_wm_iterations"] = suite.pretrain["iterations"]
    return out


def _parse_data(where: str, block: Any, base: Mapping[str, Any]) -> dict[str, Any]:
    """[data]: how to collect the offline dataset into base.data_dir when it holds none (pwmbench.data.collect)."""
    block = dict(_expect(where, "data", block, dict, "a table"))
    if not block:
        return {}
    try:
        check_keys(block, DATA_KEYS, kind="data key", where=f"{where} [data]")
    except ConfigError as exc:
        raise SuiteError(str(exc)) from None
    if not base.get("data_dir"):
        raise SuiteError(f"{where}: [data] collects a dataset into base.data_dir, which is not set")
    for key in ("taskset", "episodes_per_task"):
        if key not in block:
            raise SuiteError(f"{where}: [data] needs {key!r}")
    for key in ("taskset", "policy"):
        if key in block and (not isinstance(block[key], str) or not block[key]):
            raise SuiteError(f"{where}: data.{key} must be a non-empty string, got {block[key]!r}")
    for key, low, high in (("episodes_per_task", 1, MAX_COUNT), ("num_envs", 1, MAX_COUNT), ("seed", 0, MAX_SEED)):
        if key in block and not is_int(block[key], low, high):
            raise SuiteError(f"{where}: data.{key} must be an integer in [{low}, {high:,}], got {block[key]!r}")
    ids = block.get("task_ids")
    if ids is not None and (not isinstance(ids, list) or not ids or not all(is_int(i, 0, MAX_COUNT) for i in ids) or len(set(ids)) != len(ids)):
        raise SuiteError(f"{where}: data.task_ids must be a non-empty list of distinct task ids ≥ 0, got {ids!r}")
    return block


def _dynamics_options_for(dynamics: str) -> dict[str, Any]:
    from pwmbench.plugin.manager import get_plugins

    return {**get_plugins().dynamics.get(dynamics).default_options, "units": None}


def _check_options(here: str, dynamics: str, options: Mapping[str, Any]) -> None:
    """Types and values of a variant's dynamics options (a trial build on a small context), named by file and variant."""
    from pwmbench.plugin.manager import get_plugins
    from pwmbench.plugin.validation import check_variant_options

    try:
        check_variant_options(get_plugins().dynamics.get(dynamics), options)
    except PwmbenchError as exc:
        raise SuiteError(f"{here}: {exc}") from None


def _refuse_invocation_keys(here: str, block: Mapping[str, Any]) -> None:
    """`allow_pickle` is the permission of the person at the keyboard, not of whoever wrote the suite file: a suite
    file that could switch it on could make `pwmbench run` unpickle — and so run — code from a dataset."""
    from pwmbench.pwm.config import INVOCATION_KEYS

    for key in INVOCATION_KEYS:
        if key in block:
            raise SuiteError(f"{here}: {key} cannot be set in a suite file (whoever can write the file could make a run unpickle, "
                             f"and so run, code from a dataset); when you trust the data, pass --allow-pickle to `pwmbench run`")  # fmt: skip


def with_invocation(suite: Suite, *, allow_pickle: bool = False) -> Suite:
    """The suite's configs with the command line's permissions (`--allow-pickle`), which no suite file can give."""
    if allow_pickle:
        suite.configs = {k: dataclasses.replace(c, allow_pickle=True) for k, c in suite.configs.items()}
    return suite


def parity_line(suite: Suite, task: str) -> str:
    """Each variant's signed parameter gap against the baseline on `task` (what `run`, `check` and the parity gate use)."""
    gaps = suite.parity[task]["gap_pct"]
    return ", ".join(f"{v} {g:+.3f}%" for v, g in gaps.items() if v != suite.baseline) + f" vs {suite.baseline} (tolerance ±{suite.parity_tolerance}%)"


def unsafe_options(suite: Suite) -> list[str]:
    """What this run permits that can run code from data — said by `check` and `run --dry-run`."""
    if any(c.allow_pickle for c in suite.configs.values()):
        return ["--allow-pickle: dataset chunk files the safe loader refuses will be unpickled (a pickle can run code: trusted data only)"]
    return []


def _parse_variant(where: str, name: str, block: Mapping[str, Any]) -> list[Variant]:
    here = f"{where} [variants.{name}]"
    _refuse_invocation_keys(here, block)
    if "dynamics" not in block:
        raise SuiteError(f"{here}: 'dynamics' is required (e.g. dynamics = \"mlp\")")
    dynamics = _expect(here, "dynamics", block["dynamics"], str, "a registered dynamics model name")
    try:
        option_names = _dynamics_options_for(dynamics)
    except PwmbenchError as exc:
        raise SuiteError(f"{here}: {exc}") from None
    options, overrides = {}, {}
    for key, value in block.items():
        if key in VARIANT_KEYS:
            continue
        if key == "dynamics_options":
            raise SuiteError(f"{here}: 'dynamics_options' is not a variant key: write the options of {dynamics!r} in the block itself (e.g. units = [256, 256])")
        if key in option_names:
            options[key] = value
        elif key in CONFIG_KEYS:
            overrides[key] = value  # applied, then refused by the fairness audit with the diff shown
        else:
            try:
                check_keys([key], [*VARIANT_KEYS, *option_names], kind=f"key for dynamics model {dynamics!r}", where=here)
            except ConfigError as exc:
                raise SuiteError(str(exc)) from None
    parity = block.get("parity", "check")
    if parity not in PARITY_POLICIES:
        raise SuiteError(f"{here}: parity must be one of {PARITY_POLICIES}, got {parity!r}")
    sweep = block.get("sweep")
    if sweep is None:
        _check_options(here, dynamics, options)
        return [Variant(name, dynamics, options, parity, overrides)]
    if not isinstance(sweep, list) or not sweep or not all(isinstance(p, dict) and p for p in sweep):
        raise SuiteError(f"{here}: sweep must be a non-empty list of option tables, e.g. [{{ integrator = \"heun\", substeps = 4 }}]")
    out = []
    for point in sweep:
        try:
            check_keys(point, option_names, kind=f"sweep option of {dynamics!r}", where=here)
        except ConfigError as exc:
            raise SuiteError(str(exc)) from None
        label = ",".join(f"{k}={v}" for k, v in point.items())
        _check_options(f"{here} sweep point {{{label}}}", dynamics, {**options, **point})
        out.append(Variant(f"{name}[{label}]", dynamics, {**options, **point}, parity, overrides))
    return out


def _parse_compute_matched(where: str, block: dict[str, Any], variants: list[Variant], base: dict[str, Any]) -> Variant:
    here = f"{where} [compute_matched]"
    try:
        check_keys(block, COMPUTE_KEYS, kind="compute_matched key", where=here)
    except ConfigError as exc:
        raise SuiteError(str(exc)) from None
    names = {v.name: v for v in variants}
    for key in ("variant", "match"):
        if not isinstance(block.get(key), str) or block[key] not in names:
            raise SuiteError(f"{here}: {key} must name a variant ({', '.join(names)}), got {block.get(key)!r}")
    iterations = block.get("wm_iterations", "auto")
    if iterations != "auto" and not is_int(iterations, 1, MAX_COUNT):
        raise SuiteError(f"{here}: wm_iterations must be \"auto\" or a positive integer (at most {MAX_COUNT:,}), got {iterations!r}")
    source = names[block["variant"]]
    name = _expect(here, "name", block.get("name", f"{source.name}-compute-matched"), str, "a variant name")
    if name in names:
        raise SuiteError(f"{here}: name {name!r} is already the name of a variant ([variants] or a sweep point): the compute-matched "
                         f"baseline needs its own name (default: {source.name}-compute-matched)")  # fmt: skip
    return Variant(name, source.dynamics, dict(source.options), source.parity, dict(source.overrides), {"wm_iterations": iterations, "match": block["match"]})


# ---------------------------------------------------------------------------------------------- audits
TASK_SET_KEYS = ("data_dir", "task_ids", "offline_wm_iterations", "policy_batch_size", "wm_recipe", "critic_targets", "world_model_checkpoint")


def _check_task_set_keys(suite: Suite, base_cfg: PWMConfig) -> None:
    """Keys only task sets read are refused on a suite without one (they would be ignored without a word), and a task
    set's task_ids must be its members' ids."""
    from pwmbench.api import TaskSet
    from pwmbench.api import task as get_task

    try:
        resolved = {t: get_task(t) for t in suite.tasks}
    except PwmbenchError as exc:
        raise SuiteError(f"{suite.where()}: {exc}") from None
    sets = {t: task for t, task in resolved.items() if isinstance(task, TaskSet)}
    if not sets:
        given = [f"base.{k}" for k in TASK_SET_KEYS if k in suite.base] + (["[data]"] if suite.data else [])
        if given:
            raise SuiteError(f"{suite.where()}: {', '.join(given)} apply to task sets (mt30, mt80) only, and this suite has none "
                             f"(tasks: {', '.join(suite.tasks)}): remove them, or add the task set")  # fmt: skip
    for name, taskset in sets.items():
        bad = [i for i in (base_cfg.task_ids or ()) if not 0 <= i < taskset.spec.n_tasks]
        if bad:
            raise SuiteError(f"{suite.where()}: task_ids {bad} are not members of {name} (ids 0–{taskset.spec.n_tasks - 1})")
    if suite.data:  # checked when planning, not first when the collector job runs on a node
        name = suite.data["taskset"]
        try:
            collected = get_task(name)
        except PwmbenchError as exc:
            raise SuiteError(f"{suite.where()} [data]: taskset {name!r}: {exc}") from None
        if not isinstance(collected, TaskSet):
            raise SuiteError(f"{suite.where()} [data]: taskset {name!r} is a single task, not a task set (mt30, mt80)")
        bad = [i for i in suite.data.get("task_ids") or () if i >= collected.spec.n_tasks]
        if bad:
            raise SuiteError(f"{suite.where()} [data]: task_ids {bad} are not members of {name} (ids 0–{collected.spec.n_tasks - 1})")


def prepare(suite: Suite) -> Suite:
    """Resolve every (task, variant) config, run the parity gate and the fairness audit; errors stop here."""
    from pwmbench.api import task as get_task
    from pwmbench.nn.presets import preset as get_preset

    base_cfg = resolve_config(suite.base)
    wm_preset = get_preset(base_cfg.preset).with_overrides(**base_cfg.world_model)
    baseline = suite.variant(suite.baseline)
    _check_task_set_keys(suite, base_cfg)
    for task_name in suite.tasks:
        try:
            spec = get_task(task_name).spec
        except PwmbenchError as exc:
            raise SuiteError(f"{suite.where()}: {exc}") from None
        if suite.pretrain and spec.n_tasks > 1:
            raise SuiteError(f"{suite.where()} [pretrain]: {task_name} is a task set; [pretrain] is single-task pretraining (task sets train offline on [data])")
        dims = Dims(spec.obs_dim, spec.act_dim, spec.n_tasks, spec.task_dim)
        ordered = [baseline, *[v for v in suite.variants if v.name != baseline.name]]
        report = parity_report(wm_preset, dims, [v.spec for v in ordered], suite.parity_tolerance)
        solved: dict[str, Any] = {}
        options: dict[str, dict[str, Any]] = {v.name: dict(v.options) for v in suite.variants}
        for variant, entry in zip(ordered[1:], report.entries[1:]):
            if variant.parity == "match":
                solution = solve_width(wm_preset, dims, baseline.spec, variant.spec)
                options[variant.name]["units"] = list(solution.variant.options["units"])
                solved[variant.name] = solution.to_dict()
            elif abs(entry.gap_pct) > suite.parity_tolerance:
                raise SuiteError(
                    f"{suite.where()}: parity gate: on {task_name} (obs {dims.obs_dim}, act {dims.act_dim}) variant {variant.name!r} has "
                    f"{entry.total:,} parameters vs {report.baseline.total:,} for baseline {baseline.name!r} "
                    f"({entry.gap_pct:+.2f}%, tolerance ±{suite.parity_tolerance}%). Set parity = \"match\" in its "
                    "[variants] block to solve its width, or change its units."
                )
        final = parity_report(wm_preset, dims, [VariantSpec(v.dynamics, options[v.name]) for v in ordered], suite.parity_tolerance)
        gaps = {v.name: e.gap_pct for v, e in zip(ordered, final.entries)}
        suite.parity[task_name] = {"dims": vars(dims), "report": final.to_dict(), "solved": solved, "gap_pct": gaps}
        for variant in suite.variants:
            overrides = {**suite.base, **pretrain_overrides(suite, task_name), **variant.overrides, "dynamics": variant.dynamics, "dynamics_options": options[variant.name]}
            if "wm_iterations" in variant.declared:
                overrides["wm_iterations"] = _matched_iterations(suite, variant, base_cfg, wm_preset, dims, options)
            try:
                suite.configs[(task_name, variant.name)] = resolve_config(overrides, where=f"{suite.where()} [variants.{variant.name}]")
            except ConfigError as exc:
                raise SuiteError(str(exc)) from None
    suite.audit = fairness_audit(suite)
    return suite


def _matched_iterations(suite: Suite, variant: Variant, base_cfg: PWMConfig, wm_preset: Any, dims: Dims, options: dict[str, dict[str, Any]]) -> int:
    requested = variant.declared["wm_iterations"]
    if requested != "auto":
        return int(requested)
    match = suite.variant(variant.declared["match"])
    ratio = update_flops(wm_preset, dims, match.dynamics, options[match.name]) / update_flops(wm_preset, dims, variant.dynamics, options[variant.name])
    suite.compute_matched["flop_ratio"] = ratio
    return max(1, round(base_cfg.wm_iterations * ratio))


def update_flops(preset: Any, dims: Dims, dynamics: str, options: Mapping[str, Any], horizon: int = 16, batch: int = 4) -> float:
    """Matmul FLOPs of one world-model update (loss, backward) per sequence, counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pwmbench.nn.world_model import build_world_model

    torch.manual_seed(0)
    wm = build_world_model(preset, obs_dim=dims.obs_dim, act_dim=dims.act_dim, n_tasks=dims.n_tasks, task_dim=dims.task_dim, dynamics=dynamics, dynamics_options=dict(options))
    obs = torch.randn(horizon + 1, batch, dims.obs_dim)
    act = torch.rand(horizon, batch, dims.act_dim) * 2 - 1
    rew = torch.randn(horizon, batch)
    task = torch.zeros(batch, dtype=torch.long) if dims.n_tasks > 1 else None
    with FlopCounterMode(display=False) as counter:
        wm.loss(obs, act, rew, task).wm_loss.backward()
    return counter.get_total_flops() / batch


def fairness_audit(suite: Suite) -> dict[str, Any]:
    """Diff the resolved configs of all variants per task; only dynamics blocks and declared keys may differ."""
    allowed = {"dynamics", "dynamics_options"}
    differences: dict[str, dict[str, dict[str, Any]]] = {}
    for task_name in suite.tasks:
        configs = {v.name: suite.configs[(task_name, v.name)].to_dict() for v in suite.variants}
        declared = {v.name: set(v.declared) for v in suite.variants}
        keys = set().union(*configs.values())
        for key in sorted(keys - allowed):
            values = {name: cfg.get(key) for name, cfg in configs.items() if key not in declared[name]}
            if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
                differences.setdefault(task_name, {})[key] = values
    if differences:
        lines = [f"  {task}: {key}: " + ", ".join(f"{n}={v!r}" for n, v in vals.items()) for task, diff in differences.items() for key, vals in diff.items()]
        raise SuiteError(f"{suite.where()}: fairness audit: variants differ outside their dynamics blocks:\n" + "\n".join(lines))
    return {
        "ok": True,
        "shared_keys": sorted(set(CONFIG_KEYS) - allowed),
        "dynamics_blocks": {v.name: {"dynamics": v.dynamics, **v.options} for v in suite.variants},
        "declared_differences": {v.name: dict(v.declared) for v in suite.variants if v.declared},
        "wm_recipes": _wm_recipes(suite),
    }


def _wm_recipes(suite: Suite) -> dict[str, dict[str, dict[str, Any]]]:
    """Per task set and variant, the offline world-model recipe with its coefficients (pwm/recipes.py): every
    variant's world model must be trained by the same one, so a difference is refused like any other."""
    from pwmbench.api import task as get_task
    from pwmbench.pwm.recipes import resolve_recipe

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for task_name in suite.tasks:
        if get_task(task_name).spec.n_tasks < 2:
            continue  # single tasks train online with PWM's loss (pwm/trainer.py)
        recipes = {v.name: resolve_recipe(suite.configs[(task_name, v.name)]).to_dict() for v in suite.variants}
        if len({json.dumps(r, sort_keys=True) for r in recipes.values()}) > 1:
            lines = "\n".join(f"  {name}: {r}" for name, r in recipes.items())
            raise SuiteError(f"{suite.where()}: fairness audit: {task_name}'s variants train their world models by different recipes:\n{lines}")
        out[task_name] = recipes
    return out

