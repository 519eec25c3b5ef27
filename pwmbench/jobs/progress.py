"""The progress board of `pwmbench run`: an overall bar with its ETA and one line per running job, read from the
progress.json files the jobs write (so it works whichever executor runs them, wherever)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pwmbench.errors import PwmbenchError
from pwmbench.jobs.cell_kinds import Tracked, kind_for
from pwmbench.jobs.eta import EtaEstimator
from pwmbench.results.cell_files import PROGRESS_FILE

if TYPE_CHECKING:
    from pwmbench.suite.spec import Cell

__all__ = ["ProgressBoard"]


class ProgressBoard:
    """Overall bar with ETA plus one line per running cell or job, read from their progress.json files."""

    def __init__(self, cells: list[Cell], out: Path, stream: Any = sys.stderr, interval: float = 1.0, items: list[Tracked] | None = None,
                 slots: int = 1, clock: Any = time.monotonic) -> None:  # fmt: skip
        self.cells, self.out, self.stream, self.interval = cells, out, stream, interval
        self.items = items if items is not None else [self.track_cell(c, out) for c in cells]
        self.eta = EtaEstimator({i.key: (i.total, tuple(g for g in (i.rate_group, *i.rate_fallbacks, i.unit) if g)) for i in self.items}, slots, clock)  # jobs/eta.py
        self.noun = "cells" if items is None else "jobs"
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.done: set[str] = set()
        self.start = time.time()
        self._stop = threading.Event()
        self._lines = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._last_plain = 0.0

    def __enter__(self) -> ProgressBoard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.draw(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.draw()

    @classmethod
    def track_cell(cls, cell: Cell, out: Path) -> Tracked:
        total = cls.cell_total(cell)
        unit = "epoch" if total == cell.config.max_epochs else "step"
        return Tracked(cell.key, f"{cell.task} {cell.variant} seed {cell.seed}", cell.directory(out), total, unit)

    @staticmethod
    def cell_total(cell: Cell) -> int:
        """A cell's units of work, as its kind counts them (a task set: world-model steps and member iterations)."""
        try:
            return kind_for(cell.task).total(cell)
        except PwmbenchError:  # a task this process cannot resolve: count its epochs
            return cell.config.max_epochs

    def _progress(self, item: Tracked) -> tuple[int, dict[str, Any] | None]:
        if item.key in self.done:
            return item.total, None
        try:
            info = json.loads((item.directory / PROGRESS_FILE).read_text())
            return min(int(info["epoch"]), item.total), info
        except (OSError, ValueError, KeyError):
            return 0, None

    def draw(self, final: bool = False) -> None:
        total = sum(i.total for i in self.items)
        states = [(i, *self._progress(i)) for i in self.items]
        done_units = sum(e for _, e, _ in states)
        elapsed = time.time() - self.start
        for item, units, info in states:
            if item.key in self.done:
                self.eta.finish(item.key)
            elif info is not None:
                self.eta.observe(item.key, units)
        eta = self.eta.eta()
        frac = done_units / total if total else 1.0
        finished = sum(i.key in self.done for i in self.items)
        head = f"{self.noun} {finished}/{len(self.items)} [{'#' * int(30 * frac)}{'.' * (30 - int(30 * frac))}] {100 * frac:.0f}%"
        head += f"  elapsed {elapsed / 60:.1f} min" + (f"  ETA {eta / 60:.1f} min" if eta == eta else "  ETA measuring")
        lines = [head]
        for item, units, info in states:
            if info is not None and item.key not in self.done:
                ev = info.get("eval_return")
                lines.append(f"  {item.label}: {item.unit} {units}/{item.total}" + (f", eval {ev:.1f}" if ev is not None else ""))
        if self.tty:
            if self._lines:
                self.stream.write(f"\x1b[{self._lines}F\x1b[J")
            self.stream.write("\n".join(lines) + "\n")
            self._lines = len(lines)
        elif final or time.time() - self._last_plain > 30:
            self.stream.write(head + "\n")
            self._last_plain = time.time()
        self.stream.flush()

    def finished(self, what: Cell | str, status: str) -> None:
        """A cell (or a job, by key) ended with `status`."""
        key = what if isinstance(what, str) else what.key
        self.done.add(key)
        label = next((i.label for i in self.items if i.key == key), key)
        if not self.tty:
            self.stream.write(f"  finished {label}: {status}\n")
