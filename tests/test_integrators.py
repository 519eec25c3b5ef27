"""Built-in integrators: the conformance suite, plus hypothesis properties over random fields and intervals."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pwmbench import api
from pwmbench.testing import INTEGRATOR_CHECKS, observed_order

NAMES = ["euler", "midpoint", "heun", "rk4"]
DECLARED = {"euler": (1, 1), "midpoint": (2, 2), "heun": (2, 2), "rk4": (4, 4)}

intervals = st.tuples(st.floats(-2, 2), st.floats(-2, 2))
substeps = st.integers(1, 12)
names = st.sampled_from(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("check", INTEGRATOR_CHECKS, ids=lambda c: c.__name__)
def test_conformance(name, check):
    check(api.integrator(name))


@pytest.mark.parametrize("name", NAMES)
def test_declared_order_and_cost(name):
    integ = api.integrator(name)
    assert (integ.order, integ.evals_per_substep) == DECLARED[name]
    assert integ.evals(3) == 3 * DECLARED[name][1]


@pytest.mark.parametrize("name", NAMES)
def test_observed_order_on_more_systems(name):
    integ = api.integrator(name)
    for seed in range(3, 8):
        assert abs(observed_order(integ, dim=6, seed=seed) - integ.order) <= 0.2


@given(name=names, t=intervals, k=substeps, seed=st.integers(0, 2**16))
def test_constant_field_exact(name, t, k, seed):
    g = torch.Generator().manual_seed(seed)
    x0, c = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    out = api.integrator(name).integrate(lambda x, tau: c.expand_as(x), x0, t[0], t[1], k)
    torch.testing.assert_close(out, x0 + (t[1] - t[0]) * c, rtol=1e-10, atol=1e-10)


@given(name=st.sampled_from(["midpoint", "heun", "rk4"]), t=intervals, k=substeps, seed=st.integers(0, 2**16))
def test_linear_in_t_exact(name, t, k, seed):
    g = torch.Generator().manual_seed(seed)
    x0, c, d = (torch.randn(2, 3, generator=g, dtype=torch.float64) for _ in range(3))
    out = api.integrator(name).integrate(lambda x, tau: c + d * tau, x0, t[0], t[1], k)
    expected = x0 + c * (t[1] - t[0]) + d * (t[1] ** 2 - t[0] ** 2) / 2
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


@given(name=names, half_k=st.integers(1, 6), t0=st.floats(-1, 1), length=st.floats(0.01, 2), seed=st.integers(0, 2**16))
def test_k_substeps_equal_two_halves(name, half_k, t0, length, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 4, generator=g, dtype=torch.float64) / 2
    x0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    integ = api.integrator(name)

    def f(x, tau):
        return torch.tanh(x @ w) + tau * x

    t1, tm = t0 + length, t0 + length / 2
    whole = integ.integrate(f, x0, t0, t1, 2 * half_k)
    halves = integ.integrate(f, integ.integrate(f, x0, t0, tm, half_k), tm, t1, half_k)
    torch.testing.assert_close(whole, halves, rtol=1e-9, atol=1e-9)


@given(name=names, t=st.floats(-3, 3), k=substeps)
def test_zero_length_interval_is_identity(name, t, k):
    x0 = torch.randn(4, 2, dtype=torch.float64)
    assert torch.equal(api.integrator(name).integrate(lambda x, tau: torch.cos(x) * tau, x0, t, t, k), x0)


@given(name=names, row=st.integers(0, 4), k=substeps, seed=st.integers(0, 2**16))
def test_rows_are_independent(name, row, k, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 3, generator=g, dtype=torch.float64)
    x0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    integ = api.integrator(name)
    base = integ.integrate(lambda x, tau: torch.sin(x @ w), x0, 0.0, 1.0, k)
    alone = integ.integrate(lambda x, tau: torch.sin(x @ w), x0[row : row + 1], 0.0, 1.0, k)
    torch.testing.assert_close(alone, base[row : row + 1], rtol=1e-12, atol=1e-12)


@given(name=names, bad=st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.text(max_size=3), st.booleans(), st.none()))
def test_bad_substeps_is_a_clear_error(name, bad):
    with pytest.raises(api.ConfigError, match="substeps must be an integer"):
        api.integrator(name).integrate(lambda x, tau: x, torch.ones(2), 0.0, 1.0, bad)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_finite_differences_through_many_substeps(name):
    g = torch.Generator().manual_seed(7)
    w = torch.randn(4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    integ = api.integrator(name)
    assert torch.autograd.gradcheck(lambda x, m: integ.integrate(lambda z, t: torch.tanh(z @ m) * (1 - t), x, 0.0, 1.0, 6), (x0, w))


def test_unknown_integrator_suggests_the_nearest():
    with pytest.raises(api.PluginError, match="did you mean 'heun'"):
        api.integrator("huen")
