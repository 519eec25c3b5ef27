"""W13 item 6: reorganising the runner, the cell kinds and the data jobs changes no result. The smoke and mt30-mini
job graphs at a test budget (tests/job_graph_reference.py) must give the run rows and curves recorded before the
move: bit-identical on the CPU model that recorded them, within 1e-4 relative on another (its float sums may run in
another order)."""

import json

import pytest
from job_graph_reference import REFERENCE, differences, run_tiny


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smoke", "mt30-mini"])
def test_the_job_graph_gives_the_recorded_results(name, tmp_path):
    from pwmbench.results.provenance import cpu_model

    reference = json.loads(REFERENCE.read_text())
    exact = reference["cpu_model"] == cpu_model()
    diffs = differences(run_tiny(name, tmp_path), reference["suites"][name], exact, name)
    assert not diffs, f"{len(diffs)} values differ ({'exact' if exact else '1e-4 relative'}), first: {diffs[:8]}"
