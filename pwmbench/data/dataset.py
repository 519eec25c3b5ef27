"""`OfflineDataset`: every chunk of a TD-MPC2-format directory, memory-mapped, sampled as (H+1)-step windows.

Why this shape: MT30's data is ≈ 20 GB and MT80's ≈ 34 GB (the original loader needed 128 GB of RAM). Here the
chunks stay on disk (`read_chunk(mmap=True)`); opening a directory reads only the per-episode task ids, and a
batch gathers exactly its B × (H+1) rows with one advanced index per chunk, so resident memory is bounded by the
batch, not the dataset.

A window starting at entry k of an episode is (TD-MPC2's slicing, reference/multitask.md):
    obs[k : k+H+1], action[k+1 : k+H+1], reward[k+1 : k+H+1], task id
with k uniform in [0, len−H−1], so every transition of a sampled episode can appear (len = the episode's valid
entries: L, or fewer for an episode that ended early and is NaN-padded; a window never reaches past an episode's
end, and episodes shorter than H+1 entries are never drawn). Sampling is driven by the
caller's `torch.Generator`: the same seed gives the same batches, which is how two dynamics variants see the same
data in the same order. `usage()` reports, per task, how many episodes and transitions sampling actually touched —
the figure the seed project never looked at (it used ≈ 3.5% of MT30).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .chunks import Chunk, ChunkError, chunk_paths, episode_lengths, read_chunk

__all__ = ["OfflineDataset", "Window"]


@dataclass
class Window:
    """A batch of windows: obs [B, H+1, obs_dim], action [B, H, act_dim], reward [B, H], task [B] (int64)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    task: torch.Tensor

    def to(self, device: str | torch.device) -> Window:
        return Window(*(x.to(device) for x in (self.obs, self.action, self.reward, self.task)))


class OfflineDataset:
    """All `chunk_<i>.pt` files of `directory`. Malformed chunks are an error naming the file and the problem
    (structure, task ids and entry 0 always; `scan_values` adds the full finiteness scan of actions and rewards,
    which reads every page of those columns — `pwmbench data inspect` does it)."""

    def __init__(self, directory: str | os.PathLike, *, allow_pickle: bool = False, scan_values: bool = False):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ChunkError(f"{self.directory}: no such data directory")
        paths = chunk_paths(self.directory)
        if not paths:
            raise ChunkError(f"{self.directory}: no chunk_<i>.pt files (TD-MPC2 format; `pwmbench data collect` writes them)")
        self.chunks: list[Chunk] = []
        for path in paths:
            chunk = read_chunk(path, mmap=True, allow_pickle=allow_pickle, scan_values=scan_values)
            if chunk.problems:
                raise ChunkError(f"{path}: " + "; ".join(chunk.problems))
            self.chunks.append(chunk)
        first = self.chunks[0]
        self.length = first.length
        self.obs_dim = int(first.tensors["obs"].shape[-1])
        self.act_dim = int(first.tensors["action"].shape[-1])
        for chunk in self.chunks[1:]:
            shape = (chunk.length, int(chunk.tensors["obs"].shape[-1]), int(chunk.tensors["action"].shape[-1]))
            if shape != (self.length, self.obs_dim, self.act_dim):
                raise ChunkError(
                    f"{chunk.path}: episode length / obs / action widths {shape} differ from {first.path.name}'s "
                    f"{(self.length, self.obs_dim, self.act_dim)}"
                )
        # per task id: (chunk index, episode index) of every episode, as two int64 tensors
        chunk_ids, episode_ids, task_ids, lengths = [], [], [], []
        for c, chunk in enumerate(self.chunks):
            task = chunk.tensors["task"][:, 0].to(torch.int64)
            chunk_ids.append(torch.full_like(task, c))
            episode_ids.append(torch.arange(task.numel()))
            task_ids.append(task)
            lengths.append(episode_lengths(chunk.tensors["obs"]))
        self._chunk = torch.cat(chunk_ids)
        self._episode = torch.cat(episode_ids)
        self._task = torch.cat(task_ids)
        self._length = torch.cat(lengths)  # valid entries per episode (L unless it ended early)
        self._by_task = {int(t): torch.nonzero(self._task == t).squeeze(-1) for t in torch.unique(self._task).tolist()}
        self._used = torch.zeros(self._task.numel(), dtype=torch.bool)
        self._sampled = {t: 0 for t in self._by_task}

    # ------------------------------------------------------------------------------------------- contents
    @property
    def task_ids(self) -> list[int]:
        return sorted(self._by_task)

    @property
    def num_episodes(self) -> int:
        return int(self._task.numel())

    def episodes(self, task: int | None = None) -> int:
        return self.num_episodes if task is None else int(self._by_task.get(task, torch.empty(0)).numel())

    def transitions(self, task: int | None = None) -> int:
        """Entry 0 of an episode is its reset observation, not a transition: (valid entries − 1) per episode."""
        idx = slice(None) if task is None else self._by_task.get(task, torch.empty(0, dtype=torch.int64))
        return int((self._length[idx] - 1).clamp(min=0).sum())

    @property
    def lengths(self) -> torch.Tensor:
        """Valid entries of every episode (int64 [num_episodes], in chunk order)."""
        return self._length.clone()

    def episode_blocks(self, task: int | None = None, block: int = 4096) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Whole episodes (of `task`, or all), in chunk order, `block` at a time: (obs [n, L, O], action [n, L, A],
        reward [n, L], lengths [n]) with lengths = valid entries; memory stays bounded by the block. This is how a
        dataset is loaded into a replay buffer (single-task pretraining)."""
        pool = torch.arange(self.num_episodes) if task is None else self._by_task.get(task, torch.empty(0, dtype=torch.int64))
        for start in range(0, pool.numel(), block):
            rows = pool[start : start + block]
            for c in torch.unique(self._chunk[rows]).tolist():
                sel = rows[self._chunk[rows] == c]
                ep = self._episode[sel]
                t = self.chunks[c].tensors
                yield t["obs"][ep].float(), t["action"][ep].float(), t["reward"][ep].float(), self._length[sel].clone()

    # ------------------------------------------------------------------------------------------- sampling
    def sample(self, batch: int, horizon: int, generator: torch.Generator, task: int | None = None, track: bool = True) -> Window:
        """`batch` windows of `horizon` transitions, uniformly over the episodes (of `task`, or of every task) and
        over start entries. `track`: count them in `usage()` (world-model training data)."""
        if horizon < 1 or horizon > self.length - 1:
            raise ValueError(f"horizon must be in [1, {self.length - 1}] for episodes of length {self.length}, got {horizon}")
        pool = torch.arange(self.num_episodes) if task is None else self._by_task.get(task)
        if pool is None or pool.numel() == 0:
            raise ValueError(f"no episodes of task {task} in {self.directory} (task ids present: {self.task_ids})")
        padded = bool((self._length[pool] < self.length).any())
        if padded:
            pool = pool[self._length[pool] > horizon]
            if pool.numel() == 0:
                raise ValueError(f"no episode{'' if task is None else f' of task {task}'} in {self.directory} has {horizon + 1} valid entries (they all ended earlier)")
        rows = pool[torch.randint(pool.numel(), (batch,), generator=generator)]
        if padded:  # k uniform in [0, len − H − 1] per episode: the window ends at or before the episode's last entry
            starts = (torch.rand(batch, generator=generator) * (self._length[rows] - horizon)).long()
        else:  # full-length data: TD-MPC2's draw, unchanged
            starts = torch.randint(self.length - horizon, (batch,), generator=generator)
        if track:
            self._used[rows] = True
            for t, count in zip(*torch.unique(self._task[rows], return_counts=True)):
                self._sampled[int(t)] += int(count) * horizon
        steps = torch.arange(horizon + 1)
        obs = torch.empty(batch, horizon + 1, self.obs_dim)
        action = torch.empty(batch, horizon, self.act_dim)
        reward = torch.empty(batch, horizon)
        for c in torch.unique(self._chunk[rows]).tolist():
            sel = torch.nonzero(self._chunk[rows] == c).squeeze(-1)
            ep = self._episode[rows[sel]].unsqueeze(-1)
            at = starts[sel].unsqueeze(-1) + steps
            t = self.chunks[c].tensors
            obs[sel] = t["obs"][ep, at].float()
            action[sel] = t["action"][ep, at[:, 1:]].float()
            reward[sel] = t["reward"][ep, at[:, 1:]].float()
        return Window(obs=obs, action=action, reward=reward, task=self._task[rows].clone())

    def start_states(self, count: int, task: int, generator: torch.Generator, horizon: int = 1) -> torch.Tensor:
        """`count` start states of `task` for imagined rollouts in multitask policy learning, [count, obs_dim]: the
        first observation of (horizon + 1)-entry windows drawn as world-model windows are — so entries 0..L−H−1 of an
        episode, as PWM draws them (obs[0] of its H-step slices); not counted in `usage()`."""
        window = self.sample(count, horizon, generator, task=task, track=False)
        return window.obs[:, 0]

    # -------------------------------------------------------------------------------------------- usage
    def usage_state(self) -> dict:
        """What `usage()` is computed from, for checkpoints."""
        return {"used": self._used.clone(), "sampled": dict(self._sampled)}

    def load_usage_state(self, state: dict) -> None:
        if state["used"].shape != self._used.shape:
            raise ChunkError(f"{self.directory}: the checkpoint's usage record is for a dataset of {state['used'].numel()} episodes, this one has {self._used.numel()}")
        self._used = state["used"].clone()
        self._sampled = {int(k): int(v) for k, v in state["sampled"].items()}

    def usage(self) -> dict[int, dict[str, int]]:
        """Per task id: episodes and transitions in the data, episodes that sampling touched, and transitions
        sampled (counted with repetition)."""
        return {
            t: {
                "episodes": int(idx.numel()),
                "transitions": int((self._length[idx] - 1).clamp(min=0).sum()),
                "episodes_used": int(self._used[idx].sum()),
                "transitions_sampled": self._sampled[t],
            }
            for t, idx in sorted(self._by_task.items())
        }
