"""Penalty ground contact (dflex's model): fixed contact spheres on the links against the ground plane y = 0.

Each contact point is a sphere (a sphere geom's centre, or a capsule's end-cap centre) of radius r fixed in its link.
With the centre c in the world and n = (0, 1, 0) the ground normal (the simulator is y-up):

    contact location    p = c − r·n              depth  d = max(r − c_y, 0)
    material velocity   v_p = v + ω × p          (the link twist [ω; v] is taken at the world origin)
    normal              v_n = v_p · n,  v_t = v_p − v_n·n
    force on the link   F = n·(ke·d + kd·d·max(−v_n, 0)) − v̂_t·min(kf·|v_t|, mu·ke·d)
    wrench              f = [p × F; F]           (torque about the world origin, kernels.py's convention)

The damping acts only while the point moves into the ground and is scaled by the depth (dflex's articulated
`eval_rigid_contacts_art`: fd = min(v_n, 0)·kd·step(c)·(−c)); friction is viscous (kf·|v_t|) up to the Coulomb cap
mu·ke·d. There is no broad phase: every point is evaluated every substep, so the gradients are exact.

`contact_forces` runs one thread per (env, link) and writes f_ext[e, link] exactly once: the sum over the link's
contact points (sorted by link; `Model.contact_ranges`) lives in its own `@wp.func` (kernels.py's reverse-mode rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from .kernels import ang, lin, sv
from .warp_setup import init_warp

wp = init_warp()

__all__ = ["ContactParams", "contact_forces"]


@dataclass(frozen=True)
class ContactParams:
    """Ground-contact constants: normal stiffness ke, normal damping kd (scaled by depth), friction viscosity kf,
    Coulomb coefficient mu (the cap is mu·ke·depth). dflex's Ant: ContactParams(4e4, 1e4, 3e3, 0.75)."""

    ke: float
    kd: float
    kf: float
    mu: float

    def __post_init__(self):
        for name in ("ke", "kd", "kf", "mu"):
            value = getattr(self, name)
            if not (float(value) >= 0.0 and float(value) < float("inf")):
                raise ValueError(f"ContactParams.{name} must be finite and non-negative, got {value!r}")


@wp.func
def point_contact_wrench(
    centre: wp.vec3, radius: float, w: wp.vec3, v: wp.vec3, ke: float, kd: float, kf: float, mu: float
):
    """The ground's wrench on a contact sphere with world centre `centre`, on a link with twist [w; v]."""
    depth = radius - centre[1]
    if depth <= 0.0:
        return wp.spatial_vector()
    n = wp.vec3(0.0, 1.0, 0.0)
    p = centre - n * radius
    v_p = v + wp.cross(w, p)
    vn = wp.dot(n, v_p)
    vt = v_p - n * vn
    F = n * (ke * depth + kd * depth * wp.max(0.0 - vn, 0.0))
    speed = wp.length(vt)
    if speed > 1.0e-9:  # v̂_t undefined at rest (and the branch keeps the adjoint of |v_t| finite there)
        F = F - vt * (wp.min(kf * speed, mu * ke * depth) / speed)
    return sv(wp.cross(p, F), F)


@wp.func
def link_contact_wrench(
    body_X: wp.array2d(dtype=wp.transform),
    body_V: wp.array2d(dtype=wp.spatial_vector),
    contact_start: wp.array(dtype=int),
    contact_count: wp.array(dtype=int),
    contact_position: wp.array(dtype=wp.vec3),
    contact_radius: wp.array(dtype=float),
    e: int,
    i: int,
    ke: float,
    kd: float,
    kf: float,
    mu: float,
):
    """Σ over link i's contact points of their ground wrenches (about the world origin)."""
    X = body_X[e, i]
    V = body_V[e, i]
    w = ang(V)
    v = lin(V)
    start = contact_start[i]
    total = wp.spatial_vector()
    for k in range(start, start + contact_count[i]):
        centre = wp.transform_point(X, contact_position[k])
        total = total + point_contact_wrench(centre, contact_radius[k], w, v, ke, kd, kf, mu)
    return total


@wp.kernel
def contact_forces(
    body_X: wp.array2d(dtype=wp.transform),
    body_V: wp.array2d(dtype=wp.spatial_vector),
    contact_start: wp.array(dtype=int),
    contact_count: wp.array(dtype=int),
    contact_position: wp.array(dtype=wp.vec3),
    contact_radius: wp.array(dtype=float),
    ke: float,
    kd: float,
    kf: float,
    mu: float,
    # output: one wrench per (env, link), each written once
    f_ext: wp.array2d(dtype=wp.spatial_vector),
):
    """f_ext[e, i] = the ground's total wrench on link i of env e (one thread per (env, link))."""
    e, i = wp.tid()
    f_ext[e, i] = link_contact_wrench(
        body_X, body_V, contact_start, contact_count, contact_position, contact_radius, e, i, ke, kd, kf, mu
    )
