"""pwmbench beside PWM's and TD-MPC2's own code, weights copied across, every comparison printed with its tolerance.

The two code bases are never vendored: name their checkouts (`--pwm DIR`, the imgeorgiev/PWM repository root;
`--tdmpc2 DIR`, the nicklashansen/tdmpc2 root) and the script imports their modules from there — PWM's world model
needs `hydra-core` importable, TD-MPC2's `tensordict`. A missing directory skips its comparisons with a message.
PWM's world-model loss is a method of its algorithm class, whose module needs gym, wandb and torchrl; the script
compiles that one function from PWM's source file (`ast`) instead of importing the module.

Comparisons (each: max |difference| and the tolerance it must stay under):
1. PWM's single-task world model (`pwm` preset sizes) imported into pwmbench (`api.import_world_model`, source "pwm"):
   encode, next, reward agree;
2. PWM's `compute_wm_loss` vs pwmbench's world-model loss on the same batch: losses and every parameter's gradient;
3. D1: PWM's multitask actor reward (`almost_two_hot_inv` of its 101-bin head) vs pwmbench's
   `step(..., reward_decode="pwm-code")` on a `pwm_5M`-shaped multitask model (input columns permuted by the importer);
4. TD-MPC2's multitask world model saved as its `save` writes it, read and imported (source "tdmpc2"): encode, next,
   reward logits agree;
5. speed: one world-model update (loss, backward, clip 20, Adam) of each side, interleaved, one thread: time ratio.

    python benchmarks/pwm_side_by_side.py --pwm ~/src/PWM --tdmpc2 ~/src/tdmpc2     # writes benchmarks/results/pwm_side_by_side
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

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


def pwm_loss_function(root: Path):
    """PWM's `compute_wm_loss`, compiled from its source file alone (its module imports gym, wandb and torchrl)."""
    source = (root / "src" / "pwm" / "algorithms" / "pwm.py").read_text()
    tree = ast.parse(source)
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "compute_wm_loss")
    namespace = {"torch": torch, "F": F}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(root / "src/pwm/algorithms/pwm.py"), "exec"), namespace)  # noqa: S102 - the user's own checkout
    return namespace["compute_wm_loss"]


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
    total_t, dyn_t, rew_t = loss_fn(me, obs, act, rew.unsqueeze(-1))
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
    speed["world-model update, pwm preset (B=64, H=16)"] = {k: statistics.median(v) for k, v in times.items()}

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
    else:
        skipped.append(f"PWM: no checkout at {args.pwm} (give --pwm DIR, the imgeorgiev/PWM root)")
    if args.tdmpc2 and (args.tdmpc2 / "tdmpc2" / "common" / "world_model.py").is_file():
        args.out.mkdir(parents=True, exist_ok=True)
        compare_tdmpc2(args.tdmpc2, rows, args.out)
        (args.out / "tdmpc2_mt.pt").unlink(missing_ok=True)
    else:
        skipped.append(f"TD-MPC2: no checkout at {args.tdmpc2} (give --tdmpc2 DIR, the nicklashansen/tdmpc2 root)")
    for s in skipped:
        print(f"skipped — {s}")
    if not rows:
        return
    from pwmbench.provenance import cpu_model

    machine = f"{cpu_model() or platform.machine()} · {os.cpu_count()} CPUs · torch {torch.__version__} · one thread · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · load average {os.getloadavg()[0]:.1f}"
    lines = ["# pwmbench beside PWM's and TD-MPC2's own code", "", machine, "", "| comparison | max abs difference | tolerance | ok | note |", "|---|---|---|---|---|"]
    lines += [f"| {r['comparison']} | {r['max_abs_diff']:.3g} | {r['tolerance']:g} | {'yes' if r['ok'] else '**no**'} | {r['note']} |" for r in rows]
    if speed:
        lines += ["", "| update | PWM (s, median of 15) | pwmbench (s) | pwmbench / PWM |", "|---|---|---|---|"]
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
