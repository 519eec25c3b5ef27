"""`Simulator`: batched, forward-only stepping of one articulation in many environments with the Warp kernels.

Why this shape: PWM trains on 64–1024 envs of one task at once. Every kernel launch covers all envs (one thread
per env), so a substep costs a fixed handful of launches however many envs there are; there is no Python loop
over envs. `step` takes and returns numpy arrays or torch tensors, so the task layer can stay in torch.

One env step = `substeps` substeps of dt/substeps:

    forward_kinematics → [contact (opt-in): X, V → fresh f_ext] → dynamics_rhs (τ − C) →
    [every mm_caching_frequency-th substep: mass_matrix H, cholesky L] → cholesky_solve (q̈) → integrate

Mass-matrix caching (dflex's ~5× saving): H and its factor L are rebuilt at substeps 0, K, 2K, ... of each `step`
(K = `mm_caching_frequency`) from the state at that substep, and reused until the next rebuild. The count restarts
at every `step`, so a step is a pure function of (q, q̇, act): the first substep always rebuilds, and a cache never
leaks from one step (or one reset) into the next. Each rebuild allocates fresh Ic/H/L arrays, and every substep
writes its new state into fresh q/q̇ arrays — the two gradient traps dflex.md names, avoided now so that a `wp.Tape`
can record `step` later. With `fresh_buffers=True` every per-substep intermediate is fresh too (what a tape needs);
the default reuses them, which is safe without a tape and saves allocations. `requires_grad=True` (which implies
fresh buffers) allocates every array with a gradient, for recording `substep` on a `wp.Tape` (the autograd bridge
that wraps this into torch is step 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .mjcf import Articulation
from .model import Model, State, default_q
from .warp_setup import init_warp

if TYPE_CHECKING:
    from .contact import ContactParams

__all__ = ["Simulator"]


@dataclass(eq=False)
class _Scratch:
    """Per-substep intermediates, all [num_envs, links or dofs]."""

    body_X: object
    body_V: object
    dof_S: object
    body_h: object
    body_I: object
    body_A: object
    body_f: object
    body_F: object
    rhs: object
    y: object
    qdd: object


@dataclass(eq=False)
class _Factor:
    """One mass-matrix rebuild: composite inertias, H (armature on the diagonal) and its Cholesky factor L."""

    ic_m: object
    ic_h: object
    ic_I: object
    H: object
    L: object


class Simulator:
    """Featherstone articulated-body dynamics for `num_envs` copies of one articulation (opt-in ground contact).

    articulation: from `mjcf.load_mjcf` (or a prepared `Model`).
    dt: one env step (dflex: 1/60 s), split into `substeps` semi-implicit Euler substeps.
    mm_caching_frequency: rebuild H and L every this many substeps (default: once per step, = substeps).
    gravity: the acceleration of gravity; the simulator is y-up, so (0, −9.81, 0).
    joint_target, stiffness, damping, armature: per-dof PD targets and gains (scalar or array; None = the
        articulation's); limit_ke / limit_kd: joint-limit spring (beyond the range) and damping (always on).
    root_frame: (position, quat xyzw) replacing the root link's frame (see model.py).
    contact: `ContactParams(ke, kd, kf, mu)` for penalty contact of the model's contact points with the ground
        y = 0 (contact.py), computed every substep into a fresh f_ext; None (default) = no contact, f_ext = 0.
    device: "cpu" or "cuda:0".
    """

    def __init__(
        self,
        articulation: Articulation | Model,
        num_envs: int,
        *,
        dt: float = 1.0 / 60.0,
        substeps: int = 16,
        mm_caching_frequency: int | None = None,
        gravity=(0.0, -9.81, 0.0),
        joint_target=None,
        stiffness=None,
        damping=None,
        armature=None,
        limit_ke: float = 0.0,
        limit_kd: float = 0.0,
        root_frame=None,
        device: str = "cpu",
        fresh_buffers: bool = False,
        requires_grad: bool = False,
        contact: ContactParams | None = None,
    ):
        self.wp = init_warp()
        from . import contact as contact_kernels
        from . import kernels

        self.kernels = kernels
        self.contact_kernels = contact_kernels
        if isinstance(articulation, Model):
            if any(x is not None for x in (joint_target, stiffness, damping, armature, root_frame)):
                raise ValueError("pass targets, gains and root_frame to Model.from_articulation, not with a Model")
            self.model = articulation
        else:
            self.model = Model.from_articulation(
                articulation,
                root_frame=root_frame,
                joint_target=joint_target,
                stiffness=stiffness,
                damping=damping,
                armature=armature,
            )
        if num_envs < 1 or substeps < 1:
            raise ValueError("num_envs and substeps must be at least 1")
        self.num_envs = int(num_envs)
        self.dt = float(dt)
        self.substeps = int(substeps)
        self.mm_caching_frequency = int(mm_caching_frequency or substeps)
        if self.mm_caching_frequency < 1:
            raise ValueError("mm_caching_frequency must be at least 1")
        self.gravity = self.wp.vec3(*np.asarray(gravity, dtype=np.float32).tolist())
        self.limit_ke = float(limit_ke)
        self.limit_kd = float(limit_kd)
        self.device = self.wp.get_device(device)
        self.requires_grad = bool(requires_grad)
        self.fresh_buffers = bool(fresh_buffers) or self.requires_grad
        self.arrays = self.model.warp_arrays(self.device)
        self.rebuild_count = 0  # mass-matrix rebuilds so far (for tests and profiling)
        self.factor: _Factor | None = None  # the last rebuild
        self._scratch: _Scratch | None = None
        self._f_ext = self._zeros(self.model.link_count, dtype=self.wp.spatial_vector)  # f_ext without contact
        if contact is not None and not isinstance(contact, contact_kernels.ContactParams):
            raise TypeError("contact must be a ContactParams (pwmbench_dflex.contact) or None")
        self.contact = contact

    # ------------------------------------------------------------------------------------------------ plumbing
    @property
    def sub_dt(self) -> float:
        return self.dt / self.substeps

    def default_state(self) -> State:
        """The model pose at rest in every env (numpy)."""
        return State.default(self.model, self.num_envs)

    def _zeros(self, *shape, dtype=None):
        return self.wp.zeros(
            (self.num_envs, *shape),
            dtype=dtype or self.wp.float32,
            device=self.device,
            requires_grad=self.requires_grad,
        )

    def _empty(self, *shape, dtype=None):
        return self.wp.empty(
            (self.num_envs, *shape),
            dtype=dtype or self.wp.float32,
            device=self.device,
            requires_grad=self.requires_grad,
        )

    def _input(self, x, width: int, name: str):
        """numpy / torch / sequence [num_envs, width] → float32 Warp array on the device."""
        if x is None:
            return self._zeros(width)
        if hasattr(x, "detach"):  # torch
            import torch

            x = x.detach().to(device=str(self.device), dtype=torch.float32).contiguous()
            if tuple(x.shape) != (self.num_envs, width):
                raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {(self.num_envs, width)}")
            return self.wp.from_torch(x)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != (self.num_envs, width):
            raise ValueError(f"{name} has shape {x.shape}, expected {(self.num_envs, width)}")
        return self.wp.array(x, dtype=self.wp.float32, device=self.device)

    @staticmethod
    def _output(array, like):
        """Back to the caller's kind: a torch tensor when `like` is one, else a numpy copy."""
        if hasattr(like, "detach"):
            import warp as wp

            return wp.to_torch(array)  # `array` is fresh for this call, so sharing its memory is safe
        return array.numpy().copy()

    def _scratch_buffers(self) -> _Scratch:
        if self._scratch is not None and not self.fresh_buffers:
            return self._scratch
        wp, n_l, n_d = self.wp, self.model.link_count, self.model.dof_count
        scratch = _Scratch(
            body_X=self._empty(n_l, dtype=wp.transform),
            body_V=self._empty(n_l, dtype=wp.spatial_vector),
            dof_S=self._empty(n_d, dtype=wp.spatial_vector),
            body_h=self._empty(n_l, dtype=wp.vec3),
            body_I=self._empty(n_l, dtype=wp.mat33),
            body_A=self._empty(n_l, dtype=wp.spatial_vector),
            body_f=self._empty(n_l, dtype=wp.spatial_vector),
            body_F=self._empty(n_l, dtype=wp.spatial_vector),
            rhs=self._empty(n_d),
            y=self._empty(n_d),
            qdd=self._empty(n_d),
        )
        self._scratch = scratch
        return scratch

    def _launch(self, kernel, inputs, dim=None):
        self.wp.launch(kernel, dim=dim or self.num_envs, inputs=inputs, device=self.device)

    # ----------------------------------------------------------------------------------------------- the stages
    def _kinematics(self, q, qd, s: _Scratch):
        m = self.arrays
        self._launch(
            self.kernels.forward_kinematics,
            [q, qd, m.joint_type, m.parent, m.q_start, m.qd_start, m.axis, m.X_pj, m.mass, m.com, m.inertia,
             m.link_count, s.body_X, s.body_V, s.dof_S, s.body_h, s.body_I],
        )  # fmt: skip

    def _rhs(self, q, qd, act, f_ext, s: _Scratch):
        m = self.arrays
        self._launch(
            self.kernels.dynamics_rhs,
            [q, qd, act, f_ext, self.gravity, m.joint_type, m.parent, m.qd_start, m.mass, m.dof_link, m.dof_coord,
             m.stiffness, m.damping, m.target, m.lower, m.upper, self.limit_ke, self.limit_kd, m.link_count,
             m.dof_count, s.body_V, s.dof_S, s.body_h, s.body_I, s.body_A, s.body_f, s.body_F, s.rhs],
        )  # fmt: skip

    def _contact(self, s: _Scratch):
        """f_ext from the current kinematics: the zeros array without contact, else a fresh array of ground wrenches
        (fresh every call, so a tape sees each substep's own f_ext)."""
        if self.contact is None:
            return self._f_ext
        m, c = self.arrays, self.contact
        f_ext = self._empty(self.model.link_count, dtype=self.wp.spatial_vector)
        self.wp.launch(
            self.contact_kernels.contact_forces,
            dim=(self.num_envs, self.model.link_count),
            inputs=[s.body_X, s.body_V, m.contact_start, m.contact_count, m.contact_position, m.contact_radius,
                    float(c.ke), float(c.kd), float(c.kf), float(c.mu), f_ext],
            device=self.device,
        )  # fmt: skip
        return f_ext

    def contact_wrenches(self, q, qd) -> np.ndarray:
        """The ground's wrenches [n; F] (torque about the world origin) on every link, [num_envs, links, 6]; zeros
        without contact."""
        s = self._scratch_buffers()
        self._kinematics(self._input(q, self.model.coord_count, "q"), self._input(qd, self.model.dof_count, "qd"), s)
        return self._contact(s).numpy().reshape(self.num_envs, self.model.link_count, 6).copy()

    def _rebuild(self, s: _Scratch) -> _Factor:
        """H and L from the current substep's kinematics, in freshly allocated arrays."""
        wp, m, n_l, n_d = self.wp, self.arrays, self.model.link_count, self.model.dof_count
        f = _Factor(
            ic_m=self._empty(n_l),
            ic_h=self._empty(n_l, dtype=wp.vec3),
            ic_I=self._empty(n_l, dtype=wp.mat33),
            H=self._zeros(n_d, n_d),
            L=self._zeros(n_d, n_d),
        )
        self._launch(
            self.kernels.mass_matrix,
            [m.parent, m.mass, m.ancestor, m.dof_link, m.armature, n_l, n_d, s.dof_S, s.body_h, s.body_I,
             f.ic_m, f.ic_h, f.ic_I, f.H],
        )  # fmt: skip
        self._launch(self.kernels.cholesky, [f.H, n_d, f.L])
        self.rebuild_count += 1
        return f

    def _solve(self, factor: _Factor, s: _Scratch):
        self._launch(self.kernels.cholesky_solve, [factor.L, s.rhs, self.model.dof_count, s.y, s.qdd])

    def _integrate(self, q, qd, qdd, dt):
        m = self.arrays
        q_out, qd_out = self._empty(self.model.coord_count), self._empty(self.model.dof_count)
        self._launch(
            self.kernels.integrate,
            [q, qd, qdd, m.joint_type, m.q_start, m.qd_start, m.X_pj, m.link_count, dt, q_out, qd_out],
        )  # fmt: skip
        return q_out, qd_out

    def substep(self, q, qd, act, f_ext, rebuild: bool):
        """One substep on Warp arrays; returns fresh (q, q̇). `f_ext` [num_envs, links] spatial wrenches (the
        zeros array; with contact on, the contact wrenches computed here from this substep's kinematics replace it)."""
        s = self._scratch_buffers()
        self._kinematics(q, qd, s)
        if self.contact is not None:
            f_ext = self._contact(s)
        self._rhs(q, qd, act, f_ext, s)
        if rebuild or self.factor is None:
            self.factor = self._rebuild(s)
        self._solve(self.factor, s)
        return self._integrate(q, qd, s.qdd, self.sub_dt)

    # ------------------------------------------------------------------------------------------------- public
    def step(self, q, qd, act=None):
        """Advance every env by one env step (`substeps` substeps). q [num_envs, coord_count], q̇ and act
        [num_envs, dof_count] (act = generalised joint forces, added to τ; None = 0); numpy or torch in, the same
        kind out (new arrays; the inputs are not modified)."""
        like = q
        q_w = self._input(q, self.model.coord_count, "q")
        qd_w = self._input(qd, self.model.dof_count, "qd")
        act_w = self._input(act, self.model.dof_count, "act")
        for k in range(self.substeps):
            q_w, qd_w = self.substep(q_w, qd_w, act_w, self._f_ext, rebuild=k % self.mm_caching_frequency == 0)
        return self._output(q_w, like), self._output(qd_w, like)

    def rollout(self, q, qd, act=None, steps: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """`steps` env steps with a constant act; returns numpy (q, q̇) trajectories [steps + 1, num_envs, ...]."""
        qs, qds = [np.array(q, dtype=np.float32)], [np.array(qd, dtype=np.float32)]
        for _ in range(steps):
            q, qd = self.step(qs[-1], qds[-1], act)
            qs.append(q)
            qds.append(qd)
        return np.stack(qs), np.stack(qds)

    # --------------------------------------------------------------------------------------- inspection (numpy)
    def forward_kinematics(self, q, qd=None) -> tuple[np.ndarray, np.ndarray]:
        """World link frames: positions [num_envs, links, 3] and quaternions xyzw [num_envs, links, 4]."""
        s = self._scratch_buffers()
        self._kinematics(self._input(q, self.model.coord_count, "q"), self._input(qd, self.model.dof_count, "qd"), s)
        X = s.body_X.numpy().reshape(self.num_envs, self.model.link_count, 7)
        return X[..., :3].copy(), X[..., 3:].copy()

    def link_twists(self, q, qd) -> np.ndarray:
        """World spatial velocities [ω; v] at the world origin of every link, [num_envs, links, 6]."""
        s = self._scratch_buffers()
        self._kinematics(self._input(q, self.model.coord_count, "q"), self._input(qd, self.model.dof_count, "qd"), s)
        return s.body_V.numpy().reshape(self.num_envs, self.model.link_count, 6).copy()

    def mass_matrix(self, q) -> np.ndarray:
        """H(q) [num_envs, dofs, dofs] with armature on the diagonal (does not touch the step's cache)."""
        s = self._scratch_buffers()
        self._kinematics(self._input(q, self.model.coord_count, "q"), self._zeros(self.model.dof_count), s)
        saved_factor, saved_count = self.factor, self.rebuild_count
        factor = self._rebuild(s)
        self.factor, self.rebuild_count = saved_factor, saved_count
        return factor.H.numpy().copy()

    def cached_mass_matrix(self) -> np.ndarray | None:
        """The H that the last substep used (from the last rebuild), [num_envs, dofs, dofs]."""
        return None if self.factor is None else self.factor.H.numpy().copy()

    def joint_forces(self, q, qd, act=None) -> np.ndarray:
        """τ = act − ke (q − target) − kd q̇ + limit terms, [num_envs, dofs]."""
        m, n_d = self.arrays, self.model.dof_count
        tau = self._empty(n_d)
        self.wp.launch(
            self.kernels.joint_forces,
            dim=(self.num_envs, n_d),
            inputs=[self._input(q, self.model.coord_count, "q"), self._input(qd, n_d, "qd"), self._input(act, n_d, "act"),
                    m.dof_coord, m.stiffness, m.damping, m.target, m.lower, m.upper, self.limit_ke, self.limit_kd, tau],
            device=self.device,
        )  # fmt: skip
        return tau.numpy().copy()

    def accelerations(self, q, qd, act=None) -> np.ndarray:
        """q̈ = H⁻¹ (τ − C) at (q, q̇) with a fresh mass matrix (and the contact wrenches when contact is on),
        [num_envs, dofs] (leaves the step's cache alone)."""
        q_w = self._input(q, self.model.coord_count, "q")
        qd_w = self._input(qd, self.model.dof_count, "qd")
        s = self._scratch_buffers()
        self._kinematics(q_w, qd_w, s)
        self._rhs(q_w, qd_w, self._input(act, self.model.dof_count, "act"), self._contact(s), s)
        saved_factor, saved_count = self.factor, self.rebuild_count
        factor = self._rebuild(s)
        self.factor, self.rebuild_count = saved_factor, saved_count
        self._solve(factor, s)
        return s.qdd.numpy().copy()

    def default_q(self) -> np.ndarray:
        return default_q(self.model, self.num_envs)
