"""Where a result came from: package versions, git commit, hardware. Stored as columns of every run row."""

from __future__ import annotations

import functools
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pwmbench

PACKAGES = ("torch", "numpy", "pyarrow", "pluggy", "warp-lang", "mujoco", "dm_control", "metaworld")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def git_commit() -> str | None:
    """The commit of the pwmbench checkout in use (None when installed from a wheel); '+dirty' if modified."""
    root = Path(pwmbench.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


def provenance(device: str = "cpu", plugins: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Flat columns: versions of pwmbench and key packages, plugin versions (JSON), git commit, host facts."""
    import os

    row: dict[str, Any] = {
        "pwmbench_version": pwmbench.__version__,
        "git_commit": git_commit(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "device_name": device_name(device),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "plugins": json.dumps(plugins or {}, sort_keys=True),
    }
    for name in PACKAGES:
        row[f"{name.replace('-', '_')}_version"] = _version(name)
    return row
