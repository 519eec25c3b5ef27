"""The progress board's ETA error on a real run (W15 item 3): read the board's lines from a `pwmbench run` log (stderr,
not a terminal: one line every 30 s) and the run's end, and print the ETA's error at 25/50/75% of the work.

    pwmbench run suites/smoke.toml --workers 2 --out DIR 2> run.err
    python benchmarks/eta_error.py run.err           # → the table recorded in benchmarks/results/eta_smoke
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

LINE = re.compile(r"^jobs (\d+)/(\d+) \[[#.]+\] (\d+)%  elapsed ([\d.]+) min(?:  ETA ([\d.]+) min)?")


def rows(text: str) -> list[tuple[int, float, float | None]]:
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            out.append((int(m.group(3)), float(m.group(4)), float(m.group(5)) if m.group(5) else None))
    return out


def main() -> None:
    samples = rows(Path(sys.argv[1]).read_text())
    total = samples[-1][1]  # the final line: elapsed at the end
    print("| work done | elapsed (min) | ETA (min) | true remaining (min) | error |")
    print("|---|---|---|---|---|")
    for target in (25, 50, 75):
        pct, elapsed, eta = min((s for s in samples if s[2] is not None), key=lambda s: abs(s[0] - target))
        left = total - elapsed
        print(f"| {pct}% | {elapsed:.1f} | {eta:.1f} | {left:.1f} | {100 * (eta - left) / left:+.0f}% |")
    print(f"\nrun: {total:.1f} min")


if __name__ == "__main__":
    main()
