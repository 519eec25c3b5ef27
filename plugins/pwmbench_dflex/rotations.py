"""Quaternion helpers in torch (x, y, z, w order, batched over the leading dims) for observations and initial states.

Why torch and not Warp: observations, rewards and initial-state sampling live in the task layer, where the
differentiable path is plain torch autograd on the (q, q̇) the bridge returns.
"""

from __future__ import annotations

import torch

__all__ = ["quat_conjugate", "quat_from_axis_angle", "quat_mul", "quat_rotate"]


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The Hamilton product a ⊗ b (rotate by b, then by a)."""
    ax, ay, az, aw = a.unbind(-1)
    bx, by, bz, bw = b.unbind(-1)
    return torch.stack(
        (
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ),
        dim=-1,
    )


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    return torch.cat((-q[..., :3], q[..., 3:]), dim=-1)


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """R(q) v for unit quaternions q [..., 4] and vectors v [..., 3] (broadcasting)."""
    u, w = q[..., :3], q[..., 3:]
    u, v = torch.broadcast_tensors(u, v)
    t = 2.0 * torch.linalg.cross(u, v, dim=-1)
    return v + w * t + torch.linalg.cross(u, t, dim=-1)


def quat_from_axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Unit quaternions for rotations by `angle` [...] about unit `axis` [..., 3]."""
    half = 0.5 * angle.unsqueeze(-1)
    return torch.cat((axis * torch.sin(half), torch.cos(half)), dim=-1)
