"""Checkpoints of a cell's training state: atomic (a temp file, then a rename), checksummed, and loaded without
unpickling code.

A checkpoint is written as plain data — tensors, numbers, strings, lists, tuples, dicts — so that it loads with
`torch.load(weights_only=True)`: a checkpoint someone tampered with cannot run code on resume. NumPy arrays and
scalars (RNG states, MuJoCo state) are stored as tensors of their bytes with dtype and shape and turned back on load;
any other object is refused when saving, naming where it is. A SHA-256 of the file is written next to it
(`<name>.sha256`); a checkpoint that is truncated, garbled or does not match its checksum raises `CorruptCheckpoint`
naming the file, and the cell starts that part again instead of trusting it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pwmbench.errors import PwmbenchError
from pwmbench.results.atomic_files import (
    ChecksumMismatch,
    checksum_path,
    move_aside,
    torch_save_atomic,
    verify_checksum,
)


class CorruptCheckpoint(PwmbenchError):
    """A checkpoint that cannot be trusted: unreadable, truncated, not pwmbench's plain-data format, or its checksum
    does not match."""


def to_plain(value: Any, where: str = "state", memo: dict[int, Any] | None = None) -> Any:
    """`value` as plain data `weights_only` loading accepts (objects shared stay shared)."""
    memo = {} if memo is None else memo
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, np.generic):  # before the plain types: np.float64 is a float subclass, and pickles as NumPy
        return to_plain(np.asarray(value), where, memo) | {"scalar": True}
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor, torch.Size, torch.dtype)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"cannot checkpoint {where}: a NumPy array of Python objects")
        array = np.ascontiguousarray(value)
        out: Any = {"__numpy__": torch.frombuffer(bytearray(array.tobytes()), dtype=torch.uint8) if array.nbytes else torch.zeros(0, dtype=torch.uint8),
                    "dtype": array.dtype.str, "shape": list(value.shape)}  # fmt: skip
    elif isinstance(value, complex):
        return {"__complex__": [value.real, value.imag]}
    elif isinstance(value, bytes):
        return {"__bytes__": torch.frombuffer(bytearray(value), dtype=torch.uint8) if value else torch.zeros(0, dtype=torch.uint8)}
    elif isinstance(value, dict):
        out = OrderedDict() if isinstance(value, OrderedDict) else {}  # state_dicts are OrderedDicts: keep them so
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise TypeError(f"cannot checkpoint {where}: a dict key of type {type(k).__name__}")
            out[k] = to_plain(v, f"{where}/{k}", memo)
    elif isinstance(value, list):
        out = [to_plain(v, f"{where}[{i}]", memo) for i, v in enumerate(value)]
    elif isinstance(value, tuple):
        out = tuple(to_plain(v, f"{where}[{i}]", memo) for i, v in enumerate(value))
    else:
        raise TypeError(f"cannot checkpoint {where}: an object of type {type(value).__module__}.{type(value).__name__} (store plain data)")
    memo[id(value)] = out
    return out


def from_plain(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """The inverse of `to_plain`."""
    memo = {} if memo is None else memo
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, dict) and "__numpy__" in value:
        raw = value["__numpy__"].numpy().tobytes()
        out: Any = np.frombuffer(raw, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()
        if value.get("scalar"):
            out = out[()]
    elif isinstance(value, dict) and "__complex__" in value:
        out = complex(*value["__complex__"])
    elif isinstance(value, dict) and "__bytes__" in value:
        out = value["__bytes__"].numpy().tobytes()
    elif isinstance(value, dict):
        out = type(value)()
        for k, v in value.items():
            out[k] = from_plain(v, memo)
    elif isinstance(value, list):
        out = [from_plain(v, memo) for v in value]
    elif isinstance(value, tuple):
        out = tuple(from_plain(v, memo) for v in value)
    else:
        return value
    memo[id(value)] = out
    return out


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write `state` as plain data, whole (a temporary file, then a rename), with its checksum beside it. The bytes
    are built in memory first, so a full disk is reported by the write (DiskFull, naming the file), not as torch's
    opaque stream-writer error."""
    return torch_save_atomic(to_plain(state), path, checksum=True)


def load_checkpoint(path: str | os.PathLike[str], *, peek: bool = False) -> dict[str, Any]:
    """A checkpoint written by `save_checkpoint`, checked against its checksum and loaded as plain data only.

    `peek=True` is for reading a few small entries of a large file (a task-set world model's status): the tensors are
    memory-mapped, not read, and the checksum is not computed (it would read every byte); whoever loads the file for
    its weights checks it. Without its checksum a checkpoint is not trusted (a crash between the file and its
    checksum, or a file put there by hand): CorruptCheckpoint."""
    path = Path(path)
    if not peek:
        if path.exists() and not checksum_path(path).exists():
            raise CorruptCheckpoint(f"{path} has no checksum ({checksum_path(path).name}): not trusted")
        try:
            verify_checksum(path)
        except ChecksumMismatch as exc:
            raise CorruptCheckpoint(str(exc)) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=peek)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one we will not trust
        first = (str(exc).splitlines() or [""])[0][:160]
        raise CorruptCheckpoint(f"{path} cannot be read as a pwmbench checkpoint ({type(exc).__name__}{': ' + first if first else ''})") from None
    if not isinstance(state, dict):
        raise CorruptCheckpoint(f"{path} does not hold a checkpoint (a {type(state).__name__})")
    return from_plain(state)


def discard_corrupt(path: str | os.PathLike[str]) -> Path:
    """Move a corrupt checkpoint (and its checksum) aside as `<name>.corrupt`, so the work it held is done again.
    Jobs that read the same file (a task set's members) may find it corrupt at once: the first one moves it."""
    try:
        return move_aside(path)
    except FileNotFoundError:
        return Path(path).with_name(Path(path).name + ".corrupt")


IDENTITY_KEY = "cell"  # which cell a checkpoint belongs to: task, variant, seed and config hash


def checked_identity(state: dict[str, Any], identity: dict[str, Any], path: str | os.PathLike[str], *, check_config: bool = True) -> dict[str, Any]:
    """`state` if it was written by this cell: another task's, variant's or seed's checkpoint copied in must never be
    resumed from (CorruptCheckpoint: moved aside, the cell starts afresh). The same cell under a changed config is the
    user's decision, not corruption: ConfigError asking for --restart. A checkpoint written before identities were
    recorded is taken (its config is still checked by whoever loads it)."""
    from pwmbench.errors import ConfigError

    recorded = state.get(IDENTITY_KEY)
    if recorded is None:
        return state
    whose = [k for k in ("task", "variant", "seed") if recorded.get(k) != identity.get(k)]
    if whose:
        diff = ", ".join(f"{k} {recorded.get(k)!r} (this cell: {identity.get(k)!r})" for k in whose)
        raise CorruptCheckpoint(f"{path} belongs to another cell: {diff}")
    if check_config and recorded.get("config_hash") != identity.get("config_hash"):  # (the trainer names the changed keys itself)
        raise ConfigError(f"{path} was written with a different config (hash {recorded.get('config_hash')}, now {identity.get('config_hash')}); "
                          "pass --restart to train from scratch")  # fmt: skip
    return state
