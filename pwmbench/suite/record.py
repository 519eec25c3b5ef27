"""suite.json: the suite a results directory belongs to. A run checks the suite it is given against the record
before anything is planned: cells dropped or configs changed are refused unless --restart (the results there would
not be this suite's), added tasks, variants or seeds are allowed and recorded as amendments."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from pwmbench.errors import ConfigError
from pwmbench.pwm.config import INVOCATION_KEYS
from pwmbench.results.cell_files import write_text_atomic
from pwmbench.suite.spec import Suite

__all__ = ["SUITE_FILE", "check_same_suite", "suite_changes", "write_suite_record"]

SUITE_FILE = "suite.json"


def write_suite_record(suite: Suite, out: Path, amendments: list[dict[str, Any]] | None = None) -> None:
    """suite.json: the suite this directory's results belong to, with the history of what was added to it."""
    write_text_atomic(json.dumps({**suite.to_dict(), "amendments": amendments or []}, indent=1, default=str), out / SUITE_FILE)


def suite_changes(suite: Suite, out: Path, repair: bool = True) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """How `suite` differs from the one recorded in `out` (suite.json): (refused differences — cells dropped or a
    config changed —, additions — new tasks, variants or seeds whose cells the old ones do not touch —, the record's
    amendment history). Nothing recorded: no differences."""
    path = out / SUITE_FILE
    if not path.exists():
        return [], [], []
    try:
        old = json.loads(path.read_text())
        old_configs, old_seeds = dict(old["configs"]), list(old["seeds"])
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a garbled record proves nothing: moved aside, rewritten;
        from pwmbench.results.atomic_files import (
            move_aside,  # the cells' rows still carry their config hashes (score checks them)
        )

        if repair:
            print(f"warning: {path} is not a readable suite record ({exc}); moved to {move_aside(path).name}, this suite's record is written", file=sys.stderr)
        return [], [], []
    new_configs = {f"{t}|{v}": json.loads(json.dumps(c.to_dict(), default=str)) for (t, v), c in suite.configs.items()}  # as recorded
    refused, added = [], []
    for key in sorted(old_configs):
        if key not in new_configs:
            refused.append(f"{key.replace('|', ' ')} is no longer in the suite")
            continue
        before, after = ({k: v for k, v in c.items() if k not in INVOCATION_KEYS} for c in (old_configs[key], new_configs[key]))
        changed = [f"{k} {before.get(k)!r} → {after.get(k)!r}" for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
        if changed:
            refused.append(f"{key.replace('|', ' ')}: {', '.join(changed[:6])}" + (" …" if len(changed) > 6 else ""))
    dropped = [s for s in old_seeds if s not in suite.seeds]
    if dropped:
        refused.append(f"seeds {dropped} are no longer in the suite")
    added += [f"{k.replace('|', ' ')}" for k in sorted(set(new_configs) - set(old_configs))]
    added += [f"seed {s}" for s in suite.seeds if s not in old_seeds]
    return refused, added, list(old.get("amendments") or [])


def check_same_suite(suite: Suite, out: Path, restart: bool, repair: bool = True) -> list[dict[str, Any]]:
    """A results directory belongs to one suite: a suite that drops cells or changes a config is refused (naming the
    differences) unless `restart`; added tasks, variants or seeds are allowed and recorded. Returns the amendment
    history to record."""
    refused, added, history = suite_changes(suite, out, repair)
    if refused and not restart:
        raise ConfigError(
            f"{out} holds the results of a different suite: " + "; ".join(refused[:8]) + (" …" if len(refused) > 8 else "")
            + ". Run into another --out, or pass --restart to train the selected cells again with this suite's configs."
        )
    if refused or added:
        history.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "added": added, "restarted_with_changes": refused})
    return history
