"""`collect`: run a behaviour policy in the real environments and write TD-MPC2-format chunk files.

Why: TD-MPC2's datasets live on a hub these machines cannot reach. Collecting a dataset in exactly their format
exercises every path of the offline pipeline (reader, sampler, multitask training, inspector) without it, and gives
users with no download a dataset of their own.

Layout of what is written (same as TD-MPC2's files): episodes of L = episode_length + 1 entries; entry 0 is the
reset observation with NaN action and reward; entry t holds obs_t, the action a_{t−1} that led to it (zero-padded
to the set's action width) and the reward of that transition; observations zero-padded to the set's obs width;
`task` = the task's id in the set. The behaviour policy is uniform-random actions or a trained single-task
policy (`policy.pt` from a finished `pwmbench train` cell, sampling its stochastic actor). Task-set episodes must run
to their full length (TD-MPC2's data has no early termination); a task that terminates early is refused there.
A single task (`collect_task`, `pwmbench data collect --task`; PWM's single-task pretraining data) may terminate
early: such an episode keeps its entries up to the terminal one and is NaN-padded after it (obs, action, reward),
and TD-MPC2's optional key `terminated` (float [N, L], 1 at the terminal entry) is written. Single-task data uses
task id 0 and `metadata.json` names the task. Tasks with longer episodes than the set's shortest are cut
into pieces of that length (MT80 stores DMC's 500-step episodes as five 100-step pieces, L = 101). `metadata.json` records the task set, the task names, the
policy, the seed and the versions of the simulators (physics differs between mujoco versions).

Files appear atomically: every chunk is written to a temporary name and renamed, and `metadata.json` is written
last, so a directory with metadata is complete.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pwmbench import api
from pwmbench.errors import PwmbenchError
from pwmbench.results.atomic_files import write_text_atomic

from .chunks import chunk_paths, write_chunk

__all__ = ["collect", "collect_task", "members"]



def members(name: str) -> tuple[list[str], int, int]:
    """(member task names in id order, padded obs width, padded action width) of a task set, or of one task."""
    task = api.task(name)
    names = list(getattr(task, "tasks", None) or [name])
    return names, task.spec.obs_dim, task.spec.act_dim


def _episodes_of_one_task(name: str, count: int, num_envs: int, seed: int, obs_pad: int, act_pad: int, behaviour: Any = None, allow_termination: bool = False) -> dict[str, torch.Tensor]:
    """`count` full episodes of `name`: obs [count, L, obs_pad], action, reward. `behaviour`: a loaded policy
    (its stochastic actor), or None for uniform-random actions. `allow_termination`: an episode that terminates
    early ends there, NaN-padded after its terminal entry, and a `terminated` tensor [count, L] is returned too."""
    task = api.task(name)
    spec = task.spec
    n = max(1, min(num_envs, count))
    env = task.make_env(n, seed)
    length = spec.episode_length + 1
    gen = torch.Generator().manual_seed(seed)
    obs = torch.zeros(count, length, obs_pad)
    action = torch.zeros(count, length, act_pad)
    reward = torch.zeros(count, length)
    terminal = torch.zeros(count, length)
    action[:, 0] = float("nan")
    reward[:, 0] = float("nan")
    current = env.reset(seed=seed)
    slot = list(range(n))  # which output episode each copy is filling (≥ count: discard)
    next_slot, t = n, torch.zeros(n, dtype=torch.long)
    for i in range(n):
        if slot[i] < count:
            obs[slot[i], 0, : spec.obs_dim] = current[i].float().cpu()
    done_count = 0
    if behaviour is not None:
        torch.manual_seed(seed)  # the actor samples from torch's global generator
    while done_count < count:
        a = torch.rand(n, spec.act_dim, generator=gen) * 2 - 1 if behaviour is None else behaviour(current).cpu()
        nxt, r, terminated, truncated, info = env.step(a)
        current = nxt
        final = info.get("obs_before_reset", nxt)
        t += 1
        for i in range(n):
            s = slot[i]
            if s < count:
                obs[s, t[i], : spec.obs_dim] = final[i].float().cpu()
                action[s, t[i], : spec.act_dim] = a[i]
                reward[s, t[i]] = float(r[i])
            if bool(terminated[i]):
                if not allow_termination:
                    raise PwmbenchError(f"{name} ended an episode early (step {int(t[i])} of {spec.episode_length}); "
                                        "TD-MPC2-format task-set data needs full-length episodes")  # fmt: skip
                if s < count:
                    terminal[s, t[i]] = 1.0
                    for tensor in (obs, action, reward):
                        tensor[s, int(t[i]) + 1 :] = float("nan")
            if bool(truncated[i]) or (allow_termination and bool(terminated[i])):
                if s < count:
                    done_count += 1
                slot[i], next_slot, t[i] = next_slot, next_slot + 1, 0
                if slot[i] < count:
                    obs[slot[i], 0, : spec.obs_dim] = nxt[i].float().cpu()
    if hasattr(env, "close"):
        env.close()
    out = {"obs": obs, "action": action, "reward": reward}
    if allow_termination:
        out["terminated"] = terminal
    return out


def _segments(episodes: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    """Cut episodes of E steps into E / length pieces of `length` transitions, each stored like an episode
    (entry 0: the piece's first observation, NaN action and reward) — how MT80's 101-entry data holds DMC's
    500-step episodes."""
    steps = episodes["reward"].shape[1] - 1
    if steps == length:
        return episodes
    pieces: dict[str, list[torch.Tensor]] = {k: [] for k in episodes}
    for j in range(steps // length):
        for key, value in episodes.items():
            piece = value[:, j * length : j * length + length + 1].clone()
            if key != "obs":
                piece[:, 0] = float("nan")
            pieces[key].append(piece)
    return {k: torch.cat(v) for k, v in pieces.items()}


def versions() -> dict[str, str | None]:
    from pwmbench.results.provenance import PACKAGES, _version

    return {p: _version(p) for p in ("pwmbench",) + PACKAGES}


def collect(
    taskset: str,
    episodes_per_task: int,
    out: str | os.PathLike,
    *,
    policy: str = "random",
    seed: int = 0,
    num_envs: int = 8,
    task_ids: list[int] | None = None,
    episodes_per_chunk: int = 10_000,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    allow_termination: bool = False,
) -> dict[str, Any]:
    """Collect `episodes_per_task` episodes of every task of `taskset` (or of `task_ids` only) into `out`.
    `allow_termination` (one task only; `collect_task`): keep episodes that end early, NaN-padded.
    Returns the metadata written to `out/metadata.json`."""
    if episodes_per_task < 1 or episodes_per_chunk < 1:
        raise PwmbenchError("episodes_per_task and episodes_per_chunk must be at least 1")
    names, obs_pad, act_pad = members(taskset)
    single = names == [taskset]
    if allow_termination and not single:
        raise PwmbenchError(f"{taskset} is a task set: early-terminating episodes are for single-task data (collect_task)")
    ids = list(range(len(names))) if task_ids is None else list(task_ids)
    bad = [i for i in ids if not 0 <= i < len(names)]
    if bad:
        raise PwmbenchError(f"task id(s) {bad} not in {taskset} (0–{len(names) - 1})")
    behaviour = None
    if policy != "random":
        if not Path(policy).is_file():
            raise PwmbenchError(f"unknown behaviour policy {policy!r}: give 'random' or the path of a policy.pt")
        from pwmbench.pwm.policy_file import load_policy

        behaviour = load_policy(policy)
        others = [names[i] for i in ids if names[i] != behaviour.task]
        if others:
            raise PwmbenchError(f"{policy} is a policy for {behaviour.task}; it cannot act in {others} (pick them with --tasks)")
    lengths = {i: api.task(names[i]).spec.episode_length for i in ids}
    segment = min(lengths.values())  # one dataset holds one length: MT80's is Meta-World's 100 (L = 101)
    uneven = [names[i] for i in ids if lengths[i] % segment]
    if uneven:
        raise PwmbenchError(f"episode lengths of {uneven} are not multiples of {segment}: they cannot share a dataset")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if chunk_paths(out) or (out / "metadata.json").exists():
        if not overwrite:
            raise PwmbenchError(f"{out} already holds a dataset; pass overwrite=True (--overwrite) to replace it")
        for p in chunk_paths(out) + [out / "metadata.json"]:
            p.unlink(missing_ok=True)
    started = time.time()
    keys = ("obs", "action", "reward", "task") + (("terminated",) if allow_termination else ())
    pending: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    written: list[str] = []
    ended_early = 0

    def flush(limit: int) -> None:
        """Write full chunks of `episodes_per_chunk` episodes while at least `limit` episodes are pending."""
        while pending["obs"] and sum(x.shape[0] for x in pending["obs"]) >= limit:
            parts = {k: torch.cat(v) for k, v in pending.items()}
            take = min(episodes_per_chunk, parts["obs"].shape[0])
            path = write_chunk(out / f"chunk_{len(written)}.pt", *(parts[k][:take] for k in keys))
            written.append(path.name)
            for k, v in pending.items():
                v[:] = [parts[k][take:]] if parts[k].shape[0] > take else []

    for i in ids:
        episodes = _segments(_episodes_of_one_task(names[i], episodes_per_task, num_envs, seed + 1009 * i, obs_pad, act_pad, behaviour, allow_termination), segment)
        episodes["task"] = torch.full(episodes["reward"].shape, i, dtype=torch.int32)
        ended_early += int(episodes["terminated"].sum()) if allow_termination else 0
        for key in keys:
            pending[key].append(episodes[key])
        flush(episodes_per_chunk)
        if progress:
            progress(f"{names[i]} (id {i}): {episodes_per_task} episodes, mean return {float(episodes['reward'][:, 1:].nansum(1).mean()):.1f}")
    flush(1)
    meta = {
        "format": "tdmpc2",
        **({"task": taskset} if single else {}),
        "taskset": taskset,
        "tasks": names,
        "task_ids": ids,
        "episodes_per_task": episodes_per_task,
        "episode_length": segment + 1,
        "segments_per_episode": {names[i]: lengths[i] // segment for i in ids},
        "obs_dim": obs_pad,
        "act_dim": act_pad,
        "policy": policy if behaviour is None else str(Path(policy).resolve()),
        "seed": seed,
        **({"ended_early": ended_early} if allow_termination else {}),
        "chunks": written,
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": round(time.time() - started, 2),
    }
    write_text_atomic(json.dumps(meta, indent=1) + "\n", out / "metadata.json")
    return meta


def collect_task(
    task: str,
    episodes: int,
    out: str | os.PathLike,
    *,
    policy: str = "random",
    seed: int = 0,
    num_envs: int = 8,
    episodes_per_chunk: int = 10_000,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """`episodes` episodes of one task (task id 0) into `out`, episodes that end early kept and NaN-padded: the
    data of PWM's single-task pretraining (`pretrain_data`). Returns the metadata written."""
    if isinstance(api.task(task), api.TaskSet):
        raise PwmbenchError(f"{task} is a task set; collect it with --taskset (collect), not --task")
    return collect(task, episodes, out, policy=policy, seed=seed, num_envs=num_envs, episodes_per_chunk=episodes_per_chunk,
                   overwrite=overwrite, progress=progress, allow_termination=True)  # fmt: skip
