"""benchmarks/gpu_check.py runs only on GPU machines; its --quick CPU mode keeps it from rotting between them."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_quick_cpu_mode_runs_every_check(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    checks = json.loads((tmp_path / "gpu_check.json").read_text())["checks"]
    assert set(checks) == {"equality", "ant_steps_per_s", "wm_update", "pwm_epoch", "multitask_iteration"}
    assert not [k for k, v in checks.items() if "error" in v]
    assert checks["wm_update"]["flow"]["params"] > checks["wm_update"]["mlp"]["params"]
    assert checks["pwm_epoch"]["mlp"]["seconds"] > 0 and checks["multitask_iteration"]["seconds"] > 0
