import os

from hypothesis import HealthCheck, settings

# torch's first call in a process is slow; deadlines would make property tests flaky.
settings.register_profile("pwmbench", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=40)
settings.register_profile("pwmbench-ci", parent=settings.get_profile("pwmbench"), derandomize=True, database=None)
settings.load_profile("pwmbench-ci" if os.environ.get("CI") else "pwmbench")

# Each xdist worker is one process on a shared 2-core machine: torch's intra-op threads would oversubscribe the
# cores (spin-waiting OpenMP threads turn a 1 s test into minutes). One thread per worker; xdist gives parallelism.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)


import pytest


@pytest.fixture
def toy_plugins():
    """The process-wide plugin manager plus the toy task plugin (tests/toy_task.py)."""
    import toy_task

    from pwmbench.plugin.manager import Plugins, set_plugins

    previous = set_plugins(Plugins(extra=[toy_task]))
    yield
    set_plugins(previous)
