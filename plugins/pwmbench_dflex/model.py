"""An `Articulation` (mjcf.py) flattened into the arrays the Warp kernels read, plus the layout of q and q̇.

Why a separate layer: the loader speaks in links and geoms (nice to test against MuJoCo); the kernels want flat,
typed, per-link and per-dof arrays. Every environment runs the same articulation, so the model arrays are stored
**once** and shared by all envs; only the state (q, q̇, actions, intermediates) is batched, as `[num_envs, ...]`
2-D arrays. That keeps memory flat in the env count and makes "env i is independent of env j" structural.

Conventions (the loader's, kept as they are):
- Link frames sit at their joint anchors; a link's world transform is X_w,i = X_w,parent · X_pj,i · X_joint(q_i),
  with X_pj,i the link frame relative to its parent at q = 0 (`Link.position`, `Link.orientation`, xyzw) and
  X_joint(q) = rotation about the axis (hinge), translation along it (slide), or (p, quat) (free). So q = 0
  (identity quaternion for a free joint) is the model pose.
- q̇ of a free joint is the link's spatial velocity [ω, v] in world coordinates, taken at the world origin (dflex):
  the velocity of the link origin P is v + ω × P (= v − P × ω).
- Joint gains (stiffness ke, damping kd, armature) and limits apply to hinge and slide dofs only. A free joint is
  the floating base, not a motor: springs, damping or armature on a world-frame twist would be unphysical, so its
  dofs get zeros unless `gains_on_free_joint=True` (armature then too).
- `root_frame` replaces the root link's X_pj. Tasks pass the identity so that a free root's q[0:3] is the torso's
  world position and q[3:7] its world orientation (dflex's observations read them directly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mjcf import UNLIMITED, Articulation

__all__ = ["FREE", "HINGE", "SLIDE", "Model", "State", "WarpModel", "default_q", "split_q"]

FREE, HINGE, SLIDE = 0, 1, 2  # joint type codes the kernels branch on
_TYPE_CODE = {"free": FREE, "hinge": HINGE, "slide": SLIDE}


def _per_dof(value, default: np.ndarray, name: str) -> np.ndarray:
    """None → default; a scalar → every dof; else an array of length dof_count."""
    if value is None:
        return default.copy()
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), default.shape).copy()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


@dataclass(frozen=True, eq=False)
class Model:
    """Flat float64 numpy arrays describing one articulation (upload with `Model.warp_arrays`).

    Per link (length `link_count`, tree order, parents first): joint_type, parent, q_start, qd_start, axis (link
    frame), X_pj position/orientation, mass, com (link frame), inertia (3×3 about the COM, link frame).
    `ancestor[i, j]` is 1 when link j is a proper ancestor of link i (the mass matrix couples exactly those dofs).
    Per dof (length `dof_count`): dof_link, dof_coord (index into q of a hinge/slide coordinate, −1 for a free
    joint's dofs), stiffness, damping, armature, lower, upper, target.
    Contact points (for step 3): contact_link, contact_position (link frame), contact_radius; `contact_ranges()`
    derives the per-link (start, count) ranges over them sorted by link, which is how `warp_arrays` uploads them.
    """

    name: str
    joint_type: np.ndarray
    parent: np.ndarray
    q_start: np.ndarray
    qd_start: np.ndarray
    axis: np.ndarray
    X_pj_position: np.ndarray
    X_pj_orientation: np.ndarray
    mass: np.ndarray
    com: np.ndarray
    inertia: np.ndarray
    ancestor: np.ndarray
    dof_link: np.ndarray
    dof_coord: np.ndarray
    stiffness: np.ndarray
    damping: np.ndarray
    armature: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    target: np.ndarray
    contact_link: np.ndarray
    contact_position: np.ndarray
    contact_radius: np.ndarray

    @property
    def link_count(self) -> int:
        return int(self.parent.size)

    @property
    def dof_count(self) -> int:
        return int(self.dof_link.size)

    @property
    def coord_count(self) -> int:
        sizes = np.where(self.joint_type == FREE, 7, 1)
        return int(sizes.sum())

    @classmethod
    def from_articulation(
        cls,
        articulation: Articulation,
        *,
        root_frame: tuple[np.ndarray, np.ndarray] | None = None,
        joint_target=None,
        stiffness=None,
        damping=None,
        armature=None,
        gains_on_free_joint: bool = False,
    ) -> Model:
        """Flatten `articulation`. Gains default to the loader's per-joint values; a scalar or a per-dof array
        overrides them (free-joint dofs stay 0 unless `gains_on_free_joint`). `joint_target` is the PD target per
        dof (default 0 = the model pose). `root_frame` = (position, quaternion xyzw) replaces the root's X_pj."""
        links = articulation.links
        n = len(links)
        joint_type = np.array([_TYPE_CODE[link.joint_type] for link in links], dtype=np.int32)
        parent = np.array([link.parent for link in links], dtype=np.int32)
        if np.any(parent >= np.arange(n)):
            raise ValueError("links must be in tree order (every parent before its children)")
        if np.any((joint_type == FREE) & (parent >= 0)):
            raise ValueError("a free joint is only supported on a root link")
        position = np.array([link.position for link in links], dtype=np.float64)
        orientation = np.array([link.orientation for link in links], dtype=np.float64)
        if root_frame is not None:
            roots = np.flatnonzero(parent < 0)
            position[roots] = np.asarray(root_frame[0], dtype=np.float64)
            quat = np.asarray(root_frame[1], dtype=np.float64)
            orientation[roots] = quat / np.linalg.norm(quat)

        ancestor = np.zeros((n, n), dtype=np.int32)
        for i in range(n):
            j = parent[i]
            while j >= 0:
                ancestor[i, j] = 1
                j = parent[j]

        dof_link, dof_coord, gains = [], [], {"stiffness": [], "damping": [], "armature": []}
        lower, upper = [], []
        q_start, qd_start = articulation.coord_start, articulation.dof_start
        for i, link in enumerate(links):
            free = link.joint_type == "free"
            for k in range(link.dof_count):
                dof_link.append(i)
                dof_coord.append(-1 if free else q_start[i] + k)
                for key, values in gains.items():
                    values.append(0.0 if free and not gains_on_free_joint else getattr(link, key))
                lower.append(-UNLIMITED if free else link.lower)
                upper.append(UNLIMITED if free else link.upper)
        dof_link = np.array(dof_link, dtype=np.int32)
        dof_coord = np.array(dof_coord, dtype=np.int32)
        free_dof = dof_coord < 0

        def override(value, key):
            arr = _per_dof(value, np.array(gains[key]), key)
            if not gains_on_free_joint:
                arr[free_dof] = 0.0
            return arr

        contact_link, contact_position, contact_radius = articulation.contact_arrays()
        return cls(
            name=articulation.name,
            joint_type=joint_type,
            parent=parent,
            q_start=np.array(q_start, dtype=np.int32),
            qd_start=np.array(qd_start, dtype=np.int32),
            axis=np.array([link.joint_axis for link in links], dtype=np.float64),
            X_pj_position=position,
            X_pj_orientation=orientation,
            mass=np.array([link.mass for link in links], dtype=np.float64),
            com=np.array([link.com for link in links], dtype=np.float64),
            inertia=np.array([link.inertia for link in links], dtype=np.float64).reshape(n, 3, 3),
            ancestor=ancestor,
            dof_link=dof_link,
            dof_coord=dof_coord,
            stiffness=override(stiffness, "stiffness"),
            damping=override(damping, "damping"),
            armature=override(armature, "armature"),
            lower=np.array(lower, dtype=np.float64),
            upper=np.array(upper, dtype=np.float64),
            target=_per_dof(joint_target, np.zeros(dof_link.size), "joint_target"),
            contact_link=contact_link,
            contact_position=contact_position,
            contact_radius=contact_radius,
        )

    def contact_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order, start, count): `order` sorts the contact points by link (stably), and link i's points are
        sorted positions start[i] .. start[i] + count[i] − 1 (count 0 for a link without contact points)."""
        link = np.asarray(self.contact_link, dtype=np.int64).reshape(-1)
        if link.size and (link.min() < 0 or link.max() >= self.link_count):
            raise ValueError("contact_link holds an index outside the links")
        order = np.argsort(link, kind="stable").astype(np.int32)
        count = np.bincount(link, minlength=self.link_count).astype(np.int32)
        start = (np.cumsum(count) - count).astype(np.int32)
        return order, start, count

    def spatial_inertia(self) -> np.ndarray:
        """[link_count, 6, 6] spatial inertia of each link about its own origin in its own frame, (ω, v) order:
        [[I_c + m·[c]×[c]×ᵀ, m·[c]×], [m·[c]×ᵀ, m·1]] (Featherstone 2.63, with c the COM). The kernels keep the same
        quantity in world coordinates as (m, h = m·c, I_o = I_c + m·(|c|²·1 − c·cᵀ)), which is what it is made of."""
        out = np.zeros((self.link_count, 6, 6))
        for i, (m, c, inertia) in enumerate(zip(self.mass, self.com, self.inertia)):
            cx = np.array([[0, -c[2], c[1]], [c[2], 0, -c[0]], [-c[1], c[0], 0]])
            out[i, :3, :3] = inertia + m * cx @ cx.T
            out[i, :3, 3:] = m * cx
            out[i, 3:, :3] = m * cx.T
            out[i, 3:, 3:] = m * np.eye(3)
        return out

    def warp_arrays(self, device) -> WarpModel:
        """Upload to `device` as float32 Warp arrays (vec3 / mat33 / transform where the kernels want them)."""
        from .warp_setup import init_warp

        wp = init_warp()

        def f32(a, dtype=None):
            return wp.array(np.ascontiguousarray(a, dtype=np.float32), dtype=dtype or wp.float32, device=device)

        def i32(a):
            return wp.array(np.ascontiguousarray(a, dtype=np.int32), dtype=wp.int32, device=device)

        X_pj = np.concatenate([self.X_pj_position, self.X_pj_orientation], axis=1)
        order, contact_start, contact_count = self.contact_ranges()
        return WarpModel(
            link_count=self.link_count,
            dof_count=self.dof_count,
            coord_count=self.coord_count,
            joint_type=i32(self.joint_type),
            parent=i32(self.parent),
            q_start=i32(self.q_start),
            qd_start=i32(self.qd_start),
            axis=f32(self.axis, wp.vec3),
            X_pj=f32(X_pj, wp.transform),
            mass=f32(self.mass),
            com=f32(self.com, wp.vec3),
            inertia=f32(self.inertia, wp.mat33),
            ancestor=wp.array(np.ascontiguousarray(self.ancestor, dtype=np.int32), dtype=wp.int32, device=device),
            dof_link=i32(self.dof_link),
            dof_coord=i32(self.dof_coord),
            stiffness=f32(self.stiffness),
            damping=f32(self.damping),
            armature=f32(self.armature),
            lower=f32(self.lower),
            upper=f32(self.upper),
            target=f32(self.target),
            contact_count_total=int(order.size),
            contact_start=i32(contact_start),
            contact_count=i32(contact_count),
            contact_position=f32(np.asarray(self.contact_position).reshape(-1, 3)[order].reshape(-1, 3), wp.vec3),
            contact_radius=f32(np.asarray(self.contact_radius).reshape(-1)[order]),
        )


@dataclass(eq=False)
class WarpModel:
    """The model's arrays on one Warp device (all shared by every env)."""

    link_count: int
    dof_count: int
    coord_count: int
    joint_type: object
    parent: object
    q_start: object
    qd_start: object
    axis: object
    X_pj: object
    mass: object
    com: object
    inertia: object
    ancestor: object
    dof_link: object
    dof_coord: object
    stiffness: object
    damping: object
    armature: object
    lower: object
    upper: object
    target: object
    # contact points sorted by link: link i owns entries contact_start[i] .. contact_start[i] + contact_count[i] − 1
    contact_count_total: int
    contact_start: object
    contact_count: object
    contact_position: object
    contact_radius: object


# ----------------------------------------------------------------------------------------------------- state helpers


@dataclass(eq=False)
class State:
    """Batched generalised state: q [num_envs, coord_count] and q̇ [num_envs, dof_count] (float32 numpy)."""

    q: np.ndarray
    qd: np.ndarray

    @classmethod
    def default(cls, model: Model, num_envs: int = 1) -> State:
        """The model pose at rest in every env."""
        return cls(default_q(model, num_envs), np.zeros((num_envs, model.dof_count), dtype=np.float32))

    @property
    def num_envs(self) -> int:
        return int(self.q.shape[0])


def default_q(model: Model, num_envs: int = 1) -> np.ndarray:
    """q of the model pose for `num_envs` envs: zeros, with an identity quaternion (0, 0, 0, 1) in every free joint."""
    q = np.zeros((num_envs, model.coord_count), dtype=np.float32)
    for i in np.flatnonzero(model.joint_type == FREE):
        q[:, model.q_start[i] + 6] = 1.0
    return q


def split_q(model: Model, q: np.ndarray) -> list[np.ndarray]:
    """q [..., coord_count] cut into one piece per link (7 for a free joint, 1 for hinge/slide)."""
    sizes = np.where(model.joint_type == FREE, 7, 1)
    return np.split(np.asarray(q), np.cumsum(sizes)[:-1], axis=-1)
