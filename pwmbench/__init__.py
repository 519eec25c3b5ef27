"""pwmbench: fair, reproducible comparisons of world-model dynamics models inside PWM.

The package root stays import-light (no torch, no warp) so that `pwmbench --help` is instant;
the public API for plugin authors lives in `pwmbench.api` and `pwmbench.hookspecs` (and `pwmbench.plugin.job_output`,
the torch-free part an executor's remote job imports).
"""

__version__ = "0.1.0"
