"""Weights & Biases logging of every training cell, through the run-event hook.

Off unless `PWMBENCH_WANDB=1`. Project `PWMBENCH_WANDB_PROJECT` (default "flow-pwm-comparison"),
one W&B group per variant × task so the seeds aggregate, the resolved config attached, every metric logged
at its epoch. `WANDB_MODE=offline` works without a network (`wandb sync` later). W&B is a mirror: the Arrow
tables stay the record, and a logger failure never stops training (the plugin manager skips it).
"""

from __future__ import annotations

import os
from typing import Any

from pwmbench.api import RunEvent, hookimpl

__version__ = "0.1.0"
DEFAULT_PROJECT = "flow-pwm-comparison"


def enabled() -> bool:
    return os.environ.get("PWMBENCH_WANDB", "").strip().lower() not in ("", "0", "false", "no")


class WandbLogger:
    def __init__(self) -> None:
        self.run: Any = None

    @hookimpl
    def pwmbench_run_event(self, event: RunEvent) -> None:
        if not enabled():
            return
        if event.kind == "started":
            import wandb

            cell = dict(event.cell)
            self.run = wandb.init(
                project=os.environ.get("PWMBENCH_WANDB_PROJECT", DEFAULT_PROJECT),
                group=f"{cell.get('variant')}-{cell.get('task')}",
                name=f"{cell.get('variant')}-{cell.get('task')}-seed{cell.get('seed')}",
                config={**dict(event.config), **cell},
                dir=os.environ.get("PWMBENCH_WANDB_DIR"),
                reinit="finish_previous",
            )
        elif event.kind == "metrics" and self.run is not None:
            self.run.log(dict(event.metrics), step=event.step)
        elif event.kind == "finished" and self.run is not None:
            self.run.summary["status"] = event.status
            if event.reason:
                self.run.summary["reason"] = event.reason
            self.run.finish(exit_code=0 if event.status == "ok" else 1)
            self.run = None


logger = WandbLogger()
