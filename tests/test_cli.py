"""The command line: import-light --help, plugins listing, parity JSON with PWM's exact counts, clear errors."""

import json
import subprocess
import sys

from click.testing import CliRunner

from pwmbench.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_does_not_import_torch_or_warp():
    code = (
        "import sys\n"
        "from pwmbench.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'warp', 'pwmbench.api') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "parity" in out.stdout and "plugins" in out.stdout


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "pwmbench", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "pwmbench" in out.stdout


def test_plugins_json_lists_builtins_with_sources():
    rows = json.loads(run("plugins", "--json").output)
    by_name = {(r["kind"], r["name"]): r for r in rows}
    for key in [("integrator", n) for n in ("euler", "heun", "midpoint", "rk4")] + [("dynamics model", "mlp"), ("dynamics model", "flow")]:
        assert by_name[key]["source"] == "built-in" and by_name[key]["version"]
    assert "heun" in run("plugins").output


def test_parity_json_has_pwms_exact_baseline_count():
    result = run("parity", "--preset", "pwm", "--obs-dim", "37", "--act-dim", "8", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    models = {m["dynamics"]: m for m in data["models"]}
    assert models["mlp"]["total"] == 1_469_953
    assert models["mlp"]["components"] == {"encoder": 142_848, "dynamics": 795_136, "reward": 531_969, "task_embedding": 0}
    assert models["flow"]["total"] == 1_469_953 + 512
    assert data["ok"] and abs(models["flow"]["gap_pct"] - 0.0348) < 1e-3


def test_parity_solve_and_warning():
    result = run("parity", "--obs-dim", "37", "--act-dim", "8", "--dynamics", "mlp", "--dynamics", "flow:units=[700,700]", "--solve")
    assert result.exit_code == 0
    assert "WARNING" in result.output and "flow:units=[512,512]" in result.output
    strict = run("parity", "--obs-dim", "37", "--act-dim", "8", "--dynamics", "mlp", "--dynamics", "flow:units=[700,700]", "--strict")
    assert strict.exit_code == 1


def test_parity_multitask_json():
    data = json.loads(run("parity", "--preset", "pwm_48M", "--obs-dim", "24", "--act-dim", "6", "--n-tasks", "30", "--task-dim", "64", "--json", "--solve").output)
    assert data["models"][0]["components"]["task_embedding"] == 30 * 64
    assert data["solutions"][0]["width"] == 1792


def test_parity_errors_are_clear():
    result = CliRunner().invoke(main, ["parity", "--obs-dim", "37", "--act-dim", "8", "--dynamics", "flw"])
    assert result.exit_code == 2 and "did you mean 'flow'" in result.output
    result = CliRunner().invoke(main, ["parity", "--preset", "pwm"])
    assert result.exit_code == 2 and "--obs-dim" in result.output
    result = CliRunner().invoke(main, ["parity", "--obs-dim", "24", "--act-dim", "6", "--n-tasks", "30"])
    assert result.exit_code == 2 and "--task-dim" in result.output


def test_parity_takes_dims_from_a_registered_task():
    data = json.loads(run("parity", "--task", "dmc/cheetah-run", "--json").output)
    assert data["dims"] == {"obs_dim": 17, "act_dim": 6, "n_tasks": 1, "task_dim": 0}
    assert data["models"][1]["total"] - data["models"][0]["total"] == 512
