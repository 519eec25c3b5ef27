"""`inspect_dataset`: what a TD-MPC2-format directory holds, overall and per task id, and everything malformed.

Unlike `OfflineDataset`, which refuses malformed data, the inspector reads every chunk it can and reports each
problem with its file, so a user can see at once what a download or a collection run left behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .chunks import ChunkError, chunk_paths, episode_lengths, read_chunk

__all__ = ["format_report", "inspect_dataset"]


def inspect_dataset(directory: str | os.PathLike, *, allow_pickle: bool = False) -> dict[str, Any]:
    """{"directory", "chunks": [{file, episodes, length, obs_dim, act_dim, problems}], "tasks": {id: {episodes,
    transitions}}, "episodes", "transitions", "ended_early", "malformed": [sentences], "metadata": the collector's
    record or None}. Transitions = Σ (valid entries − 1) over episodes: entry 0 of an episode carries no transition,
    and an episode that ended early (NaN padding after its last entry) counts only its valid entries."""
    directory = Path(directory)
    report: dict[str, Any] = {"directory": str(directory), "chunks": [], "tasks": {}, "episodes": 0, "transitions": 0, "ended_early": 0, "malformed": []}
    if not directory.is_dir():
        report["malformed"].append(f"{directory}: no such directory")
        return report
    paths = chunk_paths(directory)
    if not paths:
        report["malformed"].append(f"{directory}: no chunk_<i>.pt files")
    shapes = set()
    for path in paths:
        entry: dict[str, Any] = {"file": path.name}
        try:
            chunk = read_chunk(path, mmap=True, allow_pickle=allow_pickle, scan_values=True)
        except ChunkError as exc:
            entry["problems"] = [str(exc)]
            report["malformed"].append(str(exc))
            report["chunks"].append(entry)
            continue
        entry["problems"] = list(chunk.problems)
        report["malformed"] += [f"{path}: {p}" for p in chunk.problems]
        t = chunk.tensors
        if "obs" in t and t["obs"].dim() == 3:
            entry.update(episodes=chunk.episodes, length=chunk.length, obs_dim=int(t["obs"].shape[-1]))
        if "action" in t and t["action"].dim() == 3:
            entry["act_dim"] = int(t["action"].shape[-1])
        report["chunks"].append(entry)
        if chunk.problems:
            continue
        shapes.add((entry["length"], entry["obs_dim"], entry["act_dim"]))
        task_ids, lengths = t["task"][:, 0].to(torch.int64), episode_lengths(t["obs"])
        report["ended_early"] += int((lengths < entry["length"]).sum())
        for task_id in torch.unique(task_ids).tolist():
            mine = task_ids == task_id
            row = report["tasks"].setdefault(int(task_id), {"episodes": 0, "transitions": 0})
            row["episodes"] += int(mine.sum())
            row["transitions"] += int((lengths[mine] - 1).clamp(min=0).sum())
    if len(shapes) > 1:
        report["malformed"].append(f"chunks disagree on (episode length, obs width, action width): {sorted(shapes)}")
    report["tasks"] = dict(sorted(report["tasks"].items()))
    report["episodes"] = sum(r["episodes"] for r in report["tasks"].values())
    report["transitions"] = sum(r["transitions"] for r in report["tasks"].values())
    if len(shapes) == 1:
        report["length"], report["obs_dim"], report["act_dim"] = next(iter(shapes))
    meta = directory / "metadata.json"
    if meta.is_file():
        import json

        try:
            report["metadata"] = json.loads(meta.read_text())
        except ValueError as exc:
            report["malformed"].append(f"{meta}: not JSON ({exc})")
    return report


def format_report(report: dict[str, Any], task_names: list[str] | None = None) -> str:
    """The report as text: a summary line, one line per task id, then the problems."""
    lines = [f"{report['directory']}: {len(report['chunks'])} chunk file(s), {report['episodes']:,} episodes, "
             f"{report['transitions']:,} transitions"]  # fmt: skip
    if "length" in report:
        lines.append(f"episode length {report['length']} (entry 0 = reset observation), obs width {report['obs_dim']}, "
                     f"action width {report['act_dim']}")  # fmt: skip
    if report.get("ended_early"):
        lines.append(f"{report['ended_early']:,} episode(s) ended early (NaN padding after their last entry)")
    meta = report.get("metadata")
    if meta:
        lines.append("collected: " + ", ".join(f"{k}={meta[k]}" for k in ("task", "taskset", "policy", "seed") if k in meta)
                     + ("; versions " + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()) if meta.get("versions") else ""))  # fmt: skip
    lines.append(f"{'task id':>7}  {'name':<28} {'episodes':>10} {'transitions':>13}")
    for task_id, row in report["tasks"].items():
        name = task_names[task_id] if task_names and 0 <= task_id < len(task_names) else ""
        lines.append(f"{task_id:>7}  {name:<28} {row['episodes']:>10,} {row['transitions']:>13,}")
    if report["malformed"]:
        lines.append(f"MALFORMED ({len(report['malformed'])}):")
        lines += [f"  - {p}" for p in report["malformed"]]
    else:
        lines.append("no problems found")
    return "\n".join(lines)
