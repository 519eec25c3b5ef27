"""The progress board's ETA: remaining wall time of a job graph from measured per-job rates.

Why not elapsed / done × remaining: jobs run `slots` at a time, start at different moments, resume part-way, and
differ in cost per unit (a flow cell's epoch against an MLP's; a world-model step against a policy iteration), so a
global average is wrong early and wrong at the end (a run "94% done, ETA 3 min" with its last cell a third in).
Here each running job's seconds per unit are measured from its own progress since it was first seen (a resumed job
counts only what it does now; once it has done enough, over the later half of that, so its one-time start stops
counting), queued jobs are priced at the measured rate of their first rate group that has one (a variant, then its
dynamics model, then the unit: epoch, step, iteration; any measured rate when none has), and what is left is scheduled as the executors schedule it — queued jobs in graph
order on the first free slot — so the estimate is that schedule's end, not total work / slots. Unknown until one job has progressed; the clock is injected so the estimate can be tested.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["EtaEstimator"]


@dataclass
class _Seen:
    t0: float
    u0: int
    t: float
    u: int
    done: bool = False
    steps: list[tuple[float, int]] = field(default_factory=list)  # (time, units) whenever the units changed


class EtaEstimator:
    """`observe(key, units)` as progress is read (or `finish(key)`), then `eta()`: seconds left, NaN while unknown."""

    def __init__(self, totals: dict[str, tuple[int, str | tuple[str, ...]]], slots: int, clock: Callable[[], float] = time.monotonic) -> None:
        """`totals`: key → (units of work, its rate groups from the most specific — e.g. (task, variant, unit) — to
        the most general, e.g. the unit); a queued job is priced at the first group with a measured rate."""
        self.totals = {k: (n, (g,) if isinstance(g, str) else tuple(g)) for k, (n, g) in totals.items()}
        self.slots, self.clock = max(1, slots), clock
        self.seen: dict[str, _Seen] = {}

    def observe(self, key: str, units: int) -> None:
        now = self.clock()
        s = self.seen.get(key)
        if s is None:
            self.seen[key] = _Seen(now, units, now, units)
        elif not s.done:
            if units != s.u:
                s.steps.append((now, units))
            s.t, s.u = now, units

    def finish(self, key: str) -> None:
        """The job ended: it needs no more time. Its rate stays the one its progress reports measured (not its end
        time: a job's last seconds are its final evaluation and files, not units of work)."""
        s = self.seen.get(key)
        if s is None:
            now = self.clock()
            self.seen[key] = _Seen(now, 0, now, 0, done=True)
        else:
            s.done = True

    def _own_rate(self, key: str, s: _Seen) -> float | None:
        """A job's seconds per unit, once it has progressed enough to be measured (5 units and a fifth of its total): a
        job's first report or two is mostly rounding, and one first seen near its end has too few units to time.
        Measured over the later half of its progress once that half alone is twice that: a job's one-time start (the
        untrained evaluation, the initial world-model block) then no longer prices the rest of it."""
        enough = max(5, 0.2 * self.totals[key][0])
        if not (s.t > s.t0 and s.u - s.u0 >= enough):
            return None
        half = s.u0 + (s.u - s.u0) / 2
        t_mid, u_mid = next(((t, u) for t, u in s.steps if u >= half), (s.t0, s.u0))
        if s.u - u_mid >= 2 * enough and s.t > t_mid:  # twice the minimum: a shorter window times coarser
            return (s.t - t_mid) / (s.u - u_mid)
        return (s.t - s.t0) / (s.u - s.u0)

    def _rates(self) -> tuple[dict[str, float], dict[str, float], float | None]:
        """Seconds per unit: each measured job's own, per rate group, and over every job."""
        own = {key: rate for key, s in self.seen.items() if (rate := self._own_rate(key, s)) is not None}
        by_group: dict[str, list[float]] = {}
        for key, rate in own.items():
            for group in self.totals[key][1]:
                by_group.setdefault(group, []).append(rate)
        every = list(own.values())
        return own, {g: sum(v) / len(v) for g, v in by_group.items()}, (sum(every) / len(every) if every else None)

    def eta(self) -> float:
        """The makespan of what is left: running jobs finish at their own pace; queued jobs, in graph order, take the
        first free slot (as the executors hand them out) for their priced duration."""
        now = self.clock()
        own_rates, per_group, overall = self._rates()
        running: list[float] = []
        queued: list[float] = []
        for key, (total, groups) in self.totals.items():
            s = self.seen.get(key)
            if s is not None and s.done:
                continue
            rate = own_rates[key] if key in own_rates else next((per_group[g] for g in groups if g in per_group), overall)
            if rate is None:
                return math.nan
            left = max(0, total - (s.u if s is not None else 0)) * rate
            if s is None:
                queued.append(left)
            else:
                running.append(max(0.0, left - (now - s.t)))  # less the time since its last progress report
        free = sorted(running)[: self.slots] + [0.0] * max(0, self.slots - len(running))
        finish = list(free) + sorted(running)[self.slots :]  # more running than slots (other executors): all count
        heapq.heapify(free)
        for duration in queued:
            finish.append(heapq.heappop(free) + duration)
            heapq.heappush(free, finish[-1])
        return max(finish, default=0.0)
