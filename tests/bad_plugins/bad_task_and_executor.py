"""A task factory that returns a dict instead of a Task; an executor that does not implement run."""

from pwmbench.api import Executor, hookimpl


def make_task():
    return {"obs_dim": 3, "act_dim": 1}


class Lazy(Executor):
    def __init__(self, workers=1):
        self.workers = workers


@hookimpl
def pwmbench_register_tasks(registry):
    registry.add("bad/task", make_task)


@hookimpl
def pwmbench_register_executors(registry):
    registry.add("lazy", Lazy)
