import os

from hypothesis import HealthCheck, settings

# torch's first call in a process is slow; deadlines would make property tests flaky.
settings.register_profile("pwmbench", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=40)
settings.register_profile("pwmbench-ci", parent=settings.get_profile("pwmbench"), derandomize=True, database=None)
settings.load_profile("pwmbench-ci" if os.environ.get("CI") else "pwmbench")
