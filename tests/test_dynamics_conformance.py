"""Built-in dynamics models pass the conformance suite, and the suite catches a squashed velocity head."""

import pwmbench_flow
import pytest
import torch

from pwmbench import api
from pwmbench.testing import DYNAMICS_CHECKS, check_dynamics_model
from pwmbench.testing.dynamics_checks import check_fits_known_transition

CASES = [
    ("mlp", {}),
    ("mlp", {"residual": True}),
    ("flow", {}),
    ("flow", {"x0": "teacher"}),
    ("flow", {"integrator": "euler", "substeps": 2}),
    ("flow", {"integrator": "heun", "substeps": 4}),
]


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}-{o}" for n, o in CASES])
@pytest.mark.parametrize("check", DYNAMICS_CHECKS, ids=lambda c: c.__name__)
def test_builtin_dynamics_conform(name, options, check):
    check(api.dynamics(name), options)


class SquashedVelocityFlow(pwmbench_flow.FlowDynamics):
    """The seed project's bug: the velocity head inherits the dynamics head's SimNorm."""

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        self.squash = api.SimNorm(ctx.simnorm_dim)
        inner = self.velocity.forward
        self.velocity.forward = lambda *args: self.squash(inner(*args))


def test_conformance_catches_a_simnorm_velocity_head():
    with pytest.raises(AssertionError, match="cannot fit a simple latent transition"):
        check_fits_known_transition(SquashedVelocityFlow, {})


class ForgetsTheAction(api.DynamicsModel):
    """Ignores `a`: gradients can't reach the action input."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.net = api.mlp(ctx.latent_dim + ctx.task_dim, ctx.units, ctx.latent_dim)

    def next(self, z, a, emb=None):
        return self.net(api.join_inputs(z, emb))

    def step_loss(self, z, a, target, emb=None, *, teacher=None):
        return ((self.next(z, a, emb) - target) ** 2).mean(-1)


def test_conformance_catches_a_model_that_ignores_actions():
    with pytest.raises(AssertionError, match="no gradient reaches the input a"):
        check_dynamics_model(ForgetsTheAction)


def test_flow_options_are_validated():
    ctx = api.DynamicsContext(16, 4, units=(32,))
    with pytest.raises(api.ConfigError, match="x0"):
        api.dynamics("flow").build(ctx, x0="teacher_forced")
    with pytest.raises(api.ConfigError, match="substeps"):
        api.dynamics("flow").build(ctx, substeps=0)
    with pytest.raises(api.PluginError, match="did you mean 'euler'"):
        api.dynamics("flow").build(ctx, integrator="eular")


def test_flow_next_is_the_integrated_velocity():
    torch.manual_seed(0)
    ctx = api.DynamicsContext(16, 4, units=(32,))
    flow = api.dynamics("flow").build(ctx, integrator="euler", substeps=1)
    z, a = torch.rand(3, 16), torch.rand(3, 4)
    torch.testing.assert_close(flow.next(z, a), z + flow.velocity(z, a, 0.0))


def test_rectified_flow_loss_uses_rollout_or_teacher_x0():
    torch.manual_seed(0)
    ctx = api.DynamicsContext(16, 4, units=(32,))
    z, teacher, a, x1 = torch.rand(5, 16), torch.rand(5, 16), torch.rand(5, 4), torch.rand(5, 16)
    for mode, x0 in (("rollout", z), ("teacher", teacher)):
        flow = api.dynamics("flow").build(ctx, x0=mode)
        torch.manual_seed(3)
        loss = flow.step_loss(z, a, x1, teacher=teacher)
        torch.manual_seed(3)
        tau = torch.rand(5, 1)
        v = flow.velocity((1 - tau) * x0 + tau * x1, a, tau)
        torch.testing.assert_close(loss, ((v - (x1 - x0)) ** 2).mean(-1))


def test_the_residual_mlp_is_the_baselines_network_with_flows_residual_head():
    """W15 item 4: `residual = true` keeps the baseline's parameter count exactly (the LayerNorm's scale and shift
    become the unconstrained head's affine, as in the flow model) and predicts z + an unconstrained step."""
    plain = api.build_world_model("pwm", obs_dim=11, act_dim=3, dynamics="mlp")
    residual = api.build_world_model("pwm", obs_dim=11, act_dim=3, dynamics="mlp", dynamics_options={"residual": True})
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(residual.dynamics) == count(plain.dynamics) and count(residual) == count(plain)
    assert residual.dynamics.options() == {"residual": True} and plain.dynamics.options() == {"residual": False}
    with torch.no_grad():
        for p in residual.dynamics.net[-2].parameters():  # the output Linear at zero: the residual model predicts "no change"
            p.zero_()
        z = residual.encode(torch.randn(4, 11))
        assert torch.equal(residual.next(z, torch.rand(4, 3)), z)
        assert not (residual.dynamics.net[-1].weight.requires_grad is False)
