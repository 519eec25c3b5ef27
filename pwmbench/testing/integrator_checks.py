"""Integrator conformance: declarations, dtypes, exactness, convergence order, composition, batching, gradients.

Every check takes a registered name, an Integrator subclass or an instance (plus `options` for the first two), so
`check_integrator("heun")`, `check_integrator(MyIntegrator)` and `check_integrator(MyIntegrator())` all work. Output
that comes back in another dtype or shape is reported as that, whichever check sees it first.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.autograd.gradcheck import GradcheckError

from pwmbench.errors import ConfigError
from pwmbench.plugin.interfaces import Integrator

IntegratorCheck = Callable[..., None]
IntegratorLike = str | type[Integrator] | Integrator


def resolve_integrator(integ: IntegratorLike, options: Mapping[str, Any] | None = None) -> Integrator:
    """An instance for a registered name, an Integrator subclass (built with `options`) or an instance."""
    if isinstance(integ, Integrator):
        if options:
            raise TypeError(f"options {dict(options)} given with an integrator instance {integ!r}: pass its class or name instead")
        return integ
    if isinstance(integ, str):
        from pwmbench.plugin.manager import get_plugins

        return get_plugins().integrators.get(integ).build(**(options or {}))
    if isinstance(integ, type) and issubclass(integ, Integrator):
        return integ.build(**(options or {}))
    raise TypeError(f"an integrator check takes a registered name, an Integrator subclass or an instance, got {integ!r}")


def _accepts_any_integrator(check: Callable[[Integrator], None]) -> IntegratorCheck:
    @functools.wraps(check)
    def wrapper(integ: IntegratorLike, options: Mapping[str, Any] | None = None) -> None:
        check(resolve_integrator(integ, options))

    return wrapper


def _same_kind(integ: Integrator, out: Any, like: torch.Tensor, what: str) -> None:
    """`out` is a tensor of `like`'s dtype, device and shape; otherwise say which of them is wrong."""
    assert isinstance(out, torch.Tensor), f"{integ!r} returned {type(out).__name__}, not a tensor ({what})"
    assert out.dtype == like.dtype, (
        f"{integ!r} has a dtype problem: it returned {out.dtype} for {like.dtype} input ({what}); keep the input's dtype "
        "(build tensors with torch.zeros_like(x) / x.new_tensor(...), not torch.zeros(shape) / torch.tensor(...))"
    )
    assert out.device == like.device, f"{integ!r} returned a tensor on {out.device} for input on {like.device} ({what})"
    assert out.shape == like.shape, f"{integ!r} returned shape {tuple(out.shape)} for input of shape {tuple(like.shape)} ({what})"


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@_accepts_any_integrator
def check_declarations(integ: Integrator) -> None:
    """`order` and `evals_per_substep` are positive ints and `evals_per_substep` matches the real call count."""
    for attr in ("order", "evals_per_substep"):
        value = getattr(integ, attr)
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 1, f"{integ!r}.{attr} must be an int ≥ 1, got {value!r}"
    calls = 0

    def f(x, t):
        nonlocal calls
        calls += 1
        return -x

    integ.integrate(f, torch.ones(3), 0.0, 1.0, 3)
    assert calls == 3 * integ.evals_per_substep, (
        f"{integ!r} declares {integ.evals_per_substep} evaluations per substep but made {calls} for 3 substeps"
    )


@_accepts_any_integrator
def check_rejects_bad_substeps(integ: Integrator) -> None:
    """substeps < 1 or not an integer is a ConfigError, not a silent zero-step integration."""
    for bad in (0, -1, 1.5, 2.0, "2", True, None):
        try:
            integ.integrate(lambda x, t: x, torch.ones(2), 0.0, 1.0, bad)
        except ConfigError:
            continue
        raise AssertionError(f"{integ!r} accepted substeps={bad!r}; expected a ConfigError")


@_accepts_any_integrator
def check_zero_interval_identity(integ: Integrator) -> None:
    """Integrating over [t, t] returns x0 unchanged."""
    x0 = torch.randn(5, 3, generator=_generator(1), dtype=torch.float64)
    out = integ.integrate(lambda x, t: torch.sin(x) + t, x0, 0.3, 0.3, 4)
    _same_kind(integ, out, x0, "float64, zero-length interval")
    assert torch.equal(out, x0), f"{integ!r} changed x0 over a zero-length interval [0.3, 0.3] (max change {(out - x0).abs().max().item():.3g})"


@_accepts_any_integrator
def check_constant_field_exact(integ: Integrator) -> None:
    """dx/dt = c gives x0 + c·(t1 − t0) (up to float64 rounding) for any number of substeps."""
    g = _generator(2)
    x0 = torch.randn(4, 6, generator=g, dtype=torch.float64)
    c = torch.randn(6, generator=g, dtype=torch.float64)
    for k in (1, 3, 8):
        out = integ.integrate(lambda x, t: c.expand_as(x), x0, -0.5, 1.25, k)
        _same_kind(integ, out, x0, f"float64, constant field, K={k}")
        torch.testing.assert_close(out, x0 + 1.75 * c, rtol=1e-12, atol=1e-12, msg=f"{integ!r} not exact on a constant field (K={k})")


@_accepts_any_integrator
def check_linear_in_t_exact(integ: Integrator) -> None:
    """Order ≥ 2 methods are exact on dx/dt = c + d·t: x1 = x0 + c·Δ + d·(t1² − t0²)/2."""
    if integ.order < 2:
        return
    g = _generator(3)
    x0, c, d = (torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(3))
    t0, t1 = 0.2, 1.7
    expected = x0 + c * (t1 - t0) + d * (t1**2 - t0**2) / 2
    for k in (1, 2, 5):
        out = integ.integrate(lambda x, t: c + d * t, x0, t0, t1, k)
        _same_kind(integ, out, x0, f"float64, field linear in t, K={k}")
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12, msg=f"{integ!r} (order {integ.order}) not exact on a field linear in t (K={k})")


def observed_order(integ: IntegratorLike, dim: int = 4, seed: int = 0, substeps: tuple[int, ...] = (4, 8, 16, 32)) -> float:
    """Least-squares slope of log(error) vs log(step) on dx/dt = A·x against expm(A), in float64."""
    integ = resolve_integrator(integ)
    g = _generator(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
    x0 = torch.randn(3, dim, generator=g, dtype=torch.float64)
    exact = x0 @ torch.linalg.matrix_exp(a).T
    logs_h, logs_e = [], []
    for k in substeps:
        out = integ.integrate(lambda x, t: x @ a.T, x0, 0.0, 1.0, k)
        err = (out - exact).abs().max().item()
        logs_h.append(math.log(1.0 / k))
        logs_e.append(math.log(max(err, 1e-300)))
    mh, me = sum(logs_h) / len(logs_h), sum(logs_e) / len(logs_e)
    return sum((h - mh) * (e - me) for h, e in zip(logs_h, logs_e)) / sum((h - mh) ** 2 for h in logs_h)


@_accepts_any_integrator
def check_convergence_order(integ: Integrator) -> None:
    """Observed order on random linear systems is within ±0.2 of the declared order."""
    for seed in (0, 1, 2):
        p = observed_order(integ, seed=seed)
        assert abs(p - integ.order) <= 0.2, f"{integ!r} declares order {integ.order} but converges with order {p:.2f} (seed {seed})"


@_accepts_any_integrator
def check_halves_compose(integ: Integrator) -> None:
    """K substeps over [t0, t1] equal K/2 over [t0, tm] followed by K/2 over [tm, t1]."""
    g = _generator(4)
    w = torch.randn(5, 5, generator=g, dtype=torch.float64) / 2
    x0 = torch.randn(2, 5, generator=g, dtype=torch.float64)

    def f(x, t):
        return torch.tanh(x @ w) * (1 + t)

    whole = integ.integrate(f, x0, 0.0, 1.0, 8)
    _same_kind(integ, whole, x0, "float64, K=8 over [0, 1]")
    halves = integ.integrate(f, integ.integrate(f, x0, 0.0, 0.5, 4), 0.5, 1.0, 4)
    torch.testing.assert_close(whole, halves, rtol=1e-12, atol=1e-12, msg=f"{integ!r}: K over [0,1] ≠ K/2 over each half")


@_accepts_any_integrator
def check_batch_rows_independent(integ: Integrator) -> None:
    """Row i of a batch depends only on row i (no mixing across the batch)."""
    g = _generator(5)
    w = torch.randn(4, 4, generator=g, dtype=torch.float64)
    x0 = torch.randn(6, 4, generator=g, dtype=torch.float64)

    def f(x, t):
        return torch.sin(x @ w) - t * x

    base = integ.integrate(f, x0, 0.0, 1.0, 3)
    _same_kind(integ, base, x0, "float64 batch of 6")
    poked = x0.clone()
    poked[2] += 1.0
    out = integ.integrate(f, poked, 0.0, 1.0, 3)
    others = [i for i in range(6) if i != 2]
    assert torch.equal(out[others], base[others]), f"{integ!r} mixes rows of a batch"
    assert not torch.equal(out[2], base[2]), f"{integ!r}: a changed row did not change its output"
    single = integ.integrate(f, x0[3:4], 0.0, 1.0, 3)
    torch.testing.assert_close(single, base[3:4], rtol=1e-12, atol=1e-12, msg=f"{integ!r}: a row alone ≠ the same row in a batch")


@_accepts_any_integrator
def check_gradients(integ: Integrator) -> None:
    """Autograd gradients w.r.t. x0 and the field's parameters match central finite differences."""
    g = _generator(6)
    w = torch.randn(3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def run(x, weight):
        return integ.integrate(lambda z, t: torch.tanh(z @ weight) + t * z, x, 0.0, 1.0, 3)

    _same_kind(integ, run(x0.detach(), w.detach()), x0, "float64, gradient check")
    try:
        torch.autograd.gradcheck(run, (x0, w), eps=1e-6, atol=1e-6, rtol=1e-4)
    except GradcheckError as exc:
        raise AssertionError(f"{integ!r}: autograd gradients w.r.t. x0 and the field's parameters disagree with finite differences: {exc}") from None


@_accepts_any_integrator
def check_dtype_device(integ: Integrator) -> None:
    """Output keeps the input's dtype and device (float32, float64, and bfloat16 on CPU)."""
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x0 = torch.ones(2, 3, dtype=dtype)
        out = integ.integrate(lambda x, t: -x, x0, 0.0, 1.0, 2)
        _same_kind(integ, out, x0, f"{dtype} input, dx/dt = -x")


INTEGRATOR_CHECKS: tuple[IntegratorCheck, ...] = (
    check_declarations,
    check_dtype_device,  # early: a dtype bug would otherwise surface as a wrong value in a later check
    check_rejects_bad_substeps,
    check_zero_interval_identity,
    check_constant_field_exact,
    check_linear_in_t_exact,
    check_convergence_order,
    check_halves_compose,
    check_batch_rows_independent,
    check_gradients,
)


def check_integrator(integ: IntegratorLike, options: Mapping[str, Any] | None = None, *, quiet: bool = False, **more_options: Any) -> str:
    """Run every integrator check on a registered name, a class (built with `options`) or an instance; the first
    failure raises AssertionError saying what the integrator got wrong. On success returns (and, unless `quiet`,
    prints) one line naming what was verified."""
    instance = resolve_integrator(integ, {**(options or {}), **more_options})
    for check in INTEGRATOR_CHECKS:
        check(instance)
    summary = (f"{type(instance).__name__} (order {getattr(instance, 'order', '?')}): {len(INTEGRATOR_CHECKS)} integrator checks passed "
               f"({', '.join(c.__name__.removeprefix('check_').replace('_', ' ') for c in INTEGRATOR_CHECKS)})")  # fmt: skip
    if not quiet:
        print(summary)
    return summary
