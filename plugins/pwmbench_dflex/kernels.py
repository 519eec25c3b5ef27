"""Warp kernels of the articulated-body simulator: one thread per environment, every quantity in world coordinates.

Why world coordinates at the world origin (Featherstone, RBDA §2 and §7, "world-frame" variants): the free root's
q̇ is already a twist at the world origin (dflex's convention), and in one common frame the recursions need no
6×6 coordinate transforms at all — velocities add (V_i = V_parent + S_i·q̇_i), composite inertias add, forces
add. The price is float32 cancellation in inertias about the origin far from it (m·|c|² against I_c), the same
trade dflex made.

Notation. A spatial vector is (angular; linear), 6 floats: a twist V = [ω; v] (v = velocity of the material point
at the origin), a wrench f = [n; F] (n = torque about the origin). Cross products (RBDA 2.31–2.32):
    [ω; v] ×m [ω'; v'] = [ω×ω'; ω×v' + v×ω']          (motion)
    [ω; v] ×* [n; F]   = [ω×n + v×F; ω×F]              (force)
A rigid body's spatial inertia about the origin is kept as (m, h = m·c, I_o = I_c + m(|c|²1 − c cᵀ)):
    M·[ω; v] = [I_o ω + h×v; m v − h×ω].
Joint motion subspaces in the world: hinge S = [a; P×a] (axis a through the joint origin P), slide S = [0; a],
free S = 1₆ (its q̇ *is* the twist).

Per substep (sim.py launches these for all envs at once):
1. `forward_kinematics`: q, q̇ → link transforms X, twists V, dof subspaces S, world inertias (h, I_o).
   (step 3's contact kernel goes here: X, V → external wrenches f_ext on links.)
2. `dynamics_rhs`: joint forces τ (PD + limits) and the bias forces C from RNEA with q̈ = 0, gravity entering as
   a base acceleration a_0 = [0; −g]:  a_i = a_parent + V_i ×m (S_i q̇_i),  f_i = M_i a_i + V_i ×* M_i V_i − f_ext,i,
   F_i = f_i + Σ_children F_c,  C_d = S_dᵀ F_link(d);  rhs = τ − C.
3. every `mm_caching_frequency` substeps: `mass_matrix` (CRBA: composite inertias Ic_i = M_i + Σ_children Ic_c,
   H_ab = S_bᵀ Ic_link(a) S_a for b on link(a) or an ancestor of it, plus armature on the diagonal), then
   `cholesky` (H = L Lᵀ).
4. `cholesky_solve`: q̈ = L⁻ᵀ L⁻¹ rhs.
5. `integrate`: semi-implicit Euler q̇' = q̇ + dt q̈, then q' = q + dt q̇' (free joint: ṗ from the twist, the
   quaternion by q' = normalise(q + dt/2 · [ω; 0] ⊗ q)).

Written for Warp's reverse mode (the autograd step that follows): each output array element is written exactly
once per launch, intermediates live in arrays rather than in variables carried across loop iterations, and every
accumulating loop sits inside its own `@wp.func` that returns the sum (a dynamic-loop accumulator used after the
loop in the same function gets a stale value in Warp's backward replay; a function's own loop is replayed whole).
"""

from __future__ import annotations

from .model import FREE, HINGE, SLIDE
from .warp_setup import init_warp

wp = init_warp()

JOINT_FREE = wp.constant(FREE)
JOINT_HINGE = wp.constant(HINGE)
JOINT_SLIDE = wp.constant(SLIDE)


# ------------------------------------------------------------------------------------------------- spatial algebra


@wp.func
def sv(w: wp.vec3, v: wp.vec3):
    """A spatial vector from its angular (top) and linear (bottom) halves."""
    return wp.spatial_vector(w[0], w[1], w[2], v[0], v[1], v[2])


@wp.func
def ang(s: wp.spatial_vector):
    return wp.vec3(s[0], s[1], s[2])


@wp.func
def lin(s: wp.spatial_vector):
    return wp.vec3(s[3], s[4], s[5])


@wp.func
def cross_motion(a: wp.spatial_vector, b: wp.spatial_vector):
    """a ×m b = [ω×ω'; ω×v' + v×ω']."""
    return sv(wp.cross(ang(a), ang(b)), wp.cross(ang(a), lin(b)) + wp.cross(lin(a), ang(b)))


@wp.func
def cross_force(a: wp.spatial_vector, f: wp.spatial_vector):
    """a ×* f = [ω×n + v×F; ω×F]."""
    return sv(wp.cross(ang(a), ang(f)) + wp.cross(lin(a), lin(f)), wp.cross(ang(a), lin(f)))


@wp.func
def inertia_apply(m: float, h: wp.vec3, I_o: wp.mat33, s: wp.spatial_vector):
    """M·[ω; v] = [I_o ω + h×v; m v − h×ω] for a spatial inertia (m, h, I_o) about the origin."""
    w = ang(s)
    v = lin(s)
    return sv(I_o * w + wp.cross(h, v), m * v - wp.cross(h, w))


@wp.func
def unit_twist(k: int):
    """The k-th column of 1₆ (a free joint's motion subspace)."""
    return wp.spatial_vector(
        wp.where(k == 0, 1.0, 0.0),
        wp.where(k == 1, 1.0, 0.0),
        wp.where(k == 2, 1.0, 0.0),
        wp.where(k == 3, 1.0, 0.0),
        wp.where(k == 4, 1.0, 0.0),
        wp.where(k == 5, 1.0, 0.0),
    )


# --------------------------------------------------------------------------------------------- forward kinematics


@wp.func
def joint_transform(jtype: int, axis: wp.vec3, q: wp.array2d(dtype=float), e: int, s: int):
    """X_joint(q): rotation about `axis` (hinge), translation along it (slide), or (p, normalised quat) (free)."""
    if jtype == JOINT_FREE:
        rot = wp.normalize(wp.quat(q[e, s + 3], q[e, s + 4], q[e, s + 5], q[e, s + 6]))
        return wp.transform(wp.vec3(q[e, s], q[e, s + 1], q[e, s + 2]), rot)
    if jtype == JOINT_HINGE:
        return wp.transform(wp.vec3(0.0), wp.quat_from_axis_angle(axis, q[e, s]))
    return wp.transform(axis * q[e, s], wp.quat_identity())


@wp.func
def parent_transform(body_X: wp.array2d(dtype=wp.transform), e: int, p: int):
    if p < 0:
        return wp.transform_identity()
    return body_X[e, p]


@wp.func
def parent_twist(body_V: wp.array2d(dtype=wp.spatial_vector), e: int, p: int):
    if p < 0:
        return wp.spatial_vector()
    return body_V[e, p]


@wp.func
def hinge_or_slide_subspace(jtype: int, X: wp.transform, axis: wp.vec3):
    """World motion subspace of a 1-dof joint whose link frame is X: hinge [a; P×a], slide [0; a]."""
    a = wp.transform_vector(X, axis)
    if jtype == JOINT_HINGE:
        return sv(a, wp.cross(wp.transform_get_translation(X), a))
    return sv(wp.vec3(0.0), a)


@wp.kernel
def forward_kinematics(
    q: wp.array2d(dtype=float),
    qd: wp.array2d(dtype=float),
    joint_type: wp.array(dtype=int),
    parent: wp.array(dtype=int),
    q_start: wp.array(dtype=int),
    qd_start: wp.array(dtype=int),
    axis: wp.array(dtype=wp.vec3),
    X_pj: wp.array(dtype=wp.transform),
    mass: wp.array(dtype=float),
    com: wp.array(dtype=wp.vec3),
    inertia: wp.array(dtype=wp.mat33),
    link_count: int,
    # outputs
    body_X: wp.array2d(dtype=wp.transform),
    body_V: wp.array2d(dtype=wp.spatial_vector),
    dof_S: wp.array2d(dtype=wp.spatial_vector),
    body_h: wp.array2d(dtype=wp.vec3),
    body_I: wp.array2d(dtype=wp.mat33),
):
    """X_i = X_parent · X_pj · X_joint(q);  V_i = V_parent + S_i q̇_i;  world inertia (h = m c, I_o) of each link."""
    e = wp.tid()
    for i in range(link_count):
        jtype = joint_type[i]
        p = parent[i]
        d = qd_start[i]
        X = parent_transform(body_X, e, p) * X_pj[i] * joint_transform(jtype, axis[i], q, e, q_start[i])
        body_X[e, i] = X
        if jtype == JOINT_FREE:
            for k in range(6):
                dof_S[e, d + k] = unit_twist(k)
            twist = sv(wp.vec3(qd[e, d], qd[e, d + 1], qd[e, d + 2]), wp.vec3(qd[e, d + 3], qd[e, d + 4], qd[e, d + 5]))
            body_V[e, i] = parent_twist(body_V, e, p) + twist
        else:
            S = hinge_or_slide_subspace(jtype, X, axis[i])
            dof_S[e, d] = S
            body_V[e, i] = parent_twist(body_V, e, p) + S * qd[e, d]
        # inertia about the world origin: I_o = R I_c Rᵀ + m (|c|² 1 − c cᵀ), c = world COM
        m = mass[i]
        c = wp.transform_point(X, com[i])
        R = wp.quat_to_matrix(wp.transform_get_rotation(X))
        body_h[e, i] = m * c
        body_I[e, i] = R * inertia[i] * wp.transpose(R) + m * (
            wp.dot(c, c) * wp.identity(n=3, dtype=float) - wp.outer(c, c)
        )


# ------------------------------------------------------------------------------------------------- joint forces


@wp.func
def joint_force(
    act: float, q: float, qd: float, ke: float, kd: float, target: float, lower: float, upper: float,
    limit_ke: float, limit_kd: float,
):  # fmt: skip
    """τ = act − ke (q − q_target) − kd q̇ + limit_ke (max(lower − q, 0) + min(upper − q, 0)) − limit_kd q̇.

    The limit spring acts only beyond the range; the limit damping is always on (dflex)."""
    spring = limit_ke * (wp.max(lower - q, 0.0) + wp.min(upper - q, 0.0))
    return act - ke * (q - target) - kd * qd + spring - limit_kd * qd


@wp.func
def dof_force(
    e: int, d: int, q: wp.array2d(dtype=float), qd: wp.array2d(dtype=float), act: wp.array2d(dtype=float),
    dof_coord: wp.array(dtype=int), ke: wp.array(dtype=float), kd: wp.array(dtype=float),
    target: wp.array(dtype=float), lower: wp.array(dtype=float), upper: wp.array(dtype=float),
    limit_ke: float, limit_kd: float,
):  # fmt: skip
    """The joint force on dof d: `joint_force` for hinge/slide dofs, the bare actuation for a free joint's dofs."""
    c = dof_coord[d]
    if c < 0:
        return act[e, d]
    return joint_force(act[e, d], q[e, c], qd[e, d], ke[d], kd[d], target[d], lower[d], upper[d], limit_ke, limit_kd)


@wp.kernel
def joint_forces(
    q: wp.array2d(dtype=float),
    qd: wp.array2d(dtype=float),
    act: wp.array2d(dtype=float),
    dof_coord: wp.array(dtype=int),
    ke: wp.array(dtype=float),
    kd: wp.array(dtype=float),
    target: wp.array(dtype=float),
    lower: wp.array(dtype=float),
    upper: wp.array(dtype=float),
    limit_ke: float,
    limit_kd: float,
    tau: wp.array2d(dtype=float),
):
    """τ alone, one thread per (env, dof) — for inspection; the substep computes it inside `dynamics_rhs`."""
    e, d = wp.tid()
    tau[e, d] = dof_force(e, d, q, qd, act, dof_coord, ke, kd, target, lower, upper, limit_ke, limit_kd)


# -------------------------------------------------------------------------------------------------- bias forces


@wp.func
def children_wrench(body_F: wp.array2d(dtype=wp.spatial_vector), parent: wp.array(dtype=int), e: int, i: int, n: int):
    """Σ F_c over the children c of link i (children come after i in tree order)."""
    total = wp.spatial_vector()
    for c in range(i + 1, n):
        if parent[c] == i:
            total = total + body_F[e, c]
    return total


@wp.func
def parent_accel(body_A: wp.array2d(dtype=wp.spatial_vector), e: int, p: int, a0: wp.spatial_vector):
    if p < 0:
        return a0
    return body_A[e, p]


@wp.kernel
def dynamics_rhs(
    q: wp.array2d(dtype=float),
    qd: wp.array2d(dtype=float),
    act: wp.array2d(dtype=float),
    f_ext: wp.array2d(dtype=wp.spatial_vector),
    gravity: wp.vec3,
    joint_type: wp.array(dtype=int),
    parent: wp.array(dtype=int),
    qd_start: wp.array(dtype=int),
    mass: wp.array(dtype=float),
    dof_link: wp.array(dtype=int),
    dof_coord: wp.array(dtype=int),
    ke: wp.array(dtype=float),
    kd: wp.array(dtype=float),
    target: wp.array(dtype=float),
    lower: wp.array(dtype=float),
    upper: wp.array(dtype=float),
    limit_ke: float,
    limit_kd: float,
    link_count: int,
    dof_count: int,
    body_V: wp.array2d(dtype=wp.spatial_vector),
    dof_S: wp.array2d(dtype=wp.spatial_vector),
    body_h: wp.array2d(dtype=wp.vec3),
    body_I: wp.array2d(dtype=wp.mat33),
    # outputs
    body_A: wp.array2d(dtype=wp.spatial_vector),
    body_f: wp.array2d(dtype=wp.spatial_vector),
    body_F: wp.array2d(dtype=wp.spatial_vector),
    rhs: wp.array2d(dtype=float),
):
    """rhs = τ − C(q, q̇), C from RNEA with q̈ = 0 (Coriolis, centrifugal, gravity) minus external wrenches."""
    e = wp.tid()
    a0 = sv(wp.vec3(0.0), -gravity)  # a fictitious upward acceleration of the base supplies gravity
    for i in range(link_count):
        V = body_V[e, i]
        A = parent_accel(body_A, e, parent[i], a0)
        if joint_type[i] != JOINT_FREE:  # Ṡ q̇ = V ×m S q̇; a free joint's S = 1₆ is constant
            d = qd_start[i]
            A = A + cross_motion(V, dof_S[e, d] * qd[e, d])
        body_A[e, i] = A
        m = mass[i]
        h = body_h[e, i]
        I_o = body_I[e, i]
        body_f[e, i] = inertia_apply(m, h, I_o, A) + cross_force(V, inertia_apply(m, h, I_o, V)) - f_ext[e, i]
    for k in range(link_count):  # leaves first: F_i = f_i + Σ_children F_c
        i = link_count - 1 - k
        body_F[e, i] = body_f[e, i] + children_wrench(body_F, parent, e, i, link_count)
    for d in range(dof_count):
        C = wp.dot(dof_S[e, d], body_F[e, dof_link[d]])
        tau = dof_force(e, d, q, qd, act, dof_coord, ke, kd, target, lower, upper, limit_ke, limit_kd)
        rhs[e, d] = tau - C


# ------------------------------------------------------------------------------------------------- mass matrix


@wp.func
def children_mass(ic_m: wp.array2d(dtype=float), parent: wp.array(dtype=int), e: int, i: int, n: int):
    total = wp.float32(0.0)
    for c in range(i + 1, n):
        if parent[c] == i:
            total = total + ic_m[e, c]
    return total


@wp.func
def children_moment(ic_h: wp.array2d(dtype=wp.vec3), parent: wp.array(dtype=int), e: int, i: int, n: int):
    total = wp.vec3(0.0)
    for c in range(i + 1, n):
        if parent[c] == i:
            total = total + ic_h[e, c]
    return total


@wp.func
def children_inertia(ic_I: wp.array2d(dtype=wp.mat33), parent: wp.array(dtype=int), e: int, i: int, n: int):
    total = wp.mat33(0.0)
    for c in range(i + 1, n):
        if parent[c] == i:
            total = total + ic_I[e, c]
    return total


@wp.kernel
def mass_matrix(
    parent: wp.array(dtype=int),
    mass: wp.array(dtype=float),
    ancestor: wp.array2d(dtype=int),
    dof_link: wp.array(dtype=int),
    armature: wp.array(dtype=float),
    link_count: int,
    dof_count: int,
    dof_S: wp.array2d(dtype=wp.spatial_vector),
    body_h: wp.array2d(dtype=wp.vec3),
    body_I: wp.array2d(dtype=wp.mat33),
    # outputs (H must arrive zeroed: entries of unrelated links are never written)
    ic_m: wp.array2d(dtype=float),
    ic_h: wp.array2d(dtype=wp.vec3),
    ic_I: wp.array2d(dtype=wp.mat33),
    H: wp.array3d(dtype=float),
):
    """CRBA in world coordinates: Ic_i = M_i + Σ_children Ic_c; H_ab = S_bᵀ (Ic_link(a) S_a) when link(b) is link(a)
    or one of its ancestors (both H_ab and H_ba then), + armature_a on the diagonal."""
    e = wp.tid()
    for k in range(link_count):
        i = link_count - 1 - k
        ic_m[e, i] = mass[i] + children_mass(ic_m, parent, e, i, link_count)
        ic_h[e, i] = body_h[e, i] + children_moment(ic_h, parent, e, i, link_count)
        ic_I[e, i] = body_I[e, i] + children_inertia(ic_I, parent, e, i, link_count)
    for a in range(dof_count):
        i = dof_link[a]
        F = inertia_apply(ic_m[e, i], ic_h[e, i], ic_I[e, i], dof_S[e, a])
        for b in range(dof_count):
            j = dof_link[b]
            if j == i:
                H[e, a, b] = wp.dot(dof_S[e, b], F) + wp.where(a == b, armature[a], 0.0)
            elif ancestor[i, j] != 0:
                value = wp.dot(dof_S[e, b], F)
                H[e, a, b] = value
                H[e, b, a] = value


# ------------------------------------------------------------------------------------------- Cholesky factor/solve


@wp.func
def row_dot(L: wp.array3d(dtype=float), e: int, i: int, j: int, n: int):
    """Σ_{k<n} L_ik L_jk."""
    total = wp.float32(0.0)
    for k in range(n):
        total = total + L[e, i, k] * L[e, j, k]
    return total


@wp.func
def lower_dot(L: wp.array3d(dtype=float), y: wp.array2d(dtype=float), e: int, i: int):
    """Σ_{k<i} L_ik y_k (forward substitution)."""
    total = wp.float32(0.0)
    for k in range(i):
        total = total + L[e, i, k] * y[e, k]
    return total


@wp.func
def upper_dot(L: wp.array3d(dtype=float), x: wp.array2d(dtype=float), e: int, i: int, n: int):
    """Σ_{k>i} L_ki x_k (back substitution with Lᵀ)."""
    total = wp.float32(0.0)
    for k in range(i + 1, n):
        total = total + L[e, k, i] * x[e, k]
    return total


@wp.kernel
def cholesky(H: wp.array3d(dtype=float), n: int, L: wp.array3d(dtype=float)):
    """H = L Lᵀ column by column: L_jj = √(H_jj − Σ_{k<j} L_jk²),  L_ij = (H_ij − Σ_{k<j} L_ik L_jk) / L_jj  (i > j).
    Reads only H's lower triangle; L's upper triangle is left as allocated (zeros)."""
    e = wp.tid()
    for j in range(n):
        diag = wp.sqrt(H[e, j, j] - row_dot(L, e, j, j, j))
        L[e, j, j] = diag
        for i in range(j + 1, n):
            L[e, i, j] = (H[e, i, j] - row_dot(L, e, i, j, j)) / diag


@wp.kernel
def cholesky_solve(
    L: wp.array3d(dtype=float),
    b: wp.array2d(dtype=float),
    n: int,
    y: wp.array2d(dtype=float),
    x: wp.array2d(dtype=float),
):
    """x = H⁻¹ b = L⁻ᵀ (L⁻¹ b): forward substitution into y, then back substitution into x."""
    e = wp.tid()
    for i in range(n):
        y[e, i] = (b[e, i] - lower_dot(L, y, e, i)) / L[e, i, i]
    for k in range(n):
        i = n - 1 - k
        x[e, i] = (y[e, i] - upper_dot(L, x, e, i, n)) / L[e, i, i]


# ----------------------------------------------------------------------------------------------------- integrate


@wp.kernel
def integrate(
    q: wp.array2d(dtype=float),
    qd: wp.array2d(dtype=float),
    qdd: wp.array2d(dtype=float),
    joint_type: wp.array(dtype=int),
    q_start: wp.array(dtype=int),
    qd_start: wp.array(dtype=int),
    X_pj: wp.array(dtype=wp.transform),
    link_count: int,
    dt: float,
    # outputs (fresh arrays: the state is never written in place)
    q_out: wp.array2d(dtype=float),
    qd_out: wp.array2d(dtype=float),
):
    """Semi-implicit Euler: q̇' = q̇ + dt q̈, then q' = q + dt q̇'.

    Free joint (a root; X_pj = (t0, R0)): with the new twist [ω; v] at the world origin and the link origin
    P = t0 + R0 p, the parent-frame rates are ṗ = R0ᵀ (v + ω × P) and ṙ = ½ [R0ᵀω; 0] ⊗ r; the quaternion is
    renormalised after the step."""
    e = wp.tid()
    for i in range(link_count):
        s = q_start[i]
        d = qd_start[i]
        if joint_type[i] == JOINT_FREE:
            w = wp.vec3(qd[e, d] + dt * qdd[e, d], qd[e, d + 1] + dt * qdd[e, d + 1], qd[e, d + 2] + dt * qdd[e, d + 2])
            v = wp.vec3(
                qd[e, d + 3] + dt * qdd[e, d + 3], qd[e, d + 4] + dt * qdd[e, d + 4], qd[e, d + 5] + dt * qdd[e, d + 5]
            )
            X0 = X_pj[i]
            R0 = wp.transform_get_rotation(X0)
            p = wp.vec3(q[e, s], q[e, s + 1], q[e, s + 2])
            r = wp.quat(q[e, s + 3], q[e, s + 4], q[e, s + 5], q[e, s + 6])
            P = wp.transform_point(X0, p)
            p_new = p + dt * wp.quat_rotate_inv(R0, v + wp.cross(w, P))
            w_p = wp.quat_rotate_inv(R0, w)
            r_new = wp.normalize(r + (0.5 * dt) * (wp.quat(w_p[0], w_p[1], w_p[2], 0.0) * r))
            qd_out[e, d] = w[0]
            qd_out[e, d + 1] = w[1]
            qd_out[e, d + 2] = w[2]
            qd_out[e, d + 3] = v[0]
            qd_out[e, d + 4] = v[1]
            qd_out[e, d + 5] = v[2]
            q_out[e, s] = p_new[0]
            q_out[e, s + 1] = p_new[1]
            q_out[e, s + 2] = p_new[2]
            q_out[e, s + 3] = r_new[0]
            q_out[e, s + 4] = r_new[1]
            q_out[e, s + 5] = r_new[2]
            q_out[e, s + 6] = r_new[3]
        else:
            velocity = qd[e, d] + dt * qdd[e, d]
            qd_out[e, d] = velocity
            q_out[e, s] = q[e, s] + dt * velocity
