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


def tdmpc2_state(seed=0):
    """A multitask TD-MPC2 world model's state dict, as its `save` writes it ({"model": state_dict})."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    emb = torch.randn(N, T, generator=g)
    sd["_task_emb.weight"] = 0.9 * emb / emb.norm(dim=-1, keepdim=True)  # inside max_norm = 1: no renormalisation
    sd["_action_masks"] = torch.tensor([[1.0] * 4, [1, 1, 0, 0], [1, 0, 0, 0]])
    _normed(sd, "_encoder.state.0", O + T, E, g)
    _normed(sd, "_encoder.state.1", E, L, g)
    _normed(sd, "_dynamics.0", L + T + A, U, g)
    _normed(sd, "_dynamics.1", U, U, g)
    _normed(sd, "_dynamics.2", U, L, g)
    _normed(sd, "_reward.0", L + T + A, U, g)
    _normed(sd, "_reward.1", U, U, g)
    sd["_reward.2.weight"] = torch.randn(BINS, U, generator=g) * 0.3
    sd["_reward.2.bias"] = torch.randn(BINS, generator=g) * 0.1
    sd["_pi.0.weight"] = torch.randn(U, L + T, generator=g)  # what pwmbench's world model does not have
    sd["_Qs.params.0.weight"] = torch.randn(5, U, L + T + A, generator=g)
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
