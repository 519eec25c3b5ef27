"""A root-following frame: each env's state is kept relative to its own horizontal origin, so float32 stays accurate
however far the robot runs.

Why: the kernels work in world coordinates at the world origin (kernels.py), so a link at distance d carries inertias
about the origin of size m·d² and twists of size |ω|·d that cancel against each other in float32. Measured on 32 Ant
states with ground contact, the relative joint-acceleration error against the same state at the origin (median /
max) is 1.4e-4 / 5.3e-4 at 10 m, 1.2e-3 / 4.2e-3 at 30 m, 1.5% / 7% at 100 m and 13% / 48% at 300 m, and an Ant
stepped in the world frame 300 m out can blow up within a few steps (an Ant policy runs that far in an episode).
With the frame the computation is the origin's, bit for bit. The physics is invariant
under horizontal translation (gravity is vertical, the ground plane is y = 0 everywhere, nothing else is fixed in
the world), so computing in a frame that follows the root horizontally is exact, not an approximation.

How: after every reset and every step the env *re-centres*: it moves the root's horizontal position into a per-env
offset `origin` (float64, [n, 3], y = 0) and shifts the state by it, so the simulator always starts a step with the
root above (0, ·, 0). Shifting the world by Δ (horizontal) changes

- a free root (Ant, Humanoid): its position p → p − Δ and its twist at the origin [ω; v] → [ω; v + ω × Δ] (v is the
  velocity of the material point at the origin, which moves); everything else (quaternion, joints, q̇ of joints) is
  unchanged;
- an unlimited slide root along a horizontal axis a (Hopper, Cheetah: root slide x): its coordinate x → x − a·Δ.

A model whose root is limited, sprung or not horizontal (CartPole's cart on its ±4 m rail) is not translation
invariant and gets no following (`kind == "none"`: every shift is the identity).

Gradients: Δ is taken detached, i.e. the shift is by a constant, which is a diffeomorphism that commutes with the
dynamics; the local state keeps its autograd links to the global one (x − Δ has derivative 1), so gradients through
steps, observations and rewards are exactly those of the unshifted computation. Quantities that need the absolute
position (Ant's and Humanoid's direction to a far target) add `origin` back (`world_position`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .mjcf import UNLIMITED
from .model import FREE, SLIDE, Model

__all__ = ["RootFrame"]

_HORIZONTAL = 1.0e-9  # |a_y| below this: a slide axis counts as horizontal


@dataclass(frozen=True)
class RootFrame:
    """How to shift one model's state horizontally. kind: "free" | "slide" | "none"; coord / dof: the root's first
    entry in q / q̇; axis: a slide root's world direction (unit, horizontal)."""

    kind: str
    coord: int = 0
    dof: int = 0
    axis: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def of(cls, model: Model) -> RootFrame:
        """The frame `model` allows: a free root with an unrotated root frame, or an unlimited, unsprung slide root
        along a horizontal world axis; otherwise none."""
        roots = np.flatnonzero(model.parent < 0)
        if roots.size != 1:
            return cls("none")
        i = int(roots[0])
        coord, dof = int(model.q_start[i]), int(model.qd_start[i])
        rotation = np.asarray(model.X_pj_orientation[i], dtype=np.float64)
        if model.joint_type[i] == FREE:
            if not np.allclose(np.abs(rotation), [0.0, 0.0, 0.0, 1.0]) or np.any(model.stiffness[dof : dof + 6] != 0):
                return cls("none")
            return cls("free", coord, dof)
        if model.joint_type[i] == SLIDE:
            axis = _rotate(rotation, np.asarray(model.axis[i], dtype=np.float64))
            unlimited = model.lower[dof] <= -UNLIMITED and model.upper[dof] >= UNLIMITED
            if abs(axis[1]) < _HORIZONTAL and unlimited and model.stiffness[dof] == 0:
                return cls("slide", coord, dof, tuple(float(a) for a in axis / np.linalg.norm(axis)))
        return cls("none")

    @property
    def follows(self) -> bool:
        return self.kind != "none"

    # ------------------------------------------------------------------------------------------------ shifting
    def offset(self, q: torch.Tensor) -> torch.Tensor:
        """The root's horizontal world displacement encoded in q, [n, 3] float64 (zeros for "none")."""
        out = torch.zeros(q.shape[0], 3, dtype=torch.float64, device=q.device)
        if self.kind == "free":
            out[:, 0] = q[:, self.coord].detach().double()
            out[:, 2] = q[:, self.coord + 2].detach().double()
        elif self.kind == "slide":
            axis = torch.tensor(self.axis, dtype=torch.float64, device=q.device)
            out += q[:, self.coord].detach().double().unsqueeze(-1) * axis
        return out

    def shift(self, q: torch.Tensor, qd: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same state seen from a frame moved by `delta` ([n, 3], horizontal, a constant for autograd): free root
        p → p − Δ, v → v + ω × Δ; slide root x → x − a·Δ. Computed in q's dtype; differentiable in q and q̇."""
        if self.kind == "none":
            return q, qd
        delta = delta.detach().to(q.dtype)
        if self.kind == "free":
            c, d = self.coord, self.dof
            q_shift = torch.zeros_like(q)
            q_shift[:, c : c + 3] = delta
            qd_shift = torch.zeros_like(qd)
            qd_shift[:, d + 3 : d + 6] = torch.linalg.cross(qd[:, d : d + 3], delta.to(qd.dtype), dim=-1)
            return q - q_shift, qd + qd_shift
        along = delta @ torch.tensor(self.axis, dtype=q.dtype, device=q.device)
        q_shift = torch.zeros_like(q)
        q_shift[:, self.coord] = along
        return q - q_shift, qd

    def recentre(
        self, q: torch.Tensor, qd: torch.Tensor, origin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Move the root's horizontal position into `origin`: returns (q, q̇) with the root above the local origin and
        the new origin (float64). A state already centred comes back bit for bit."""
        if self.kind == "none":
            return q, qd, origin
        delta = self.offset(q)
        q, qd = self.shift(q, qd, delta)
        return q, qd, origin + delta

    def from_world(self, q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A world-frame state (any float dtype; pass float64 to keep a far state exact) → float32 local state and
        its origin. The shift is done in float64 before rounding."""
        q64, qd64 = q.to(torch.float64), qd.to(torch.float64)
        origin = torch.zeros(q.shape[0], 3, dtype=torch.float64, device=q.device)
        q64, qd64, origin = self.recentre(q64, qd64, origin)
        return q64.to(torch.float32), qd64.to(torch.float32), origin

    def to_world(self, q: torch.Tensor, qd: torch.Tensor, origin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The local state seen from the world frame, in float64 (differentiable in q, q̇)."""
        return self.shift(q.to(torch.float64), qd.to(torch.float64), -origin)

    def world_position(self, position: torch.Tensor, origin: torch.Tensor | None) -> torch.Tensor:
        """A local world-axes position [n, 3] plus the origin, float64 (for targets fixed in the world)."""
        position = position.to(torch.float64)
        return position if origin is None else position + origin


def _rotate(quat_xyzw: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y, z, w = quat_xyzw
    u = np.array([x, y, z])
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)
