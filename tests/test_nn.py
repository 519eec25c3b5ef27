"""TD-MPC2 building blocks: SimNorm, NormedLinear/mlp, init, symlog, two-hot, reward heads."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from pwmbench.api import NormedLinear, RewardHead, SimNorm, init_weights, mlp, symexp, symlog, two_hot


@given(groups=st.integers(1, 6), batch=st.integers(1, 5), scale=st.floats(0.1, 50))
def test_simnorm_groups_are_distributions(groups, batch, scale):
    x = torch.randn(batch, groups * 8) * scale
    y = SimNorm(8)(x).reshape(batch, groups, 8)
    assert (y >= 0).all()
    torch.testing.assert_close(y.sum(-1), torch.ones(batch, groups))


def test_simnorm_rejects_ragged_width():
    with pytest.raises(ValueError, match="not a multiple"):
        SimNorm(8)(torch.zeros(2, 12))


def test_mlp_shape_and_layer_kinds():
    net = mlp(10, [32, 16], 8, out_act=SimNorm(8))
    assert [type(m) for m in net] == [NormedLinear, NormedLinear, NormedLinear]
    assert isinstance(net[0].act, nn.Mish) and isinstance(net[-1].act, SimNorm)
    plain = mlp(10, [32], 3)
    assert type(plain[-1]) is nn.Linear
    assert net(torch.randn(4, 10)).shape == (4, 8)


def test_init_is_truncated_normal_002_with_zero_bias():
    # As TD-MPC2: trunc_normal_(std=0.02) keeps torch's default cut at ±2 (absolute), so it is N(0, 0.02²) in practice.
    torch.manual_seed(0)
    layer = nn.Linear(512, 512)
    init_weights(layer)
    assert abs(layer.weight.std().item() - 0.02) < 0.0005
    assert abs(layer.weight.mean().item()) < 0.0005
    assert torch.count_nonzero(layer.bias) == 0


@given(st.floats(-1e4, 1e4))
def test_symexp_inverts_symlog(x):
    t = torch.tensor([x], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(t)), t, rtol=1e-9, atol=1e-9)


@given(st.lists(st.floats(-15, 15), min_size=1, max_size=20))
def test_two_hot_is_a_distribution_whose_mean_is_the_clamped_value(values):
    x = torch.tensor(values, dtype=torch.float64)
    enc = two_hot(x, 101, -10.0, 10.0)
    bins = torch.linspace(-10, 10, 101, dtype=torch.float64)
    assert (enc >= 0).all() and (enc > 0).sum(-1).max() <= 2
    torch.testing.assert_close(enc.sum(-1), torch.ones_like(x))
    torch.testing.assert_close((enc * bins).sum(-1), x.clamp(-10, 10))


def test_reward_heads_start_at_zero_and_decode():
    torch.manual_seed(0)
    x = torch.randn(5, 20)
    for bins in (1, 101):
        head = RewardHead(20, [32, 32], bins)
        head.apply(init_weights)
        nn.init.zeros_(head.net[-1].weight)
        torch.testing.assert_close(head.decode(head(x)), torch.zeros(5), atol=1e-6, rtol=0)


def test_two_hot_head_learns_to_decode_targets():
    torch.manual_seed(0)
    head = RewardHead(4, [32], 101)
    x = torch.randn(64, 4)
    r = 3 * x[:, 0] - x[:, 1] ** 2  # rewards in roughly [-12, 8]
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(400):
        opt.zero_grad()
        head.loss(head(x), r).mean().backward()
        opt.step()
    assert (head.decode(head(x)) - r).abs().mean() < 0.3


def test_reward_head_rejects_two_bins():
    with pytest.raises(ValueError):
        RewardHead(4, [8], 2)
