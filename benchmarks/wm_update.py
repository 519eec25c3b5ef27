"""World-model update time of `mlp` vs `flow` dynamics on this CPU, against FLOP counts and matmul speed.

Why: the flow dynamics (Heun, K = 2) evaluates its velocity network 2K + 1 = 5 times per rollout step
where the MLP evaluates once, so its world-model update is expected to cost more; the question is
whether it costs *only* what its extra FLOPs predict. Goals (from the issue):

- the time ratio flow/mlp is within 10% of the FLOP ratio flow/mlp (per preset);
- at `pwm_48M`, the update reaches ≥ 50% of the matmul throughput this machine measures at the same
  GEMM sizes (per variant).

What is measured, per preset (`pwm`: dflex Ant dims; `pwm_48M`: MT30 dims with task embeddings) and
per dynamics variant:

- one update = `wm.loss(obs, act, rew[, task])` (B = 256 sequences, H = 16), `wm_loss.backward()`,
  grad-norm clip to 20, Adam(lr 3e-4) step, zero_grad;
- FLOPs: every `nn.Linear` call of one traced update, counted by hooks as GEMMs (2·rows·in·out each:
  the forward product, plus the grad-input and grad-weight products when backward runs them — the
  no-grad target encode and the flow rollout's unused last prediction count once); `FlopCounterMode`
  as a cross-check;
- time: median over interleaved repetitions (mlp, flow, mlp, flow, ...) after warm-up;
- matmul throughput: `torch.matmul` at each GEMM shape and layout the update runs, combined into the
  FLOP-weighted (time-harmonic) throughput the update would reach if it were nothing but those GEMMs;
- a profiled update per variant: the share of time spent in matmul kernels and the heaviest other ops,
  to say where the time goes when a goal is missed.

Run from the repository root:

    python benchmarks/wm_update.py                  # full measurement (several minutes on 2 cores)
    python benchmarks/wm_update.py --quick          # smoke run
    python benchmarks/wm_update.py --presets pwm --reps 10 --threads 1

Results: `benchmarks/results/wm_update.json` (everything, raw samples included) and a Markdown table
next to it (`.md`), also printed to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from pwmbench.api import WorldModel, build_world_model

BATCH = 256
HORIZON = 16
LEARNING_RATE = 3e-4
GRAD_CLIP_NORM = 20.0
SEED = 0

VARIANT_OPTIONS: dict[str, dict[str, Any] | None] = {
    "mlp": None,
    "flow": {"integrator": "heun", "substeps": 2},
}
BASELINE, CANDIDATE = "mlp", "flow"

RATIO_TOLERANCE = 0.10  # |time ratio / FLOP ratio − 1| ≤ this
THROUGHPUT_GOAL = 0.50  # achieved GFLOP/s ≥ this × measured matmul GFLOP/s ...
THROUGHPUT_GOAL_PRESETS = ("pwm_48M",)  # ... at these presets

GEMM_REPS = 7
GEMM_SAMPLE_FLOPS = 2e9  # repeat small GEMMs within one timing sample up to about this many FLOPs
MATMUL_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"})
TOP_OTHER_OPS = 6
BUSY_CPU_FRACTION = 0.2  # warn when other processes keep this much of the CPU busy before the run
MARKDOWN_MIN_GEMM_SHARE = 0.02  # GEMM shapes below this share of a preset's FLOPs stay out of the Markdown

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "wm_update.json"


@dataclass(frozen=True)
class Workload:
    """A preset with the task dims it is benchmarked at, and its default repetition counts."""

    preset: str
    task: str
    obs_dim: int
    act_dim: int
    reps: int
    warmup: int
    n_tasks: int = 1
    task_dim: int = 0


WORKLOADS = {
    w.preset: w
    for w in (
        Workload("pwm", task="dflex Ant", obs_dim=37, act_dim=8, reps=20, warmup=3),
        Workload("pwm_48M", task="MT30", obs_dim=24, act_dim=6, reps=5, warmup=1, n_tasks=30, task_dim=64),
    )
}


# --------------------------------------------------------------------------------------------- the update
@dataclass(frozen=True)
class Batch:
    obs: Tensor  # [H+1, B, obs_dim]
    act: Tensor  # [H, B, act_dim]
    rew: Tensor  # [H, B]
    task: Tensor | None  # [B] task ids, task sets only


def make_batch(workload: Workload) -> Batch:
    task = torch.randint(workload.n_tasks, (BATCH,)) if workload.n_tasks > 1 else None
    return Batch(
        obs=torch.randn(HORIZON + 1, BATCH, workload.obs_dim),
        act=torch.rand(HORIZON, BATCH, workload.act_dim) * 2 - 1,
        rew=torch.randn(HORIZON, BATCH),
        task=task,
    )


def build_model(workload: Workload, variant: str) -> WorldModel:
    return build_world_model(
        workload.preset,
        obs_dim=workload.obs_dim,
        act_dim=workload.act_dim,
        dynamics=variant,
        dynamics_options=VARIANT_OPTIONS[variant],
        n_tasks=workload.n_tasks,
        task_dim=workload.task_dim,
    )


class WorldModelUpdate:
    """One world-model training update on a fixed batch: loss → backward → clip → Adam step → zero_grad."""

    def __init__(self, model: WorldModel, batch: Batch) -> None:
        self.model, self.batch = model, batch
        self.optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def __call__(self) -> None:
        b = self.batch
        self.model.loss(b.obs, b.act, b.rew, b.task).wm_loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad()


# --------------------------------------------------------------------------------------------- timing
def time_interleaved(fns: Mapping[str, Callable[[], Any]], reps: int, warmup: int) -> dict[str, list[float]]:
    """Wall-clock seconds of each function, `reps` samples each, called in turn (a, b, a, b, ...)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples


# --------------------------------------------------------------------------------------------- GEMM accounting
GEMM_PASSES = ("forward", "grad_input", "grad_weight")


@dataclass(frozen=True, order=True)
class Gemm:
    """One matrix product an `nn.Linear` call costs: y = x·Wᵀ, dx = dy·W or dW = dyᵀ·x."""

    rows: int
    in_features: int
    out_features: int
    kind: str  # one of GEMM_PASSES

    @property
    def flops(self) -> int:
        return 2 * self.rows * self.in_features * self.out_features

    def label(self) -> str:
        return f"{self.kind} {self.rows}×{self.in_features}→{self.out_features}"

    def product(self) -> Callable[[], Tensor]:
        """The product with the operand layouts autograd uses for a Linear layer, on random data."""
        x = torch.randn(self.rows, self.in_features)
        weight = torch.randn(self.out_features, self.in_features)
        grad_y = torch.randn(self.rows, self.out_features)
        products: dict[str, Callable[[], Tensor]] = {
            "forward": lambda: torch.matmul(x, weight.T),
            "grad_input": lambda: torch.matmul(grad_y, weight),
            "grad_weight": lambda: torch.matmul(grad_y.T, x),
        }
        return products[self.kind]


def count_gemms(model: nn.Module, update: Callable[[], None]) -> Counter[Gemm]:
    """How many times each GEMM runs in one `update`, traced with hooks on every nn.Linear.

    A forward hook counts each call's forward product and hooks the call's output; when backward reaches
    that output, the grad-weight product counts (if the weight requires grad) and the grad-input product
    (if the input does). So calls under no_grad, and calls whose output the loss does not depend on (the
    rollout's last prediction), count their forward product only — as autograd runs them.
    """
    counts: Counter[Gemm] = Counter()

    def forward_hook(module: nn.Linear, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        x = inputs[0]
        shape = (x.numel() // module.in_features, module.in_features, module.out_features)
        counts[Gemm(*shape, "forward")] += 1

        def backward_hook(_grad: Tensor) -> None:
            counts[Gemm(*shape, "grad_input")] += int(x.requires_grad)
            counts[Gemm(*shape, "grad_weight")] += int(module.weight.requires_grad)

        if output.requires_grad:
            output.register_hook(backward_hook)

    handles = [m.register_forward_hook(forward_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        update()
    finally:
        for handle in handles:
            handle.remove()
    return +counts  # drop zero counts


def total_flops(counts: Mapping[Gemm, int]) -> int:
    return sum(n * g.flops for g, n in counts.items())


def flop_counter_total(update: Callable[[], None]) -> int | None:
    """torch's own FLOP count of one update (a cross-check of `count_gemms`), or None if it fails."""
    try:
        with FlopCounterMode(display=False) as counter:
            update()
    except Exception as exc:  # a cross-check only: report and carry on
        print(f"  FlopCounterMode failed: {type(exc).__name__}: {exc}")
        return None
    return int(counter.get_total_flops())


def measure_gemm_gflops(gemm: Gemm, reps: int) -> float:
    """Median GFLOP/s of `gemm` alone, small products repeated within a sample to a measurable time."""
    product = gemm.product()
    inner = max(1, round(GEMM_SAMPLE_FLOPS / gemm.flops))

    def run() -> None:
        for _ in range(inner):
            product()

    seconds = statistics.median(time_interleaved({"gemm": run}, reps, warmup=1)["gemm"])
    return gemm.flops * inner / seconds / 1e9


def matmul_only_seconds(counts: Mapping[Gemm, int], gflops: Mapping[Gemm, float]) -> float:
    """Time the update's GEMMs take at their separately measured speeds (its matmul-bound time)."""
    return sum(n * g.flops / (gflops[g] * 1e9) for g, n in counts.items())


# --------------------------------------------------------------------------------------------- profile
def profile_update(update: Callable[[], None]) -> dict[str, Any]:
    """Where one update's time goes: matmul kernels vs the rest (self CPU time per op)."""
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        update()
    wall = time.perf_counter() - start
    self_seconds = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    matmul = sum(s for op, s in self_seconds.items() if op in MATMUL_OPS)
    others = sorted(((op, s) for op, s in self_seconds.items() if op not in MATMUL_OPS), key=lambda kv: -kv[1])
    return {
        "wall_s": wall,
        "ops_s": sum(self_seconds.values()),
        "matmul_s": matmul,
        "matmul_share": matmul / wall,
        "top_other_ops_s": dict(others[:TOP_OTHER_OPS]),
    }


# --------------------------------------------------------------------------------------------- one preset
def benchmark_workload(workload: Workload, reps: int, warmup: int, gemm_reps: int) -> dict[str, Any]:
    torch.manual_seed(SEED)
    batch = make_batch(workload)
    updates = {variant: WorldModelUpdate(build_model(workload, variant), batch) for variant in VARIANT_OPTIONS}

    print(f"[{workload.preset}] counting FLOPs")
    gemm_counts = {variant: count_gemms(u.model, u) for variant, u in updates.items()}
    torch_flops = {variant: flop_counter_total(u) for variant, u in updates.items()}

    print(f"[{workload.preset}] timing {reps} interleaved updates per variant after {warmup} warm-up")
    samples = time_interleaved(updates, reps, warmup)

    print(f"[{workload.preset}] profiling one update per variant")
    profiles = {variant: profile_update(u) for variant, u in updates.items()}

    all_gemms = sorted(set().union(*gemm_counts.values()))
    print(f"[{workload.preset}] timing torch.matmul at {len(all_gemms)} GEMM shapes")
    gemm_gflops = {g: measure_gemm_gflops(g, gemm_reps) for g in all_gemms}

    variants = {
        variant: summarise_variant(updates[variant].model, gemm_counts[variant], torch_flops[variant],
                                   samples[variant], gemm_gflops, profiles[variant])
        for variant in VARIANT_OPTIONS
    }
    return {
        "workload": asdict(workload),
        "reps": reps,
        "warmup": warmup,
        "variants": variants,
        **compare(workload, variants[BASELINE], variants[CANDIDATE]),
        "gemms": gemm_table(all_gemms, gemm_counts, gemm_gflops),
    }


def summarise_variant(
    model: WorldModel,
    counts: Counter[Gemm],
    torch_flops: int | None,
    samples: list[float],
    gemm_gflops: Mapping[Gemm, float],
    profile: dict[str, Any],
) -> dict[str, Any]:
    flops = total_flops(counts)
    median = statistics.median(samples)
    matmul_s = matmul_only_seconds(counts, gemm_gflops)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "median_s": median,
        "min_s": min(samples),
        "spread": (max(samples) - min(samples)) / median,
        "samples_s": samples,
        "flops": flops,
        "flops_flop_counter": torch_flops,
        "achieved_gflops": flops / median / 1e9,
        "matmul_gflops": flops / matmul_s / 1e9,
        "matmul_only_s": matmul_s,
        "matmul_fraction": matmul_s / median,
        "profile": profile,
        "in_model_matmul_gflops": flops / profile["matmul_s"] / 1e9 if profile["matmul_s"] else None,
    }


def compare(workload: Workload, base: Mapping[str, Any], cand: Mapping[str, Any]) -> dict[str, Any]:
    flop_ratio = cand["flops"] / base["flops"]
    time_ratio = cand["median_s"] / base["median_s"]
    throughput_goal = workload.preset in THROUGHPUT_GOAL_PRESETS
    return {
        "flop_ratio": flop_ratio,
        "time_ratio": time_ratio,
        "time_ratio_of_minimums": cand["min_s"] / base["min_s"],  # less sensitive to other processes
        "time_over_flop_ratio": time_ratio / flop_ratio,
        # the ratio the update would show if it ran at the measured GEMM speeds and did nothing else
        "matmul_only_time_ratio": cand["matmul_only_s"] / base["matmul_only_s"],
        "ratio_goal_met": abs(time_ratio / flop_ratio - 1) <= RATIO_TOLERANCE,
        "throughput_goal_met": (
            {v: s["matmul_fraction"] >= THROUGHPUT_GOAL for v, s in ((BASELINE, base), (CANDIDATE, cand))}
            if throughput_goal
            else None
        ),
    }


def gemm_table(
    gemms: Iterable[Gemm], counts: Mapping[str, Counter[Gemm]], gflops: Mapping[Gemm, float]
) -> list[dict[str, Any]]:
    totals = {variant: total_flops(c) for variant, c in counts.items()}
    return [
        {
            **asdict(g),
            "gflops": gflops[g],
            **{f"calls_{v}": counts[v][g] for v in counts},
            **{f"flop_share_{v}": counts[v][g] * g.flops / totals[v] for v in counts},
        }
        for g in gemms
    ]


# --------------------------------------------------------------------------------------------- report
def machine_info(threads: int) -> dict[str, Any]:
    return {
        "processor": platform.processor(),
        "model_name": lscpu_model_name(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "num_threads": threads,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_busy_before": cpu_busy_fraction(),
    }


def cpu_busy_fraction(interval_s: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over `interval_s` (from /proc/stat), taken while this script idles: what
    other processes use. None where /proc/stat is missing."""

    def idle_and_total() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        return ticks[3] + ticks[4], sum(ticks)  # idle + iowait, all

    try:
        idle0, total0 = idle_and_total()
        time.sleep(interval_s)
        idle1, total1 = idle_and_total()
    except OSError:
        return None
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def lscpu_model_name() -> str | None:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name:")), None)


def percent(fraction: float | None) -> str:
    return "unknown" if fraction is None else f"{fraction:.0%}"


def yes_no(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "**no**")


def markdown_table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def markdown_report(results: Mapping[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# World-model update: `mlp` vs `flow` (Heun, K=2)",
        "",
        f"{m['model_name'] or m['processor']} · {m['cpu_count']} CPUs · {m['num_threads']} threads · "
        f"torch {m['torch']} · {m['date']} · CPU busy with other processes: {percent(m['cpu_busy_before'])} "
        f"before the run, {percent(m['cpu_busy_after'])} after",
        f"B={BATCH} sequences, H={HORIZON}; one update = loss, backward, clip {GRAD_CLIP_NORM:g}, "
        f"Adam({LEARNING_RATE:g}), zero_grad. Goals: time ratio within {RATIO_TOLERANCE:.0%} of the FLOP "
        f"ratio; ≥ {THROUGHPUT_GOAL:.0%} of matmul throughput at {', '.join(THROUGHPUT_GOAL_PRESETS)}.",
        "",
        "## Per variant",
        "",
    ]
    variant_rows = []
    for preset, r in results["presets"].items():
        for variant, v in r["variants"].items():
            goal = r["throughput_goal_met"]
            variant_rows.append([
                preset, variant, f"{v['median_s']:.3f}", f"{v['min_s']:.3f}", f"{v['spread']:.0%}", f"{v['flops'] / 1e9:.1f}",
                f"{v['achieved_gflops']:.1f}", f"{v['matmul_gflops']:.1f}", f"{v['matmul_fraction']:.0%}",
                f"{v['profile']['matmul_share']:.0%}", yes_no(goal[variant] if goal else None),
            ])
    lines += markdown_table(
        ["preset", "variant", "median s", "min s", "spread", "GFLOP/update", "achieved GFLOP/s", "matmul GFLOP/s",
         "of matmul", "time in matmul", f"≥ {THROUGHPUT_GOAL:.0%} goal"],
        variant_rows,
    )
    lines += ["", "## flow / mlp", ""]
    lines += markdown_table(
        ["preset", "FLOP ratio", "time ratio", "time / FLOP", "ratio of min times", "matmul-only time ratio",
         "ratio goal"],
        (
            [preset, f"{r['flop_ratio']:.2f}", f"{r['time_ratio']:.2f}", f"{r['time_over_flop_ratio']:.2f}",
             f"{r['time_ratio_of_minimums']:.2f}", f"{r['matmul_only_time_ratio']:.2f}", yes_no(r["ratio_goal_met"])]
            for preset, r in results["presets"].items()
        ),
    )
    lines += ["", "## Where the rest of the time goes (profiled update, self time of the heaviest non-matmul ops)", ""]
    lines += markdown_table(
        ["preset", "variant", "matmul s", "other ops"],
        (
            [preset, variant, f"{v['profile']['matmul_s']:.3f}",
             ", ".join(f"{op} {s:.3f}" for op, s in v["profile"]["top_other_ops_s"].items())]
            for preset, r in results["presets"].items()
            for variant, v in r["variants"].items()
        ),
    )
    lines += ["", f"## Matmul GFLOP/s by GEMM (shapes ≥ {MARKDOWN_MIN_GEMM_SHARE:.0%} of a variant's FLOPs)", ""]
    lines += markdown_table(
        ["preset", "GEMM (rows×in→out)", "GFLOP/s", *(f"{v} FLOP share" for v in VARIANT_OPTIONS)],
        (
            [preset, Gemm(g["rows"], g["in_features"], g["out_features"], g["kind"]).label(), f"{g['gflops']:.1f}",
             *(f"{g[f'flop_share_{v}']:.1%}" for v in VARIANT_OPTIONS)]
            for preset, r in results["presets"].items()
            for g in r["gemms"]
            if max(g[f"flop_share_{v}"] for v in VARIANT_OPTIONS) >= MARKDOWN_MIN_GEMM_SHARE
        ),
    )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--reps", type=int, help="timed updates per variant (default: per preset, " +
                        ", ".join(f"{w.preset} {w.reps}" for w in WORKLOADS.values()) + ")")
    parser.add_argument("--warmup", type=int, help="untimed updates per variant first (default: per preset, " +
                        ", ".join(f"{w.preset} {w.warmup}" for w in WORKLOADS.values()) + ")")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: os.cpu_count())")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results; Markdown goes next to it (.md)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 warm-up and 1 timed update per variant")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    machine = machine_info(threads)
    if (machine["cpu_busy_before"] or 0.0) > BUSY_CPU_FRACTION:
        print(f"warning: other processes keep {machine['cpu_busy_before']:.0%} of the CPU busy: timings (and GEMM "
              "throughput) will be low and noisy")
    quick_reps = 1 if args.quick else None
    gemm_reps = 3 if args.quick else GEMM_REPS

    results: dict[str, Any] = {
        "machine": machine,
        "settings": {
            "batch": BATCH, "horizon": HORIZON, "learning_rate": LEARNING_RATE, "grad_clip_norm": GRAD_CLIP_NORM,
            "seed": SEED, "variants": VARIANT_OPTIONS, "quick": args.quick, "gemm_reps": gemm_reps,
            "goals": {"ratio_tolerance": RATIO_TOLERANCE, "throughput": THROUGHPUT_GOAL,
                      "throughput_presets": list(THROUGHPUT_GOAL_PRESETS)},
        },
        "presets": {},
    }
    for preset in args.presets:
        workload = WORKLOADS[preset]
        reps = args.reps or quick_reps or workload.reps
        warmup = args.warmup if args.warmup is not None else (quick_reps or workload.warmup)
        results["presets"][preset] = benchmark_workload(workload, reps, warmup, gemm_reps)

    machine["cpu_busy_after"] = cpu_busy_fraction()
    report = markdown_report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(report)
    print()
    print(report)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
