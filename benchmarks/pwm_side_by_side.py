"""pwmbench beside PWM's and TD-MPC2's own code, weights copied across, every comparison printed with its tolerance.

The two code bases are never vendored: name their checkouts (`--pwm DIR`, the imgeorgiev/PWM repository root;
`--tdmpc2 DIR`, the nicklashansen/tdmpc2 root) and the script imports their modules from there — PWM's world model
needs `hydra-core` importable, TD-MPC2's `tensordict`, PWM's replay buffer `torchrl` (`pip install --no-deps
--target DIR torchrl`, then `PYTHONPATH=DIR`). What is missing is skipped with a message. PWM's algorithm class
lives in a module that imports gym, wandb and torchrl at the top; the script compiles the methods it runs
(`compute_wm_loss`, `update`, `compute_actor_loss`, `compute_target_values`, `compute_critic_loss`, `update_lrs`,
`save`, `load`) from PWM's source file (`ast`) and binds them to a stand-in `self` holding PWM's own modules.
TD-MPC2's agent is its class with `__init__`'s CUDA-only parts redone on the CPU (`tdmpc2_agent`).

Comparisons (each: max |difference| and the tolerance it must stay under; "inf" marks a departure shown by design):
1. PWM's single-task world model (`pwm` preset sizes) imported into pwmbench (`api.import_world_model`, source "pwm"):
   encode, next, reward agree;
2. PWM's `compute_wm_loss` vs pwmbench's world-model loss on the same batch: losses and every parameter's gradient;
3. D1: PWM's multitask actor reward (`almost_two_hot_inv` of its 101-bin head) vs pwmbench's
   `step(..., reward_decode="pwm-code")` on a `pwm_5M`-shaped multitask model (input columns permuted by the importer);
4. TD-MPC2's multitask world model saved as its `save` writes it, read and imported (source "tdmpc2"): encode, next,
   reward logits agree;
5. D1, D7: five iterations of PWM's multitask `update` (actor through the frozen world model, critic passes,
   `update_lrs`) vs pwmbench's `TaskPolicy.train_iteration`: actor loss, gradient norm, value_loss as PWM logs
   it, actor and critic parameters; the symexp decode's actor loss for the size of D1;
6. D3, D4, D5 against PWM's `Buffer` (torchrl's SliceSampler, prefetch 12): the prefetch lag, the episodes
   `add_batch` keeps, the entries multitask start states come from;
7. D6: PWM's `save` → `load` → next update equals the agent that saved; what a fresh Adam would do; the parts
   PWM's checkpoint restores that pwmbench's `pretrain_checkpoint` does not (none);
8. D2: two TD-MPC2 `_update`s vs pwmbench's "tdmpc2" recipe: losses, world model, Q heads, target Qs and prior; the
   task embedding TD-MPC2 moves with the prior's leftover gradient, and everything equal once that is cleared;
speed: one world-model update (loss, backward, clip 20, Adam) and one multitask policy iteration of each side,
interleaved, one thread: time ratios.

    python benchmarks/pwm_side_by_side.py --pwm ~/src/PWM --tdmpc2 ~/src/tdmpc2     # writes benchmarks/results/pwm_side_by_side
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from types import MethodType, SimpleNamespace

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
TOL = {"forward": 1e-5, "loss": 1e-5, "grad": 1e-5, "decode": 1e-5}


def diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


def row(name: str, value: float, tol: float, note: str = "") -> dict:
    return {"comparison": name, "max_abs_diff": value, "tolerance": tol, "ok": value <= tol, "note": note}


# ------------------------------------------------------------------------------------------------------------ PWM
def pwm_world_model(root: Path, obs: int, act: int, latent: int, units: list[int], enc: list[int], num_bins=None, tasks=None, task_dim=0):
    sys.path.insert(0, str(root / "src"))
    from pwm.models.mlp import SimNorm
    from pwm.models.world_model import WorldModel

    simnorm = {"last_layer": "normedlinear", "last_layer_kwargs": {"act": SimNorm(8)}}
    return WorldModel(obs, act, latent, units, enc, encoder=simnorm, dynamics=simnorm, reward={"last_layer": "linear", "last_layer_kwargs": {}},
                      num_bins=num_bins, vmin=-10 if num_bins else None, vmax=10 if num_bins else None,
                      multitask=tasks is not None, tasks=tasks, task_dim=task_dim, action_dims=[act] * len(tasks) if tasks else None)  # fmt: skip


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Every weight matrix drawn afresh (std 0.05): PWM and TD-MPC2 zero-init their reward head's last layer, and a
    comparison of zeros with zeros would pass whatever the code did."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def pwm_methods(root: Path, names: list[str], namespace: dict | None = None) -> dict:
    """Methods of PWM's algorithm class, compiled from its source file alone (its module imports gym, wandb and
    torchrl at the top; the methods compared here need none of them). `namespace` supplies the names they use."""
    path = root / "src" / "pwm" / "algorithms" / "pwm.py"
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PWM")
    fns = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in names]
    missing = set(names) - {f.name for f in fns}
    if missing:
        raise SystemExit(f"{path} has no method(s) {sorted(missing)}: is it imgeorgiev/PWM at aa5a1d8?")
    namespace = {"torch": torch, "F": F, **(namespace or {})}
    exec(compile(ast.Module(body=fns, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102 - the user's own checkout
    return {name: namespace[name] for name in names}


def pwm_loss_function(root: Path):
    """PWM's `compute_wm_loss`."""
    return pwm_methods(root, ["compute_wm_loss"])["compute_wm_loss"]


def bind(me: SimpleNamespace, methods: dict) -> SimpleNamespace:
    """PWM's methods bound to a stand-in `self` holding exactly the attributes they read."""
    for name, fn in methods.items():
        setattr(me, name, MethodType(fn, me))
    return me


def compare_pwm(root: Path, rows: list[dict], speed: dict) -> None:
    from pwmbench import api

    torch.manual_seed(0)
    obs_dim, act_dim, H, B = 37, 8, 16, 64  # dflex Ant's widths, PWM's horizon
    theirs = pwm_world_model(root, obs_dim, act_dim, 512, [512, 512], [256])
    randomise(theirs, 0)
    ours = api.build_world_model("pwm", obs_dim=obs_dim, act_dim=act_dim)
    report = api.import_world_model(theirs.state_dict(), ours, "pwm")
    obs, act = torch.randn(H + 1, B, obs_dim), torch.rand(H, B, act_dim) * 2 - 1
    rew = torch.randn(H, B)
    z_t, z_o = theirs.encode(obs[0], None), ours.encode(obs[0])
    rows.append(row("1. PWM world model imported: encode", diff(z_t, z_o), TOL["forward"], f"{len(report['loaded'])} tensors"))
    rows.append(row("1. PWM world model imported: next", diff(theirs.next(z_t, act[0], None), ours.next(z_o, act[0])), TOL["forward"]))
    rows.append(row("1. PWM world model imported: reward", diff(theirs.reward(z_t, act[0], None).squeeze(-1), ours.predict_reward(z_o, act[0])), TOL["forward"]))

    loss_fn = pwm_loss_function(root)
    me = SimpleNamespace(horizon=H, gamma=0.99, device="cpu", latent_dim=512, wm=theirs)
    total_t = loss_fn(me, obs, act, rew.unsqueeze(-1))[0]
    losses = ours.loss(obs, act, rew, rho=0.99)
    rows.append(row("2. world-model loss (PWM compute_wm_loss vs pwmbench)", abs(float(total_t.detach()) - float(losses.wm_loss.detach())), TOL["loss"]))
    theirs.zero_grad(), ours.zero_grad()
    total_t.backward(), losses.wm_loss.backward()
    from pwmbench.nn.checkpoint_import import _rename

    mine = dict(ours.named_parameters())
    worst = max(diff(p.grad, mine[_rename(n)].grad) for n, p in theirs.named_parameters() if p.grad is not None)
    rows.append(row("2. world-model gradients, every parameter", worst, TOL["grad"]))

    # 5. speed: one update each, interleaved
    opt_t, opt_o = torch.optim.Adam(theirs.parameters(), lr=3e-4), torch.optim.Adam(ours.parameters(), lr=3e-4)

    def update_theirs():
        loss = loss_fn(me, obs, act, rew.unsqueeze(-1))[0]
        opt_t.zero_grad(), loss.backward(), torch.nn.utils.clip_grad_norm_(theirs.parameters(), 20.0), opt_t.step()

    def update_ours():
        loss = ours.loss(obs, act, rew, rho=0.99).wm_loss
        opt_o.zero_grad(), loss.backward(), torch.nn.utils.clip_grad_norm_(ours.parameters(), 20.0), opt_o.step()

    times: dict[str, list[float]] = {"pwm": [], "pwmbench": []}
    for _ in range(2):
        update_theirs(), update_ours()  # warm-up
    for _ in range(15):
        for name, fn in (("pwm", update_theirs), ("pwmbench", update_ours)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    speed["world-model update, pwm preset (B=64, H=16), 15 each"] = {k: statistics.median(v) for k, v in times.items()}

    # 3. D1 on a pwm_5M-shaped multitask model: 101 bins, task embedding (columns permuted by the importer)
    n, t_dim = 3, 16
    theirs_mt = pwm_world_model(root, 24, 6, 64, [128, 128], [128], num_bins=101, tasks=list(range(n)), task_dim=t_dim)
    randomise(theirs_mt, 1)
    ours_mt = api.build_world_model("pwm_5M", obs_dim=24, act_dim=6, n_tasks=n, task_dim=t_dim, units=[128, 128], encoder_units=[128], latent_dim=64)
    api.import_world_model(theirs_mt.state_dict(), ours_mt, "pwm")
    task = torch.tensor([0, 1, 2, 1])
    o, a = torch.randn(4, 24), torch.rand(4, 6) * 2 - 1
    z_t, z_o = theirs_mt.encode(o, task), ours_mt.encode(o, task)
    rows.append(row("3. D1: multitask next (columns permuted)", diff(theirs_mt.next(z_t, a, task), ours_mt.next(z_o, a, task)), TOL["forward"]))
    r_t = theirs_mt.almost_two_hot_inv(theirs_mt.reward(z_t, a, task)).squeeze(-1)
    rows.append(row("3. D1: actor reward, PWM almost_two_hot_inv vs pwmbench pwm-code", diff(r_t, ours_mt.step(z_o, a, task, reward_decode="pwm-code")[1]), TOL["decode"]))
    rows.append(row("3. D1: the same with symexp (what pwmbench used before)", diff(r_t, ours_mt.step(z_o, a, task, reward_decode="symexp")[1]), float("inf"),
                    "differs by design: shows the size of D1"))  # fmt: skip


# ----------------------------------------------------------------------------------- PWM's multitask policy update
class _StartStates:
    """Stands in for pwmbench's dataset: hands TaskPolicy the start states PWM's `update` gets as obs[0]."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.batches, self.task_ids, self.directory = list(batches), [0, 1, 2], "(side-by-side batches)"

    def start_states(self, count: int, task: int, generator, horizon: int = 1) -> torch.Tensor:
        return self.batches.pop(0)


def copy_actor_critic(theirs_actor, theirs_critic, ours) -> None:
    """PWM's ActorStochasticMLP (mu_net, logstd) and vmapped critic Ensemble (params.k stacked over critics) into
    pwmbench's Actor (mu, logstd) and CriticEnsemble (critics.i): the same layers in the same order."""
    with torch.no_grad():
        ours.actor.logstd.copy_(theirs_actor.logstd)
        for (n_t, p_t), (n_o, p_o) in zip(theirs_actor.mu_net.named_parameters(), ours.actor.mu.named_parameters(), strict=True):
            assert n_t == n_o and p_t.shape == p_o.shape, (n_t, n_o)
            p_o.copy_(p_t)
        for i, critic in enumerate(ours.critic.critics):
            for k, p_o in enumerate(critic.parameters()):
                p_o.copy_(theirs_critic.params[k][i])


def compare_policy_iteration(root: Path, rows: list[dict], speed: dict, iterations: int = 5) -> None:
    """D1 and D7 in the running algorithm: `iterations` of PWM's multitask `update` (finetune_wm False, as its
    MT30/MT80 runs; lr schedule `update_lrs`) against pwmbench's `TaskPolicy.train_iteration`, weights copied, the
    same start states and the same actor noise (the RNG seeded alike before each side)."""
    from pwm.models.actor import ActorStochasticMLP
    from pwm.models.critic import CriticMLP
    from pwm.models.model_utils import Ensemble
    from pwm.utils import torch_utils
    from pwm.utils.common import filter_dict, print_error, print_warning
    from pwm.utils.dataset import CriticDataset
    from pwm.utils.running_mean_std import RunningMeanStd

    from pwmbench import api
    from pwmbench.pwm.config import resolve_config
    from pwmbench.pwm.multitask import TaskPolicy

    n, t_dim, obs_dim, act_dim, latent, H, B, task_id = 3, 16, 24, 6, 64, 16, 64, 1
    cfg = resolve_config({"preset": "pwm_5M", "horizon": H, "policy_batch_size": B, "max_epochs": 100, "eval_every": 0,
                          "world_model": {"units": [128, 128], "encoder_units": [128], "latent_dim": latent}})  # fmt: skip
    theirs_wm = pwm_world_model(root, obs_dim, act_dim, latent, [128, 128], [128], num_bins=101, tasks=list(range(n)), task_dim=t_dim)
    randomise(theirs_wm, 3)
    mish = torch.nn.Mish
    torch.manual_seed(4)
    actor = ActorStochasticMLP(latent, act_dim, list(cfg.actor_units), activation_class=mish, init_gain=1.0, init_logstd=cfg.init_logstd, min_logstd=cfg.min_logstd)
    critic = Ensemble([CriticMLP(latent, list(cfg.critic_units), activation_class=mish) for _ in range(cfg.num_critics)])
    methods = pwm_methods(root, ["update", "compute_actor_loss", "compute_target_values", "compute_critic_loss", "update_lrs"],
                          {"clip_grad_norm_": torch.nn.utils.clip_grad_norm_, "tu": torch_utils, "CriticDataset": CriticDataset,
                           "filter_dict": filter_dict, "print_error": print_error, "print_warning": print_warning})  # fmt: skip
    me = bind(SimpleNamespace(
        env=None, wm=theirs_wm, actor=actor, critic=critic, horizon=H, latent_dim=latent, device=torch.device("cpu"), detach=cfg.detach,
        gamma=cfg.gamma, lam=cfg.lam, critic_method="td-lambda", critic_iterations=cfg.critic_iterations, critic_batches=cfg.critic_batches,
        actor_grad_norm=cfg.actor_grad_norm, critic_grad_norm=cfg.critic_grad_norm, obs_rms=None,
        ret_rms=RunningMeanStd(shape=(1,), device="cpu"), step_count=0, lr_schedule="linear", max_epochs=cfg.max_epochs,
        actor_lr=cfg.actor_lr, critic_lr=cfg.critic_lr, model_lr=cfg.model_lr,
        actor_optimizer=torch.optim.Adam(actor.parameters(), cfg.actor_lr, cfg.betas),
        critic_optimizer=torch.optim.Adam(critic.parameters(), cfg.critic_lr, cfg.betas),
        wm_optimizer=torch.optim.Adam(theirs_wm.parameters(), lr=cfg.model_lr),
    ), methods)  # fmt: skip

    g = torch.Generator().manual_seed(5)
    starts = [torch.randn(B, obs_dim, generator=g) for _ in range(iterations)]
    taskset = SimpleNamespace(spec=SimpleNamespace(act_dim=act_dim), tasks=["a", "b", "c"])
    policies = {}
    for decode in ("pwm-code", "symexp"):
        wm = api.build_world_model("pwm_5M", obs_dim=obs_dim, act_dim=act_dim, n_tasks=n, task_dim=t_dim, **cfg.world_model)
        api.import_world_model(theirs_wm.state_dict(), wm, "pwm")
        policy = TaskPolicy(taskset, task_id, wm, _StartStates(starts), dataclasses.replace(cfg, actor_reward_decode=decode), seed=0)
        copy_actor_critic(actor, critic, policy)
        policies[decode] = policy
    task = torch.full((B,), task_id)
    obs_windows = [torch.cat([s.unsqueeze(0), torch.zeros(H, B, obs_dim)]) for s in starts]  # update() reads obs[0] only
    theirs_rows, ours_rows, symexp_rows, t_pwm, t_ours = [], [], [], [], []
    for i in range(iterations):
        me.update_lrs(i)
        torch.manual_seed(100 + i)
        start = time.perf_counter()
        theirs_rows.append(me.update(obs_windows[i], None, None, task, False))
        t_pwm.append(time.perf_counter() - start)
        torch.manual_seed(100 + i)
        start = time.perf_counter()
        ours_rows.append(policies["pwm-code"].train_iteration())
        t_ours.append(time.perf_counter() - start)
        torch.manual_seed(100 + i)
        symexp_rows.append(policies["symexp"].train_iteration())
    ours = policies["pwm-code"]
    worst = lambda key: max(abs(t[key] - o[key]) for t, o in zip(theirs_rows, ours_rows, strict=True))
    rows.append(row(f"5. D1/D7: actor loss, {iterations} multitask policy iterations (PWM update vs pwmbench TaskPolicy)", worst("actor_loss"), 1e-4))
    norm_rel = max(abs(t["actor_grad_norm"] - o["actor_grad_norm"]) / t["actor_grad_norm"] for t, o in zip(theirs_rows, ours_rows, strict=True))
    rows.append(row("5. D1/D7: actor gradient norm before clipping (relative)", norm_rel, 1e-5, f"PWM's first: {theirs_rows[0]['actor_grad_norm']:.4g}"))
    rows.append(row("5. D7: value_loss (mean over every critic pass, as PWM logs it)", worst("value_loss"), 1e-4))
    actor_diff = max(diff(p_t, p_o) for p_t, p_o in zip(me.actor.mu_net.parameters(), ours.actor.mu.parameters(), strict=True))
    rows.append(row("5. D1/D7: actor parameters after the iterations", max(actor_diff, diff(me.actor.logstd, ours.actor.logstd)), 1e-4))
    critic_diff = max(diff(me.critic.params[k][i], p) for i, c in enumerate(ours.critic.critics) for k, p in enumerate(c.parameters()))
    rows.append(row("5. D7: critic parameters after the iterations", critic_diff, 1e-4))
    rel = max(abs(s["actor_loss"] - t["actor_loss"]) / abs(t["actor_loss"]) for s, t in zip(symexp_rows, theirs_rows, strict=True))
    rows.append(row("5. D1: the same with actor_reward_decode = symexp (relative actor-loss difference)", rel, float("inf"), "differs by design: the size of D1 in the update"))
    speed[f"multitask policy iteration (B={B}, H={H}, latent {latent}), {iterations} each"] = {"pwm": statistics.median(t_pwm), "pwmbench": statistics.median(t_ours)}


# ------------------------------------------------------------------------------------- PWM's checkpoint (D6)
def compare_checkpoint(root: Path, rows: list[dict], tmp: Path) -> None:
    """D6: PWM's `save` and `load` (compiled from its source) on a single-task agent that has taken one update with
    the world model fine-tuned; the agent loaded into fresh weights must take its next update exactly as the one
    that saved. Then: which parts PWM's `load` restores, and whether pwmbench's `pretrain_checkpoint` restores each."""
    from pwm.models.actor import ActorStochasticMLP
    from pwm.models.critic import CriticMLP
    from pwm.models.model_utils import Ensemble
    from pwm.utils import torch_utils
    from pwm.utils.common import filter_dict, print_error, print_warning
    from pwm.utils.dataset import CriticDataset

    from pwmbench.pwm.pretrain import AGENT_PARTS

    obs_dim, act_dim, latent, H, B = 11, 3, 64, 8, 32  # Hopper's widths
    names = ["update", "compute_actor_loss", "compute_target_values", "compute_critic_loss", "compute_wm_loss", "save", "load"]
    methods = pwm_methods(root, names, {"clip_grad_norm_": torch.nn.utils.clip_grad_norm_, "tu": torch_utils, "CriticDataset": CriticDataset,
                                        "filter_dict": filter_dict, "print_error": print_error, "print_warning": print_warning, "os": os})  # fmt: skip

    def agent(seed: int) -> SimpleNamespace:
        torch.manual_seed(seed)
        wm = pwm_world_model(root, obs_dim, act_dim, latent, [128, 128], [128])
        randomise(wm, seed)
        actor = ActorStochasticMLP(latent, act_dim, [64, 64], activation_class=torch.nn.Mish, init_gain=1.0, init_logstd=-1.0, min_logstd=-1.427)
        critic = Ensemble([CriticMLP(latent, [64, 64], activation_class=torch.nn.Mish) for _ in range(3)])
        return bind(SimpleNamespace(
            env=None, wm=wm, actor=actor, critic=critic, horizon=H, latent_dim=latent, device=torch.device("cpu"), detach=True, gamma=0.99,
            lam=0.95, critic_method="td-lambda", critic_iterations=2, critic_batches=4, actor_grad_norm=1.0, critic_grad_norm=100.0, wm_grad_norm=20.0,
            obs_rms=None, rew_rms=None, ret_rms=None, step_count=0, log_dir=str(tmp), actor_lr=2e-3, critic_lr=2e-3, model_lr=2e-3,
            actor_optimizer=torch.optim.Adam(actor.parameters(), 2e-3, (0.7, 0.95)), critic_optimizer=torch.optim.Adam(critic.parameters(), 2e-3, (0.7, 0.95)),
            wm_optimizer=torch.optim.Adam([{"params": wm._encoder.parameters()}, {"params": wm._dynamics.parameters()}, {"params": wm._reward.parameters()}], lr=2e-3),
        ), methods)  # fmt: skip

    g = torch.Generator().manual_seed(6)
    batches = [(torch.randn(H + 1, B, obs_dim, generator=g), torch.rand(H, B, act_dim, generator=g) * 2 - 1, torch.randn(H, B, 1, generator=g)) for _ in range(2)]
    saver = agent(0)
    torch.manual_seed(10)
    saver.update(*batches[0], None, True)
    for group in (*saver.actor_optimizer.param_groups, *saver.critic_optimizer.param_groups, *saver.wm_optimizer.param_groups):
        group["lr"] *= 0.5  # a decayed schedule: the learning rates must come back too
    saver.save("d6")
    loaded = agent(1)
    loaded.load(str(tmp / "d6.pt"))
    fresh = agent(1)  # PWM's weights, a fresh optimiser: what pwmbench restored before W12
    fresh.wm.load_state_dict(saver.wm.state_dict())
    start = {k: v.clone() for k, v in saver.wm.state_dict().items()}
    for a in (saver, loaded, fresh):
        torch.manual_seed(11)
        a.update(*batches[1], None, True)
    after = lambda a: max(diff(p, q) for p, q in zip(a.wm.parameters(), saver.wm.parameters(), strict=True))
    actor_after = max(diff(p, q) for p, q in zip(loaded.actor.parameters(), saver.actor.parameters(), strict=True))
    rows.append(row("7. D6: PWM's save → load → next update, vs the agent that saved (world model, actor)", max(after(loaded), actor_after), 1e-6))
    moved = lambda a: sum(float((v - start[k]).norm()) for k, v in a.wm.state_dict().items())
    rows.append(row(f"7. D6: with a fresh Adam instead, the first world-model step moves {moved(fresh) / moved(saver):.1f}× as far", moved(fresh) / moved(saver), float("inf"),
                    "differs by design: what pwmbench restored before W12"))  # fmt: skip
    written = set(torch.load(tmp / "d6.pt", weights_only=False))
    (tmp / "d6.pt").unlink()
    pwmbench_names = {"world_model": "wm", "world_model_opt": "wm_opt", "obs_rms": "obs_rms", "rew_rms": "rew_rms"}
    restored = set(AGENT_PARTS) | {"wm", "obs_rms", "rew_rms"}
    missing = sorted(k for k in written if pwmbench_names.get(k, k) not in restored)
    rows.append(row(f"7. D6: parts PWM's checkpoint restores ({len(written)}) that pwmbench's pretrain_checkpoint does not", float(len(missing)), 0.0,
                    ", ".join(missing) or "none; learning rates travel in the optimisers' state"))  # fmt: skip


# ------------------------------------------------------------------------------------------------ PWM's buffer
def pwm_buffer(capacity: int, batch: int, horizon: int):
    """PWM's `Buffer` on this CPU: storage in CPU memory (its `_init` asks CUDA how much memory is free) and
    pin_memory off (pinning needs an accelerator; it changes where a batch lives, not which windows it holds).
    The SliceSampler, prefetch=12 and `add`/`add_batch`/`sample` are PWM's and torchrl's own."""
    import pwm.utils.buffer as pwm_buffer_module
    from torchrl.data.replay_buffers import LazyTensorStorage, ReplayBuffer

    pwm_buffer_module.ReplayBuffer = lambda *a, pin_memory=False, **k: ReplayBuffer(*a, pin_memory=False, **k)
    buf = pwm_buffer_module.Buffer(capacity, batch, horizon, "cpu")
    buf._init = lambda td: buf._reserve_buffer(LazyTensorStorage(capacity, device=torch.device("cpu")))
    return buf


def labelled_episodes(n: int, length: int, first: int = 0):
    """n episodes whose observation is (episode id, entry index): every sampled window says where it came from."""
    t = torch.arange(length, dtype=torch.float32).expand(n, length)
    e = torch.arange(first, first + n, dtype=torch.float32)[:, None].expand(n, length)
    return torch.stack([e, t], -1), torch.zeros(n, length, 1), torch.zeros(n, length)


def compare_buffer(rows: list[dict], tmp: Path) -> None:
    """D3, D4, D5 against PWM's replay buffer (torchrl's SliceSampler; needs torchrl importable)."""
    from tensordict import TensorDict

    from pwmbench.data.chunks import write_chunk
    from pwmbench.data.dataset import OfflineDataset
    from pwmbench.pwm.buffer import SequenceBuffer

    H, L, N = 16, 101, 1000  # Meta-World's 101 entries per episode; PWM's horizon
    obs, act, rew = labelled_episodes(N, L)
    # D4: add_batch of N episodes that all fit
    theirs = pwm_buffer(N * L, 64, H)
    theirs.add_batch(TensorDict({"obs": obs, "action": act, "reward": rew, "task": torch.zeros(N, L, dtype=torch.long)}, (N, L)))
    distinct_t = theirs._buffer[: N * L]["obs"][:, 0].unique().numel()
    ours = SequenceBuffer(1, N * L, 2, 1)
    ours.add_episodes(obs, act, rew, torch.full((N,), L))
    distinct_o = int(ours.obs[: N * L, 0].unique().numel())
    rows.append(row(f"6. D4: distinct episodes after loading {N} that all fit (PWM add_batch {distinct_t}, pwmbench {distinct_o})", abs(distinct_t - distinct_o), float("inf"),
                    "differs by design: PWM resamples with replacement; pwmbench loads each episode once"))  # fmt: skip

    # D5: start states of multitask policy learning: obs[0] of PWM's (H+1)-windows vs pwmbench's start_states
    starts_t = set()
    for _ in range(200):
        starts_t |= set(next(iter(theirs.sample()))[0, :, 1].long().tolist())
    data_dir = tmp / "d5_chunks"
    data_dir.mkdir(parents=True, exist_ok=True)
    act_nan, rew_nan = act.clone(), rew.clone()
    act_nan[:, 0], rew_nan[:, 0] = float("nan"), float("nan")  # TD-MPC2's layout: entry 0 has no action or reward
    write_chunk(data_dir / "chunk_0.pt", obs[:200], act_nan[:200], rew_nan[:200], torch.zeros(200, L, dtype=torch.long))
    g = torch.Generator().manual_seed(0)
    data = OfflineDataset(data_dir)
    starts_o = set()
    for _ in range(200):
        starts_o |= set(data.start_states(64, 0, g, horizon=H)[:, 1].long().tolist())
    rows.append(row(f"6. D5: start-state entries, PWM obs[0] vs pwmbench start_states (both {min(starts_o)}..{max(starts_o)} of {L})",
                    float(len(starts_t ^ starts_o)), 0.0, "entries in one set and not the other"))  # fmt: skip

    # D3: prefetch lag: episodes arrive one by one (PWM's online `add`); when does a new one first appear in a batch?
    def lag(add, sample) -> int:
        for e in range(3):
            add(e)
        sample()
        add(3)
        for call in range(1, 40):
            if 3 in sample():
                return call
        return 40

    theirs_online = pwm_buffer(50 * L, 64, H)

    def add_t(e: int) -> None:
        o, a, r = labelled_episodes(1, L, e)
        theirs_online.add(TensorDict({"obs": o[0], "action": a[0], "reward": r[0], "term": torch.zeros(L, dtype=torch.bool)}, (L,)))

    ours_online = SequenceBuffer(1, 50 * L, 2, 1)
    lag_t = lag(add_t, lambda: set(next(iter(theirs_online.sample()))[0, :, 0].long().tolist()))
    lag_o = lag(lambda e: ours_online.add_episodes(*labelled_episodes(1, L, e), torch.tensor([L])),
                lambda: set(ours_online.sample(64, H, g)[0][0, :, 0].long().tolist()))  # fmt: skip
    rows.append(row(f"6. D3: sample() calls until a finished episode first appears (PWM {lag_t}, pwmbench {lag_o})", float(lag_t - lag_o), float("inf"),
                    "differs by design: PWM's buffer prefetches 12 batches"))  # fmt: skip


# --------------------------------------------------------------------------------------------------------- TD-MPC2
def compare_tdmpc2(root: Path, rows: list[dict], tmp: Path) -> None:
    from pwmbench import api

    sys.path.insert(0, str(root / "tdmpc2"))
    from common.world_model import WorldModel

    n, t_dim, obs_dim, act_dim, latent, mlp_dim = 4, 16, 24, 6, 64, 128
    cfg = SimpleNamespace(multitask=True, tasks=list(range(n)), task_dim=t_dim, action_dim=act_dim, action_dims=[6, 4, 2, 1], latent_dim=latent,
                          mlp_dim=mlp_dim, num_bins=101, episodic=False, num_q=5, dropout=0.01, simnorm_dim=8, obs_shape={"state": (obs_dim,)},
                          num_enc_layers=2, enc_dim=128, log_std_min=-10, log_std_max=2, vmin=-10, vmax=10, obs="state", bin_size=20 / 100)  # fmt: skip
    torch.manual_seed(1)
    theirs = WorldModel(cfg)
    randomise(theirs, 2)
    path = tmp / "tdmpc2_mt.pt"
    torch.save({"model": theirs.state_dict()}, path)  # as TD-MPC2's save()
    ours = api.build_world_model("pwm_5M", obs_dim=obs_dim, act_dim=act_dim, n_tasks=n, task_dim=t_dim, action_dims=cfg.action_dims,
                                 units=[mlp_dim, mlp_dim], encoder_units=[128], latent_dim=latent)  # fmt: skip
    report = api.import_world_model(api.read_checkpoint(path), ours, "tdmpc2")
    task = torch.tensor([0, 1, 2, 3, 2])
    o, a = torch.randn(5, obs_dim), torch.rand(5, act_dim) * 2 - 1
    with torch.no_grad():
        z_t, z_o = theirs.encode(o, task), ours.encode(o, task)
        rows.append(row("4. TD-MPC2 checkpoint imported: encode", diff(z_t, z_o), TOL["forward"], f"left out: {len(report['left_out'])} tensors (Q ensemble, policy prior, log-std buffers)"))
        a_masked = a * theirs._action_masks[task]  # TD-MPC2 masks actions in its agent, pwmbench inside the world model
        rows.append(row("4. TD-MPC2 checkpoint imported: next", diff(theirs.next(z_t, a_masked, task), ours.next(z_o, a, task)), TOL["forward"]))
        rows.append(row("4. TD-MPC2 checkpoint imported: reward logits", diff(theirs.reward(z_t, a_masked, task), ours.reward_out(z_o, a, task)), TOL["forward"]))


def tdmpc2_agent(cfg: SimpleNamespace, seed: int):
    """TD-MPC2's agent on this CPU: its class, its `_update`, `update_pi`, `_td_target` and `_get_discount`, with
    the parts of `__init__` that hard-code cuda:0 redone here — the same optimiser groups and learning rates without
    `capturable` (a CUDA-graph option), its RunningScale's buffers on the CPU."""
    from common.scale import RunningScale
    from common.world_model import WorldModel
    from tdmpc2 import TDMPC2

    torch.manual_seed(seed)
    agent = TDMPC2.__new__(TDMPC2)
    torch.nn.Module.__init__(agent)
    agent.cfg, agent.device = cfg, torch.device("cpu")
    agent.model = WorldModel(cfg)
    randomise(agent.model, seed)  # TD-MPC2 zero-inits the reward and Q heads' last layers: a vacuous comparison otherwise
    agent.model._target_Qs_params.data.copy_(agent.model._Qs.params.data)
    m = agent.model
    agent.optim = torch.optim.Adam([{"params": m._encoder.parameters(), "lr": cfg.lr * cfg.enc_lr_scale}, {"params": m._dynamics.parameters()},
                                    {"params": m._reward.parameters()}, {"params": []}, {"params": m._Qs.parameters()},
                                    {"params": m._task_emb.parameters()}], lr=cfg.lr)  # fmt: skip
    agent.pi_optim = torch.optim.Adam(m._pi.parameters(), lr=cfg.lr, eps=1e-5)
    agent.model.eval()
    scale = RunningScale.__new__(RunningScale)
    torch.nn.Module.__init__(scale)
    scale.cfg, scale.value, scale._percentiles = cfg, torch.nn.Buffer(torch.ones(1)), torch.nn.Buffer(torch.tensor([5.0, 95.0]))
    agent.scale = scale
    agent.discount = torch.tensor([agent._get_discount(length) for length in cfg.episode_lengths])
    return agent


def recipe_head_pairs(agent, trainer, latent: int, task_dim: int):
    """(pwmbench parameter, TD-MPC2's value for it) for the Q ensemble (online and target; TD-MPC2's input
    [z, emb, a] vmapped, pwmbench's [z, a, emb] head by head: first-layer columns permuted, as the importer does)
    and the policy prior."""
    m = agent.model

    def permute(w: torch.Tensor) -> torch.Tensor:
        return torch.cat((w[:, :latent], w[:, latent + task_dim :], w[:, latent : latent + task_dim]), dim=1)

    for ours, params in ((trainer.q, m._Qs.params), (trainer.target_q, m._target_Qs_params)):
        for k, head in enumerate(ours.heads):
            for name, p in head.named_parameters():
                value = params[tuple(name.split("."))][k]
                yield p, permute(value) if name == "0.weight" else value
    pi = dict(m._pi.named_parameters())
    for name, p in trainer.pi.named_parameters():
        yield p, pi[name.removeprefix("net.")]


def copy_recipe_heads(agent, trainer, latent: int, task_dim: int) -> None:
    with torch.no_grad():
        for ours, theirs in recipe_head_pairs(agent, trainer, latent, task_dim):
            ours.copy_(theirs)


def compare_tdmpc2_update(root: Path, rows: list[dict]) -> None:
    """D2: two TD-MPC2 `_update`s against two pwmbench `RecipeTrainer.step`s ("tdmpc2" recipe), weights copied, the
    same batches and RNG, Q dropout 0 on both sides (TD-MPC2 draws dropout masks for its vmapped heads at once,
    pwmbench head by head: the same distribution, not the same draws). TD-MPC2 runs twice: as written (the policy
    prior's gradient on the task embedding stays and enters update 2) and with that leftover gradient cleared."""
    from pwmbench import api
    from pwmbench.pwm.recipes import TDMPC2, RecipeTrainer, task_discounts

    sys.path.insert(0, str(root / "tdmpc2"))
    n, t_dim, obs_dim, act_dim, latent, mlp_dim, B = 4, 16, 24, 6, 64, 128, 32
    lengths = [500, 500, 100, 100]  # DMC and Meta-World members: per-task discounts 0.99 and 0.95
    cfg = SimpleNamespace(multitask=True, tasks=list(range(n)), task_dim=t_dim, action_dim=act_dim, action_dims=[act_dim] * n, latent_dim=latent,
                          mlp_dim=mlp_dim, num_bins=101, episodic=False, num_q=5, dropout=0.0, simnorm_dim=8, obs_shape={"state": (obs_dim,)},
                          num_enc_layers=2, enc_dim=128, log_std_min=-10, log_std_max=2, vmin=-10, vmax=10, obs="state", bin_size=20 / 100,
                          lr=3e-4, enc_lr_scale=0.3, grad_clip_norm=20, rho=0.5, horizon=3, batch_size=B, consistency_coef=20, reward_coef=0.1,
                          value_coef=0.1, termination_coef=1, entropy_coef=1e-4, tau=0.01, discount_denom=5, discount_min=0.95,
                          discount_max=0.995, episode_lengths=lengths, compile=False)  # fmt: skip
    agents = {"as written": tdmpc2_agent(cfg, 7), "leftover cleared": tdmpc2_agent(cfg, 7)}
    wm = api.build_world_model("pwm_5M", obs_dim=obs_dim, act_dim=act_dim, n_tasks=n, task_dim=t_dim, units=[mlp_dim, mlp_dim], encoder_units=[128], latent_dim=latent)
    api.import_world_model(agents["as written"].model.state_dict(), wm, "tdmpc2")
    recipe = dataclasses.replace(TDMPC2, q_dropout=0.0)
    trainer = RecipeTrainer(wm, recipe, discounts=task_discounts(lengths, recipe))
    copy_recipe_heads(agents["as written"], trainer, latent, t_dim)
    g = torch.Generator().manual_seed(8)
    batches = [(torch.randn(4, B, obs_dim, generator=g), torch.rand(3, B, act_dim, generator=g) * 2 - 1, torch.randn(3, B, generator=g),
                torch.randint(0, n, (B,), generator=g)) for _ in range(2)]  # fmt: skip
    results: dict[str, list[dict]] = {name: [] for name in (*agents, "pwmbench")}
    snapshot: dict[str, dict] = {}
    for i, (obs, act, rew, task) in enumerate(batches):
        for name, agent in agents.items():
            if i == 1 and name == "leftover cleared":
                agent.model._task_emb.weight.grad = None
            torch.manual_seed(20 + i)
            out = agent._update(obs, act, rew.unsqueeze(-1), torch.zeros(3, B, 1), task)
            results[name].append({k: float(v) for k, v in out.items()})
        torch.manual_seed(20 + i)
        results["pwmbench"].append(trainer.step(obs, act, rew, task, lambda *_: None))
        if i == 0:
            snapshot = {name: {k: v.detach().clone() for k, v in a.model.state_dict().items()} for name, a in agents.items()}
            snapshot["pwmbench"] = {k: v.clone() for k, v in trainer.wm.state_dict().items()}

    def param_diff(agent_state: dict, only: str | None = None, mine: dict | None = None) -> float:
        ours = api.build_world_model("pwm_5M", obs_dim=obs_dim, act_dim=act_dim, n_tasks=n, task_dim=t_dim, units=[mlp_dim, mlp_dim], encoder_units=[128], latent_dim=latent)
        api.import_world_model(agent_state, ours, "tdmpc2")
        mine, theirs = mine or trainer.wm.state_dict(), ours.state_dict()
        return max(diff(mine[k], theirs[k]) for k in theirs if k != "action_masks" and (only is None or k.startswith(only)))

    names = {"consistency_loss": "dynamics_loss", "reward_loss": "reward_loss", "value_loss": "value_loss", "pi_loss": "pi_loss"}
    coef = {"consistency_loss": 20.0, "reward_loss": 0.1, "value_loss": 0.1, "pi_loss": 1.0}  # pwmbench logs the weighted terms
    first = max(abs(results["as written"][0][t] * coef[t] - results["pwmbench"][0][o]) for t, o in names.items())
    rows.append(row("8. D2: TD-MPC2 _update vs pwmbench tdmpc2 recipe, update 1: consistency, reward, value, prior losses", first, 1e-5))
    rows.append(row("8. D2: world model after update 1 (every tensor)", param_diff(snapshot["as written"], mine=snapshot["pwmbench"]), 1e-5))
    current = {name: {k: v.detach().clone() for k, v in a.model.state_dict().items()} for name, a in agents.items()}
    rows.append(row("8. D2: task embedding after update 2, TD-MPC2 as written (the prior's gradient carried over)", param_diff(current["as written"], "task_embedding"),
                    float("inf"), "differs by design: pwmbench never lets the prior's gradient into the world model"))  # fmt: skip
    rows.append(row("8. D2: world model after update 2, TD-MPC2 with that leftover gradient cleared (every tensor)", param_diff(current["leftover cleared"]), 1e-5))
    heads = max(diff(o, t) for o, t in recipe_head_pairs(agents["leftover cleared"], trainer, latent, t_dim))
    rows.append(row("8. D2: Q heads, target Qs and policy prior after update 2 (the same run)", heads, 1e-5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pwm", type=Path, default=None, help="imgeorgiev/PWM checkout (its root)")
    ap.add_argument("--tdmpc2", type=Path, default=None, help="nicklashansen/tdmpc2 checkout (its root)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "pwm_side_by_side")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows: list[dict] = []
    speed: dict = {}
    skipped = []
    if args.pwm and (args.pwm / "src" / "pwm" / "models" / "world_model.py").is_file():
        compare_pwm(args.pwm, rows, speed)
        compare_policy_iteration(args.pwm, rows, speed)
        args.out.mkdir(parents=True, exist_ok=True)
        compare_checkpoint(args.pwm, rows, args.out)
        if importlib.util.find_spec("torchrl") is not None:
            compare_buffer(rows, args.out)
        else:
            skipped.append("PWM's buffer (D3, D4, D5): torchrl is not importable (`pip install --no-deps --target DIR torchrl`, then PYTHONPATH=DIR)")
    else:
        skipped.append(f"PWM: no checkout at {args.pwm} (give --pwm DIR, the imgeorgiev/PWM root)")
    if args.tdmpc2 and (args.tdmpc2 / "tdmpc2" / "common" / "world_model.py").is_file():
        args.out.mkdir(parents=True, exist_ok=True)
        compare_tdmpc2(args.tdmpc2, rows, args.out)
        compare_tdmpc2_update(args.tdmpc2, rows)
        (args.out / "tdmpc2_mt.pt").unlink(missing_ok=True)
    else:
        skipped.append(f"TD-MPC2: no checkout at {args.tdmpc2} (give --tdmpc2 DIR, the nicklashansen/tdmpc2 root)")
    for s in skipped:
        print(f"skipped — {s}")
    if not rows:
        return
    from pwmbench.results.provenance import cpu_model

    rows.sort(key=lambda r: int(r["comparison"].split(".")[0]))  # by comparison number (the sections run PWM first, TD-MPC2 second)

    machine = f"{cpu_model() or platform.machine()} · {os.cpu_count()} CPUs · torch {torch.__version__} · one thread · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · load average {os.getloadavg()[0]:.1f}"
    lines = ["# pwmbench beside PWM's and TD-MPC2's own code", "", machine, "", "| comparison | max abs difference | tolerance | ok | note |", "|---|---|---|---|---|"]
    lines += [f"| {r['comparison']} | {r['max_abs_diff']:.3g} | {r['tolerance']:g} | {'yes' if r['ok'] else '**no**'} | {r['note']} |" for r in rows]
    if speed:
        lines += ["", "| update | PWM (s, median) | pwmbench (s, median) | pwmbench / PWM |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['pwm']:.4f} | {v['pwmbench']:.4f} | {v['pwmbench'] / v['pwm']:.2f} |" for k, v in speed.items()]
    lines += ["", *[f"Skipped: {s}" for s in skipped]]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    (args.out / "summary.json").write_text(json.dumps({"machine": machine, "rows": rows, "speed": speed, "skipped": skipped}, indent=1, default=str) + "\n")
    print("\n".join(lines))
    if not all(r["ok"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
