"""Dynamics-model conformance: options, shapes, gradient flow, and fitting a known latent transition.

The fitting check is the one that matters most: it trains the model through its own `train_step` on a
transition z' = SimNorm(log z + M·a) and asks `next` to predict held-out pairs far better than "nothing
changes" does. A flow model whose velocity head is squashed (e.g. by SimNorm: non-negative, group sums
1) cannot fit x1 − x0, whose entries can be negative and whose groups sum to 0, and fails it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import torch

from pwmbench.errors import ConfigError
from pwmbench.plugin.interfaces import DynamicsContext, DynamicsModel

DynamicsCheck = Callable[..., None]
DynamicsLike = str | type[DynamicsModel] | DynamicsModel


def small_context(task_dim: int = 0) -> DynamicsContext:
    """A small but TD-MPC2-shaped context (latent 16 = two SimNorm groups) for fast checks."""
    return DynamicsContext(latent_dim=16, action_dim=4, task_dim=task_dim, units=(64, 64), simnorm_dim=8)


def resolve_dynamics(model: DynamicsLike, options: Mapping[str, Any] | None = None) -> tuple[type[DynamicsModel], dict[str, Any]]:
    """(class, options) for a registered name, a DynamicsModel subclass or an instance (whose `options()` are used,
    then `options` on top): the one calling convention of every dynamics check."""
    if isinstance(model, str):
        from pwmbench.plugin.manager import get_plugins

        return get_plugins().dynamics.get(model), dict(options or {})
    if isinstance(model, DynamicsModel):
        cls = type(model)
        own = {k: v for k, v in model.options().items() if k in cls.default_options}
        return cls, {**own, **(options or {})}
    if isinstance(model, type) and issubclass(model, DynamicsModel):
        return model, dict(options or {})
    raise TypeError(f"a dynamics check takes a registered name, a DynamicsModel subclass or an instance, got {model!r}")


def _accepts_any_model(check: Callable[..., None]) -> DynamicsCheck:
    @functools.wraps(check)
    def wrapper(model: DynamicsLike, options: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        cls, resolved = resolve_dynamics(model, options)
        check(cls, resolved, **kwargs)

    return wrapper


def _simplex(n: int, ctx: DynamicsContext, g: torch.Generator) -> torch.Tensor:
    logits = torch.randn(n, ctx.latent_dim // ctx.simnorm_dim, ctx.simnorm_dim, generator=g)
    return torch.softmax(logits, -1).reshape(n, ctx.latent_dim)


def _inputs(ctx: DynamicsContext, n: int = 32, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    z = _simplex(n, ctx, g)
    a = torch.rand(n, ctx.action_dim, generator=g) * 2 - 1
    emb = torch.randn(n, ctx.task_dim, generator=g) if ctx.task_dim else None
    target = _simplex(n, ctx, g)
    return z, a, emb, target


@_accepts_any_model
def check_options(cls: type[DynamicsModel], options: dict[str, Any]) -> None:
    """Unknown option names are ConfigErrors; `options()` is JSON-friendly and records every declared option (results
    store it); evals are positive ints."""
    try:
        cls.build(small_context(), **options, definitely_not_an_option=1)
    except ConfigError:
        pass
    else:
        raise AssertionError(f"{cls.__name__}.build accepted an unknown option; declare options in default_options")
    model = cls.build(small_context(), **options)
    for attr in ("evals_per_next", "evals_per_train_step"):
        value = getattr(model, attr)
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 1, f"{cls.__name__}.{attr} must be an int ≥ 1, got {value!r}"
    recorded = model.options()
    assert isinstance(recorded, Mapping), f"{cls.__name__}.options() must return a dict, got {type(recorded).__name__}"
    try:
        json.dumps(dict(recorded))
    except TypeError as exc:
        raise AssertionError(f"{cls.__name__}.options() must be JSON-serialisable (results record it): {exc}") from None
    missing = sorted(set(cls.default_options) - set(recorded))
    assert not missing, (
        f"{cls.__name__}.options() leaves out {missing}: results would record {dict(recorded)} — return every option "
        "in default_options with the value in use"
    )


@_accepts_any_model
def check_shapes(cls: type[DynamicsModel], options: dict[str, Any]) -> None:
    """next → [B, latent]; step_loss → [B]; train_step → ([B], [B, latent]); with and without a task embedding."""
    for task_dim in (0, 8):
        ctx = small_context(task_dim)
        model = cls.build(ctx, **options)
        z, a, emb, target = _inputs(ctx, n=7)
        nxt = model.next(z, a, emb)
        assert nxt.shape == (7, ctx.latent_dim), f"{cls.__name__}.next returned {tuple(nxt.shape)}, expected (7, {ctx.latent_dim})"
        loss = model.step_loss(z, a, target, emb, teacher=z)
        assert loss.shape == (7,), f"{cls.__name__}.step_loss must return one loss per sample, shape (7,), got {tuple(loss.shape)}"
        loss2, nxt2 = model.train_step(z, a, target, emb, teacher=z)
        assert loss2.shape == (7,) and nxt2.shape == nxt.shape, (
            f"{cls.__name__}.train_step returned shapes {tuple(loss2.shape)}, {tuple(nxt2.shape)}; it must return (loss, next): "
            f"the per-sample step loss, shape (7,), then the predicted next latent, shape {tuple(nxt.shape)}"
            + (" — the two look swapped" if tuple(loss2.shape) == tuple(nxt.shape) and tuple(nxt2.shape) == (7,) else "")
        )
        assert torch.isfinite(nxt).all() and torch.isfinite(loss).all(), f"{cls.__name__} produced non-finite values at init"


@_accepts_any_model
def check_gradients_flow(cls: type[DynamicsModel], options: dict[str, Any]) -> None:
    """Gradients of next and of the step loss reach z, a, the task embedding and every parameter."""
    ctx = small_context(task_dim=8)
    torch.manual_seed(0)
    model = cls.build(ctx, **options)
    z, a, emb, target = _inputs(ctx, n=16)
    z, a, emb = (t.clone().requires_grad_(True) for t in (z, a, emb))
    loss, nxt = model.train_step(z, a, target, emb, teacher=z)
    (loss.mean() + (nxt * torch.randn_like(nxt)).sum()).backward()
    for name, tensor in (("z", z), ("a", a), ("task embedding", emb)):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, f"{cls.__name__}: no gradient reaches the input {name}"
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not dead, f"{cls.__name__}: parameters with no (or non-finite) gradient: {dead}"
    model.zero_grad()
    z2 = z.detach().clone().requires_grad_(True)
    model.next(z2, a.detach(), emb.detach()).sum().backward()
    assert z2.grad is not None and z2.grad.abs().sum() > 0, f"{cls.__name__}.next is not differentiable w.r.t. z"


@_accepts_any_model
def check_fits_known_transition(cls: type[DynamicsModel], options: dict[str, Any], steps: int = 400, ratio: float = 0.2) -> None:
    """Trained through its own train_step, `next` beats "nothing changes" by 1/ratio on held-out pairs."""
    ctx = small_context()
    g = torch.Generator().manual_seed(123)
    mixing = torch.randn(ctx.action_dim, ctx.latent_dim, generator=g) * 1.5

    def transition(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        logits = torch.log(z.clamp_min(1e-6)) + a @ mixing
        return torch.softmax(logits.reshape(len(z), -1, ctx.simnorm_dim), -1).reshape(len(z), -1)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = _simplex(n, ctx, g)
        a = torch.rand(n, ctx.action_dim, generator=g) * 2 - 1
        return z, a, transition(z, a)

    torch.manual_seed(0)
    model = cls.build(ctx, **options)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        z, a, target = batch(256)
        loss, _ = model.train_step(z, a, target, None, teacher=z)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    z, a, target = batch(1024)
    with torch.no_grad():
        err = ((model.next(z, a) - target) ** 2).mean().item()
    still = ((z - target) ** 2).mean().item()
    assert err < ratio * still, (
        f"{cls.__name__} cannot fit a simple latent transition: held-out MSE {err:.2e} vs {still:.2e} for predicting no change "
        f"(needs < {ratio:.0%} of it). A constrained output head (e.g. SimNorm on a velocity) causes this."
    )


DYNAMICS_CHECKS: tuple[DynamicsCheck, ...] = (check_options, check_shapes, check_gradients_flow, check_fits_known_transition)


def check_dynamics_model(model: DynamicsLike, options: Mapping[str, Any] | None = None, *, quiet: bool = False, **more_options: Any) -> str:
    """Run every dynamics check on a registered name, a class or an instance, built with `options` (a dict, keywords,
    or both); the first failure raises AssertionError saying what the plugin got wrong. On success returns (and,
    unless `quiet`, prints) one line naming what was verified."""
    cls, resolved = resolve_dynamics(model, {**(options or {}), **more_options})
    for check in DYNAMICS_CHECKS:
        check(cls, resolved)
    summary = (f"{cls.__name__}{resolved or ''}: {len(DYNAMICS_CHECKS)} dynamics checks passed "
               f"({', '.join(c.__name__.removeprefix('check_').replace('_', ' ') for c in DYNAMICS_CHECKS)})")  # fmt: skip
    if not quiet:
        print(summary)
    return summary
