"""Initialise NVIDIA Warp once, with a project-level kernel cache.

Why: the simulator's kernel module takes 20–35 s to compile cold on a 2-core CPU, and Warp's default cache lives in
the user's home directory, which CI runners and fresh containers do not keep. A cache inside the repository (or
wherever `PWMBENCH_WARP_CACHE` points) makes every later process start in under a second.

Where the cache goes, first match wins:
1. `PWMBENCH_WARP_CACHE` (created if missing);
2. `<repo>/.warp_cache`, when this file sits in a source checkout (a `pyproject.toml` two levels up) and that
   directory is writable (it is git-ignored);
3. Warp's own default (`WARP_CACHE_PATH` or `~/.cache/warp`).

The cache directory must be chosen before Warp initialises; if something else initialised Warp (or set
`wp.config.kernel_cache_dir`) first, its choice stands.
"""

from __future__ import annotations

import os
from pathlib import Path

_READY = False


def cache_dir() -> Path | None:
    """The kernel cache this project wants (None: leave Warp's default)."""
    env = os.environ.get("PWMBENCH_WARP_CACHE")
    if env:
        path = Path(env).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file():
        path = repo / ".warp_cache"
        try:
            path.mkdir(exist_ok=True)
        except OSError:
            return None
        if os.access(path, os.W_OK):
            return path
    return None


def init_warp():
    """Import and initialise Warp (once per process) with the project's kernel cache; returns the `warp` module."""
    global _READY
    import warp as wp

    if not _READY:
        if wp.config.kernel_cache_dir is None:  # set by Warp itself once initialised
            path = cache_dir()
            if path is not None:
                wp.config.kernel_cache_dir = str(path)
            wp.config.log_level = getattr(wp, "LOG_WARNING", 30)  # no banner / per-module load lines
        wp.init()
        _READY = True
    return wp
