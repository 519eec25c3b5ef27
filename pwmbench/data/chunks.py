"""TD-MPC2's offline-data chunk files: read them safely and lazily, write them, and say exactly what is wrong.

Format (reference/multitask.md): `chunk_<i>.pt` is a `tensordict.TensorDict` saved with `torch.save`, batch shape
`[episodes, L]`, keys `obs` float32 `[N, L, obs_pad]`, `action` float32 `[N, L, act_pad]`, `reward` float32
`[N, L]`, `task` int32 `[N, L]` (optionally `terminated` float `[N, L]`, 1 at a true terminal entry). Entry 0 of an
episode is the reset observation, with NaN action and reward; entry t ≥ 1 holds obs_t, the action that led to it and
that transition's reward. An episode that ended early (single tasks with termination, e.g. dflex/hopper) is padded:
its entries after the last one are NaN in obs, action and reward. An episode's length is its count of leading
finite-obs entries (`episode_lengths`).

Why a reader of our own:
- **Safety.** A `.pt` file is a pickle. `read_chunk` unpickles with `torch.load(weights_only=True)` and an
  allow-list that contains only stand-ins for the two TensorDict entry points such files use (the class and its
  rebuild function); the stand-ins collect the tensors into a plain dict and run no code of the file's choosing.
  So reading needs no `tensordict` install, and a file that wants anything else is refused with the reason.
  `allow_pickle=True` is the explicit opt-in for files from a trusted source in some other layout.
- **Memory.** `mmap=True` maps the tensors' storage instead of reading it: a 20–34 GB dataset opens in
  milliseconds, and sampling touches only the pages of the sampled windows.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pwmbench.errors import PwmbenchError
from pwmbench.results.atomic_files import torch_save_atomic

__all__ = ["REQUIRED_KEYS", "Chunk", "ChunkError", "chunk_paths", "episode_lengths", "read_chunk", "write_chunk"]

REQUIRED_KEYS = ("obs", "action", "reward", "task")
_CHUNK_NAME = re.compile(r"^chunk_(\d+)\.pt$")


class ChunkError(PwmbenchError):
    """A chunk file cannot be read or does not follow the format (the message names the file and the problem)."""


@dataclass
class Chunk:
    """One chunk's tensors (memory-mapped when read with mmap), keyed as in the file."""

    path: Path
    tensors: dict[str, torch.Tensor]
    batch_size: tuple[int, ...] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def episodes(self) -> int:
        return int(self.tensors["obs"].shape[0])

    @property
    def length(self) -> int:
        return int(self.tensors["obs"].shape[1])


def episode_lengths(obs: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """Valid entries per episode (int64 [N]): the leading entries whose obs is finite (padding is NaN).

    Cheap for full-length data: only the last entry of every episode is read, and only episodes whose last entry is
    padding are read in full (block by block), so opening a memory-mapped 20 GB dataset stays fast."""
    n, length = obs.shape[:2]
    lengths = torch.full((n,), length, dtype=torch.int64)
    if not n:
        return lengths
    short = torch.nonzero(~torch.isfinite(obs[:, -1, 0])).squeeze(-1)
    for start in range(0, short.numel(), block):
        rows = short[start : start + block]
        finite = torch.isfinite(obs[rows, :, 0].float())
        lengths[rows] = finite.to(torch.int64).cumprod(-1).sum(-1)
    return lengths


# ------------------------------------------------------------------------------------------ safe unpickling
class _TensorDictStandIn:
    """Receives a pickled TensorDict's state; keeps its tensors (nested TensorDicts flatten to dotted keys)."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.batch_size: tuple[int, ...] | None = None

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise ChunkError(f"unexpected TensorDict state of type {type(state).__name__}")
        inner = state.get("_tensordict", state.get("tensordict", {}))
        for key, value in dict(inner).items():
            if isinstance(value, _TensorDictStandIn):
                self.tensors.update({f"{key}.{k}": v for k, v in value.tensors.items()})
            elif isinstance(value, torch.Tensor):
                self.tensors[str(key)] = value
        size = state.get("_batch_size", state.get("batch_size"))
        self.batch_size = tuple(int(s) for s in size) if size is not None else None


def _make_td(cls, state):
    obj = _TensorDictStandIn()
    obj.__setstate__(state)
    return obj


_STAND_INS = [
    (_make_td, "tensordict._reductions._make_td"),
    (_TensorDictStandIn, "tensordict._td.TensorDict"),
    (_TensorDictStandIn, "tensordict.tensordict.TensorDict"),
    (_TensorDictStandIn, "tensordict.TensorDict"),
    (dict, "tensordict.utils._StringOnlyDict"),
]


@contextlib.contextmanager
def _only_stand_ins():
    """Allow exactly the stand-ins while loading (a `tensordict` import registers the real classes process-wide;
    they are put back afterwards)."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(_STAND_INS)
    try:
        yield
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)


def _as_tensors(obj, path: Path) -> tuple[dict[str, torch.Tensor], tuple[int, ...] | None]:
    if isinstance(obj, _TensorDictStandIn):
        return obj.tensors, obj.batch_size
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {str(k): v for k, v in obj.items()}, None
    if hasattr(obj, "keys") and hasattr(obj, "batch_size"):  # a real TensorDict (allow_pickle with tensordict)
        return {str(k): obj.get(k) for k in obj.keys()}, tuple(obj.batch_size)
    raise ChunkError(f"{path}: holds a {type(obj).__name__}, not a TensorDict or a dict of tensors")


def read_chunk(path: str | os.PathLike, *, mmap: bool = True, allow_pickle: bool = False, scan_values: bool = False) -> Chunk:
    """Open one chunk file. Raises `ChunkError` naming the file when it cannot be read (truncated, not a torch
    file, unsafe content without `allow_pickle`); format problems of a readable file are listed in `problems`
    (`check_chunk`; `scan_values` adds the full finiteness scan)."""
    path = Path(path)
    if not path.is_file():
        raise ChunkError(f"{path}: no such file")
    try:
        if allow_pickle:
            obj = torch.load(path, map_location="cpu", mmap=mmap, weights_only=False)
        else:
            with _only_stand_ins():
                obj = torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except ChunkError:
        raise
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = " (refused by the safe loader; pass allow_pickle=True / --allow-pickle only for a trusted file)" if "weights" in str(exc).lower() or "GLOBAL" in str(exc) else ""
        raise ChunkError(f"{path}: cannot be read: {text[:300]}{hint}") from exc
    tensors, batch_size = _as_tensors(obj, path)
    chunk = Chunk(path=path, tensors=tensors, batch_size=batch_size)
    chunk.problems = check_chunk(chunk, scan_values=scan_values)
    return chunk


SCAN_BLOCK = 4096  # episodes per block when scanning values: memory stays bounded whatever the chunk's size


def check_chunk(chunk: Chunk, *, scan_values: bool = False) -> list[str]:
    """Everything malformed about a chunk, as sentences naming the key (empty list: well-formed).

    Always: keys, shapes and lengths, dtypes, one task id per episode, NaN action and reward at entry 0 (reads
    only the entry-0 columns). `scan_values`: also that every later action and reward of an episode's valid
    entries is finite and its padding (entries after an early end) is NaN in obs, action and reward — this reads the
    whole columns, block by block of `SCAN_BLOCK` episodes (the inspector does it; opening a dataset for training
    does not)."""
    t, problems = chunk.tensors, []
    missing = [k for k in REQUIRED_KEYS if k not in t]
    if missing:
        return [f"missing key(s) {missing} (has {sorted(t)})"]
    obs, action, reward, task = (t[k] for k in REQUIRED_KEYS)
    if obs.dim() != 3 or action.dim() != 3:
        return [f"obs and action must be [episodes, L, width], got {tuple(obs.shape)} and {tuple(action.shape)}"]
    n, length = obs.shape[:2]
    for key in ("action", "reward", "task") + (("terminated",) if "terminated" in t else ()):
        if tuple(t[key].shape[:2]) != (n, length):
            problems.append(f"{key} has batch shape {tuple(t[key].shape[:2])}, obs has {(n, length)} (wrong length)")
    if reward.dim() != 2 and not problems:
        problems.append(f"reward must be [episodes, L], got {tuple(reward.shape)}")
    if length < 2:
        problems.append(f"episodes of length {length} hold no transition")
    if problems:
        return problems
    if chunk.batch_size is not None and chunk.batch_size[:2] != (n, length):
        problems.append(f"TensorDict batch size {chunk.batch_size} disagrees with obs {(n, length)}")
    if task.is_floating_point():
        problems.append(f"task must be an integer tensor, got {task.dtype}")
    if not n:
        return problems
    bad_entry0 = int((~torch.isnan(reward[:, 0]) | ~torch.isnan(action[:, 0]).all(-1)).sum())
    if bad_entry0:
        problems.append(f"entry 0 must hold NaN action and reward (the reset observation); {bad_entry0} episode(s) do not")
    changing = negative = bad_reward = bad_action = bad_padding = 0
    lengths = episode_lengths(obs) if scan_values else None
    if lengths is not None and int((lengths < 2).sum()):
        problems.append(f"{int((lengths < 2).sum())} episode(s) hold no transition (fewer than 2 finite-obs entries)")
    blocks = range(0, n, SCAN_BLOCK) if (scan_values or not task.is_floating_point()) else ()
    for start in blocks:
        rows = slice(start, start + SCAN_BLOCK)
        if not task.is_floating_point():
            block = task[rows]
            changing += int((block != block[:, :1]).any(-1).sum())
            negative += int((block[:, 0] < 0).sum())
        if scan_values:
            entry = torch.arange(length)
            valid = (entry >= 1) & (entry < lengths[rows, None])  # [n, L]: transitions of each episode
            pad = entry >= lengths[rows, None]
            r, a, o = reward[rows].float(), action[rows].float(), obs[rows].float()
            bad_reward += int((valid & ~torch.isfinite(r)).any(-1).sum())
            bad_action += int((valid[..., None] & ~torch.isfinite(a)).any(-1).any(-1).sum())
            bad_padding += int((pad & ~(torch.isnan(r) & torch.isnan(a).all(-1) & torch.isnan(o).all(-1))).any(-1).sum())
    if changing:
        problems.append(f"task id changes within an episode ({changing} episode(s))")
    if negative:
        problems.append(f"negative task id in {negative} episode(s)")
    if bad_reward:
        problems.append(f"non-finite rewards after entry 0 ({bad_reward} episode(s))")
    if bad_action:
        problems.append(f"non-finite actions after entry 0 ({bad_action} episode(s))")
    if bad_padding:
        problems.append(f"padding after an episode's end must be NaN in obs, action and reward ({bad_padding} episode(s))")
    if "terminated" in t and not t["terminated"].is_floating_point() and t["terminated"].dtype != torch.bool:
        problems.append(f"terminated must be float (1 at a true terminal entry), got {t['terminated'].dtype}")
    return problems


def chunk_paths(directory: str | os.PathLike) -> list[Path]:
    """`chunk_<i>.pt` files in `directory`, in numeric order of i."""
    directory = Path(directory)
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _CHUNK_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def write_chunk(path: str | os.PathLike, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, task: torch.Tensor, terminated: torch.Tensor | None = None) -> Path:
    """Write one chunk exactly as TD-MPC2 does (a TensorDict via `torch.save`), atomically (temp file + rename);
    `terminated` (float [N, L]) is TD-MPC2's optional key. Needs `tensordict` (the `mt` extra)."""
    try:
        from tensordict import TensorDict
    except ImportError as exc:
        raise PwmbenchError("writing TD-MPC2 chunk files needs tensordict: pip install 'pwmbench[mt]'") from exc
    path = Path(path)
    n, length = obs.shape[:2]
    tensors = {"obs": obs.float(), "action": action.float(), "reward": reward.float(), "task": task.to(torch.int32)}
    if terminated is not None:
        tensors["terminated"] = terminated.float()
    td = TensorDict(tensors, batch_size=[n, length])
    return torch_save_atomic(td, path)
