"""Importing a TD-MPC2 / PWM world-model checkpoint (W12 item 2): built here in TD-MPC2's layout (names, `model.`
prefix, [z, emb, a] input order, Q ensemble and policy prior beside it), since none can be downloaded; the imported
pwmbench model must compute what TD-MPC2's layers compute from those tensors, written out independently below."""

import pytest
import torch
import torch.nn.functional as F

from pwmbench import api
from pwmbench.errors import ConfigError

O, A, T, N, L, U, E, BINS, SIMNORM = 7, 4, 8, 3, 16, 32, 24, 101, 8


def _normed(sd, prefix, fan_in, fan_out, gen):
    sd[f"{prefix}.weight"] = torch.randn(fan_out, fan_in, generator=gen) * 0.3
    sd[f"{prefix}.bias"] = torch.randn(fan_out, generator=gen) * 0.1
    sd[f"{prefix}.ln.weight"] = 1 + 0.1 * torch.randn(fan_out, generator=gen)
    sd[f"{prefix}.ln.bias"] = 0.1 * torch.randn(fan_out, generator=gen)


def tdmpc2_state(seed=0, obs=O, act=A, task_dim=T, n_tasks=N, latent=L, units=U, enc=E):
    """A multitask TD-MPC2 world model's state dict, as its `save` writes it ({"model": state_dict})."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    emb = torch.randn(n_tasks, task_dim, generator=g)
    sd["_task_emb.weight"] = 0.9 * emb / emb.norm(dim=-1, keepdim=True)  # inside max_norm = 1: no renormalisation
    sd["_action_masks"] = torch.tensor([[1.0] * 4, [1, 1, 0, 0], [1, 0, 0, 0]]) if (n_tasks, act) == (N, A) else torch.ones(n_tasks, act)
    _normed(sd, "_encoder.state.0", obs + task_dim, enc, g)
    _normed(sd, "_encoder.state.1", enc, latent, g)
    _normed(sd, "_dynamics.0", latent + task_dim + act, units, g)
    _normed(sd, "_dynamics.1", units, units, g)
    _normed(sd, "_dynamics.2", units, latent, g)
    _normed(sd, "_reward.0", latent + task_dim + act, units, g)
    _normed(sd, "_reward.1", units, units, g)
    sd["_reward.2.weight"] = torch.randn(BINS, units, generator=g) * 0.3
    sd["_reward.2.bias"] = torch.randn(BINS, generator=g) * 0.1
    sd["_pi.0.weight"] = torch.randn(units, latent + task_dim, generator=g)  # what pwmbench's world model does not have
    sd["_Qs.params.0.weight"] = torch.randn(5, units, latent + task_dim + act, generator=g)
    sd["log_std_min"] = torch.tensor(-10.0)
    return {"model": {f"model.{k}" if k.startswith("_Q") else k: v for k, v in sd.items()}}, sd


def _layer(sd, prefix, x, act):
    x = F.linear(x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"])
    x = F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.ln.weight"], sd[f"{prefix}.ln.bias"])
    return act(x)


def _simnorm(x):
    return F.softmax(x.view(*x.shape[:-1], -1, SIMNORM), dim=-1).view(*x.shape)


def reference(sd, obs, a, task):
    """TD-MPC2's forward from its tensors: encoder [obs, emb], dynamics and reward [z, emb, a]."""
    emb = sd["_task_emb.weight"][task]
    a = a * sd["_action_masks"][task]
    z = _layer(sd, "_encoder.state.1", _layer(sd, "_encoder.state.0", torch.cat([obs, emb], -1), F.mish), _simnorm)
    x = torch.cat([z, emb, a], -1)
    nxt = _layer(sd, "_dynamics.2", _layer(sd, "_dynamics.1", _layer(sd, "_dynamics.0", x, F.mish), F.mish), _simnorm)
    h = _layer(sd, "_reward.1", _layer(sd, "_reward.0", x, F.mish), F.mish)
    return z, nxt, F.linear(h, sd["_reward.2.weight"], sd["_reward.2.bias"])


def _pwmbench(dynamics="mlp"):
    return api.build_world_model("pwm_5M", obs_dim=O, act_dim=A, n_tasks=N, task_dim=T, action_dims=[4, 2, 1], units=[U, U],
                                 encoder_units=[E], latent_dim=L, dynamics=dynamics)  # fmt: skip


def test_an_imported_tdmpc2_world_model_computes_what_tdmpc2_computes(tmp_path):
    saved, sd = tdmpc2_state()
    torch.save(saved, tmp_path / "tdmpc2.pt")
    wm = _pwmbench()
    report = api.import_world_model(api.read_checkpoint(tmp_path / "tdmpc2.pt"), wm, "tdmpc2")
    assert "dynamics.net.0.weight" in report["loaded"] and report["left_out"] == ["_Qs.params.0.weight", "_pi.0.weight", "log_std_min"]
    g = torch.Generator().manual_seed(1)
    obs, a, task = torch.randn(6, O, generator=g), torch.rand(6, A, generator=g) * 2 - 1, torch.tensor([0, 1, 2, 2, 1, 0])
    z_ref, next_ref, reward_logits_ref = reference(sd, obs, a, task)
    with torch.no_grad():
        z = wm.encode(obs, task)
        assert torch.allclose(z, z_ref, atol=1e-6)
        assert torch.allclose(wm.next(z, a, task), next_ref, atol=1e-6)
        assert torch.allclose(wm.reward_out(z, a, task), reward_logits_ref, atol=1e-5)


def test_a_pwm_checkpoint_imports_too_and_wrong_shapes_are_named(tmp_path):
    _, sd = tdmpc2_state(2)
    pwm = {("_encoder." + k.split(".", 2)[2]) if k.startswith("_encoder.state.") else k: v for k, v in sd.items() if not k.startswith(("_pi", "_Qs", "log_std"))}
    torch.save({"wm": pwm, "actor": {}, "epoch": 3}, tmp_path / "pwm.pt")  # PWM's save(): the world model under "wm"
    wm = _pwmbench()
    api.import_world_model(api.read_checkpoint(tmp_path / "pwm.pt"), wm, "pwm")
    obs, a, task = torch.randn(2, O), torch.zeros(2, A), torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.allclose(wm.next(wm.encode(obs, task), a, task), reference(sd, obs, a, task)[1], atol=1e-6)
    wider = api.build_world_model("pwm_5M", obs_dim=O, act_dim=A, n_tasks=N, task_dim=T, units=[U + 8, U + 8], encoder_units=[E], latent_dim=L)
    with pytest.raises(ConfigError, match=r"dynamics.net.0.weight: checkpoint \(32, 28\), this model \(40, 28\)"):
        api.import_world_model(pwm, wider, "pwm")
    with pytest.raises(ConfigError, match="dynamics = 'mlp'"):
        api.import_world_model(pwm, _pwmbench("flow"), "pwm")
    with pytest.raises(ConfigError, match="lacks task_embedding.weight"):
        api.import_world_model({k: v for k, v in pwm.items() if k != "_task_emb.weight"}, _pwmbench(), "pwm")
    with pytest.raises(ConfigError, match="source must be one of"):
        api.import_world_model(pwm, _pwmbench(), "dreamer")


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"model": {"x": Evil()}}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="loads without running code"):
        api.read_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="no such checkpoint"):
        api.read_checkpoint(tmp_path / "none.pt")


def test_the_side_by_side_script_says_what_it_skips_without_the_checkouts(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "pwm_side_by_side.py"
    done = subprocess.run([sys.executable, str(script), "--pwm", str(tmp_path / "nope"), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "skipped — PWM: no checkout at" in done.stdout and "skipped — TD-MPC2: no checkout at None" in done.stdout
    assert not (tmp_path / "out").exists()  # nothing compared, nothing written


# ------------------------------------------------------------------------- a task-set cell from a checkpoint
@pytest.mark.slow
def test_a_task_set_cell_starts_from_an_imported_tdmpc2_world_model(tmp_path):
    """PWM's MT30/MT80 path: the world model is TD-MPC2's checkpoint (`general.checkpoint` → `load_wm`), not trained.
    `world_model_checkpoint` imports it in the world-model job: no step trained, the members' policies learn in exactly
    the imported model, the run rows and world_model.pt say where it came from; a file that does not fit fails the
    cell with the mismatch named, and a non-MLP variant is refused before anything runs."""
    from pwmbench.data.collect import collect
    from pwmbench.nn.world_model import build_world_model
    from pwmbench.pwm.cell import train_cell
    from pwmbench.pwm.checkpoint import load_checkpoint
    from pwmbench.pwm.config import resolve_config
    from pwmbench.results.atomic_files import sha256_of
    from pwmbench.results.tables import read_table

    spec = api.task("mt30").spec
    collect("mt30", 1, tmp_path / "data", task_ids=[8], num_envs=1, seed=3)
    saved, sd = tdmpc2_state(4, obs=spec.obs_dim, act=spec.act_dim, task_dim=spec.task_dim, n_tasks=spec.n_tasks, latent=16, units=32, enc=32)
    torch.save(saved, tmp_path / "mt30-tdmpc2.pt")
    tiny = {"preset": "pwm_5M", "world_model": {"units": [32, 32], "encoder_units": [32], "latent_dim": 16}, "actor_units": [32, 32],
            "critic_units": [32, 32], "horizon": 4, "wm_batch_size": 8, "policy_batch_size": 16, "critic_iterations": 2, "max_epochs": 2,
            "eval_every": 2, "eval_episodes": 2, "offline_wm_iterations": 50, "data_dir": str(tmp_path / "data")}  # fmt: skip
    cfg = resolve_config({**tiny, "world_model_checkpoint": str(tmp_path / "mt30-tdmpc2.pt")})
    assert cfg.wm_training_steps == 0
    assert train_cell("mt30", cfg, 42, tmp_path / "cell").status == "ok"
    row = read_table(tmp_path / "cell" / "run.arrow").to_pylist()[0]
    assert (row["status"], row["wm_iterations"], row["wm_recipe"]) == ("ok", 0, "imported (tdmpc2)")
    record = load_checkpoint(tmp_path / "cell" / "world_model.pt")
    assert record["imported_from"]["sha256"] == sha256_of(tmp_path / "mt30-tdmpc2.pt") and record["rows"] == []
    assert record["imported_from"]["left_out"] == ["_Qs.params.0.weight", "_pi.0.weight", "log_std_min"]
    wm = build_world_model("pwm_5M", obs_dim=spec.obs_dim, act_dim=spec.act_dim, n_tasks=spec.n_tasks, task_dim=spec.task_dim, units=[32, 32],
                           encoder_units=[32], latent_dim=16)  # fmt: skip
    wm.load_state_dict(record["owm"]["wm"])
    obs, a, task = torch.randn(3, spec.obs_dim), torch.rand(3, spec.act_dim) * 2 - 1, torch.tensor([8, 8, 3])
    z_ref, next_ref, _ = reference(sd, obs, a * wm.action_masks[task], task)
    with torch.no_grad():
        z = wm.encode(obs, task)
        assert torch.allclose(z, z_ref, atol=1e-6) and torch.allclose(wm.next(z, a, task), next_ref, atol=1e-6)

    wrong = resolve_config({**tiny, "world_model": {"units": [48, 48], "encoder_units": [32], "latent_dim": 16},
                            "world_model_checkpoint": str(tmp_path / "mt30-tdmpc2.pt")})  # fmt: skip
    assert train_cell("mt30", wrong, 42, tmp_path / "wrong").status == "failed"
    reason = read_table(tmp_path / "wrong" / "run.arrow").to_pylist()[0]["reason"]
    assert reason.startswith("world model: ConfigError: the tdmpc2 checkpoint does not fit this world model") and "dynamics = 'mlp'" not in reason
    with pytest.raises(ConfigError, match="set world_model_checkpoint on the mlp variant only"):
        resolve_config({**tiny, "dynamics": "flow", "world_model_checkpoint": str(tmp_path / "mt30-tdmpc2.pt")})
    with pytest.raises(ConfigError, match="world_model_checkpoint_source must be one of 'tdmpc2', 'pwm'"):
        resolve_config({**tiny, "world_model_checkpoint_source": "dreamer"})
