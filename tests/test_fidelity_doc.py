"""docs/fidelity.md: every departure row names a test, and that test exists (a row cannot point at nothing)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rows():
    for line in (ROOT / "docs" / "fidelity.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 4 and not set(cells[0]) <= {"-"} and cells[0] != "PWM code":
            yield cells


def test_every_fidelity_row_links_to_an_existing_test():
    rows = list(_rows())
    assert len(rows) >= 8
    for cells in rows:
        refs = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", cells[-1])
        assert refs, f"row {cells[0]!r} names no test"
        for path, name in refs:
            source = (ROOT / path).read_text()
            if name:
                assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name} (row {cells[0]!r}) does not exist"
