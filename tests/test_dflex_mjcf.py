"""The dflex MJCF loader (plugins/pwmbench_dflex/mjcf.py): dflex's model rules, checked against MuJoCo itself.

MuJoCo reads the same files with different rules for *structure* (it keeps jointless bodies, one body per
several joints), but with the same physics for *mass*: once every geom has density 1000 and the inertia comes
from the geoms, MuJoCo's per-body masses and inertias, combined over the bodies that dflex merges into one link,
must equal the loader's links to rounding.
"""

from __future__ import annotations

import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pwmbench_dflex import mjcf
from pwmbench_dflex.mjcf import (
    UNLIMITED,
    FromMJCF,
    MJCFError,
    capsule_mass_properties,
    load_mjcf,
    parse_mjcf,
    sphere_mass_properties,
)

GYMNASIUM = ("ant", "hopper", "humanoid", "half_cheetah")


def gym(name: str) -> Path:
    return mjcf.gymnasium_asset(name)


def dm_humanoid() -> Path:
    return mjcf.dm_control_asset("humanoid")


def model_path(name: str) -> Path:
    return dm_humanoid() if name == "dm_humanoid" else gym(name)


def write(tmp_path: Path, body: str, head: str = "") -> Path:
    """A small model file: `head` goes before <worldbody> (compiler, defaults), `body` inside it."""
    path = tmp_path / "model.xml"
    path.write_text(f"<mujoco>{head}<worldbody>{body}</worldbody></mujoco>")
    return path


# ------------------------------------------------------------------------------------------- dflex's model facts


def test_ant_torso_link_weighs_96_78_kg():
    ant = load_mjcf(gym("ant"), density=1000.0)
    torso = ant.links[0]
    assert torso.joint_type == "free"
    assert torso.mass == pytest.approx(96.78, abs=0.01)
    sphere = [g for g in torso.geoms if g.kind == "sphere"]
    aux = [g for g in torso.geoms if g.name.startswith("aux")]
    assert len(sphere) == 1 and sphere[0].mass == pytest.approx(65.45, abs=0.01)
    assert len(aux) == 4  # the jointless leg bodies merged into the torso link
    for capsule in aux:
        assert capsule.radius == pytest.approx(0.08)
        assert 2 * capsule.half_length == pytest.approx(0.2828, abs=1e-4)
        assert capsule.mass == pytest.approx(7.83, abs=0.01)


def test_density_scales_every_mass_and_ignores_the_files_own():
    # ant.xml's default geom density is 5; dflex uses the loader's density for every geom.
    light, heavy = load_mjcf(gym("ant"), density=500.0), load_mjcf(gym("ant"), density=1000.0)
    assert heavy.total_mass == pytest.approx(2 * light.total_mass)
    np.testing.assert_allclose(heavy.links[3].inertia, 2 * light.links[3].inertia)


@pytest.mark.parametrize(
    "name, joints, q, qd",
    [
        ("ant", ["free"] + ["hinge"] * 8, 15, 14),
        ("hopper", ["slide", "slide"] + ["hinge"] * 4, 6, 6),
        ("half_cheetah", ["slide", "slide"] + ["hinge"] * 7, 9, 9),
        # gymnasium's humanoid has no ankles: 17 hinges. dflex's 21-hinge humanoid is DeepMind's (dm_control).
        ("humanoid", ["free"] + ["hinge"] * 17, 24, 23),
        ("dm_humanoid", ["free"] + ["hinge"] * 21, 28, 27),
    ],
)
def test_links_joints_and_coordinate_sizes(name, joints, q, qd):
    model = load_mjcf(model_path(name))
    assert [link.joint_type for link in model.links] == joints
    assert (model.coord_count, model.dof_count) == (q, qd)
    assert all(link.parent < i for i, link in enumerate(model.links))  # tree order: parents first
    sizes = [link.coord_count for link in model.links]
    assert list(model.coord_start) == np.cumsum([0] + sizes[:-1]).tolist()
    assert len(set(model.joint_names)) == len(model.links)


def test_ant_layout_of_q_and_qdot():
    ant = load_mjcf(gym("ant"))
    assert ant.coord_start[:3] == (0, 7, 8) and ant.dof_start[:3] == (0, 6, 7)
    assert ant.joint_names[1:3] == ("hip_1", "ankle_1")


def test_hopper_root_is_two_massless_slides_then_the_torso_hinge():
    hopper = load_mjcf(gym("hopper"))
    rootx, rootz, rooty = hopper.links[:3]
    assert [link.joint_name for link in (rootx, rootz, rooty)] == ["rootx", "rootz", "rooty"]
    assert (rootx.parent, rootz.parent, rooty.parent) == (-1, 0, 1)
    assert rootx.mass == rootz.mass == 0.0 and not rootx.geoms and not rootz.geoms
    assert [g.name for g in rooty.geoms] == ["torso_geom"]
    np.testing.assert_allclose(rootx.joint_axis, [1, 0, 0])
    np.testing.assert_allclose(rootz.joint_axis, [0, 0, 1])
    # The slides are anchored 1.25 below the torso (pos="0 0 -1.25"): at the world origin; the hinge at the torso.
    frames = hopper.world_frames()
    np.testing.assert_allclose(frames[0][0], [0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(frames[2][0], [0, 0, 1.25], atol=1e-12)
    assert rootz.ref == 1.25  # MuJoCo's qpos; q = 0 is the model pose
    assert (rootx.lower, rootx.upper) == (-UNLIMITED, UNLIMITED)


def test_multi_joint_body_is_a_chain_of_massless_links_with_geoms_on_the_last():
    humanoid = load_mjcf(gym("humanoid"))
    hip = [humanoid.link_index(n) for n in ("right_hip_x", "right_hip_z", "right_hip_y")]
    assert hip == [hip[0], hip[0] + 1, hip[0] + 2]
    assert [humanoid.links[i].parent for i in hip[1:]] == hip[:2]
    assert humanoid.links[hip[0]].mass == humanoid.links[hip[1]].mass == 0.0
    assert [g.name for g in humanoid.links[hip[2]].geoms] == ["right_thigh1"]
    assert humanoid.body_link("right_thigh") == hip[2]
    # the jointless foot merges into the shin link
    shin = humanoid.links[humanoid.body_link("right_shin")]
    assert [g.name for g in shin.geoms] == ["right_shin1", "right_foot"]
    np.testing.assert_allclose(shin.geoms[1].position, [0, 0, -0.45 + 0.1 - 0.02])  # knee anchor at z = 0.02


def test_contact_points_are_sphere_centres_and_capsule_ends():
    ant = load_mjcf(gym("ant"))
    torso_points = [c for c in ant.contact_points if c.link == 0]
    assert len(torso_points) == 1 + 2 * 4
    ends = {tuple(np.round(c.position, 9)) for c in torso_points if c.radius == pytest.approx(0.08)}
    assert ends >= {(0.0, 0.0, 0.0), (0.2, 0.2, 0.0), (-0.2, -0.2, 0.0)}
    links, positions, radii = ant.contact_arrays()
    assert links.dtype == np.int32 and positions.shape == (len(links), 3) and radii.shape == (len(links),)
    assert len(links) == 1 + 2 * (4 + 8)
    # the ankle link's capsule runs from its origin to (0.4, 0.4, 0)
    ankle = ant.link_index("ankle_1")
    pts = sorted(tuple(np.round(p, 9)) for p in positions[links == ankle])
    assert pts == [(0.0, 0.0, 0.0), (0.4, 0.4, 0.0)]


def test_results_are_immutable():
    ant = load_mjcf(gym("ant"))
    with pytest.raises(AttributeError):
        ant.links[0].mass = 1.0
    with pytest.raises(ValueError):
        ant.links[0].geoms[0].position[0] = 1.0


# -------------------------------------------------------------------------------------------- against MuJoCo


def mujoco_at_density(path: Path, tmp_path: Path, density: float = 1000.0):
    """MuJoCo's model of `path` with every geom at `density` and inertias from geoms.

    gymnasium's files set a default geom density (ant.xml: 5) or a total mass (half_cheetah: settotalmass=14),
    and MJCF allows per-geom masses and explicit <inertial>s; dflex ignores all of those. Writing density=1000
    on every geom (an element's own attribute beats its class) and deleting the rest makes MuJoCo compute the
    masses the way dflex does, so the two must agree to rounding. Included files are copied next to the patch.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    tree = ET.parse(path)
    root = tree.getroot()
    for compiler in root.iter("compiler"):
        compiler.attrib.pop("settotalmass", None)
        compiler.set("inertiafromgeom", "true")
    for parent in root.iter():
        for child in list(parent):
            if child.tag == "inertial":
                parent.remove(child)
            elif child.tag == "geom" and parent.tag != "default":
                child.attrib.pop("mass", None)
                child.set("density", str(density))
            elif child.tag == "geom":
                child.attrib.pop("mass", None)
                child.attrib.pop("density", None)
    for include in root.iter("include"):
        target = tmp_path / include.get("file")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path.parent / include.get("file"), target)
    patched = tmp_path / path.name
    tree.write(patched)
    model = mujoco.MjModel.from_xml_path(str(patched))
    data = mujoco.MjData(model)  # qpos = qpos0: the model configuration
    mujoco.mj_kinematics(model, data)
    return model, data


def world_mass_properties(model, data, bodies):
    """Mass, centre of mass and inertia about it (world frame) of a set of MuJoCo bodies taken as one."""
    mass = sum(model.body_mass[b] for b in bodies)
    com = sum(model.body_mass[b] * data.xipos[b] for b in bodies) / mass
    inertia = np.zeros((3, 3))
    for b in bodies:
        rot = data.ximat[b].reshape(3, 3)
        d = data.xipos[b] - com
        inertia += rot @ np.diag(model.body_inertia[b]) @ rot.T  # the body's own, turned into the world
        inertia += model.body_mass[b] * (d @ d * np.eye(3) - np.outer(d, d))  # moved to the common COM
    return mass, com, inertia


def merged_bodies(model, body):
    """`body` and its descendants reached through jointless bodies only: what dflex welds into one link."""
    group, frontier = [body], [body]
    while frontier:
        parent = frontier.pop()
        for child in range(1, model.nbody):
            if model.body_parentid[child] == parent and model.body_jntnum[child] == 0:
                group.append(child)
                frontier.append(child)
    return group


def matrix(q_xyzw):
    out = np.zeros(9)
    mujoco.mju_quat2Mat(out, np.array([q_xyzw[3], *q_xyzw[:3]]))  # MuJoCo's own (wxyz) conversion
    return out.reshape(3, 3)


def check_against_mujoco(path: Path, tmp_path: Path):
    """Every jointed MuJoCo body (with its merged jointless descendants) against its loader link, in the world."""
    ours = load_mjcf(path, density=1000.0)
    model, data = mujoco_at_density(path, tmp_path)
    frames = ours.world_frames()
    checked = 0
    for body in range(1, model.nbody):
        if model.body_jntnum[body] == 0:
            continue
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body)  # None for ant's unnamed ankle bodies
        last_joint = model.body_jntadr[body] + model.body_jntnum[body] - 1
        index = ours.link_index(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, last_joint))
        if name is not None:
            assert ours.body_link(name) == index
        link = ours.links[index]
        position, quat = frames[index]
        rot = matrix(quat)
        mass, com, inertia = world_mass_properties(model, data, merged_bodies(model, body))
        assert link.mass == pytest.approx(mass, rel=1e-6), name
        scale = np.abs(inertia).max()
        np.testing.assert_allclose(position + rot @ link.com, com, rtol=1e-6, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(rot @ link.inertia @ rot.T, inertia, rtol=1e-6, atol=1e-7 * scale, err_msg=name)
        # the link frame: the body's orientation, its origin at the joint anchor, the axis the joint's
        np.testing.assert_allclose(rot, data.xmat[body].reshape(3, 3), atol=1e-9, err_msg=name)
        for k in range(model.body_jntnum[body]):
            joint = model.body_jntadr[body] + k
            jname = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint)
            index = ours.link_index(jname)
            if model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_FREE:
                np.testing.assert_allclose(frames[index][0], data.xpos[body], atol=1e-9)
                continue
            np.testing.assert_allclose(frames[index][0], data.xanchor[joint], atol=1e-9, err_msg=jname)
            np.testing.assert_allclose(matrix(frames[index][1]) @ ours.links[index].joint_axis, data.xaxis[joint],
                                       atol=1e-9, err_msg=jname)  # fmt: skip
            if k < model.body_jntnum[body] - 1:
                assert ours.links[index].mass == 0.0
        checked += 1
    assert checked == len({link.name for link in ours.links})
    return ours, model


@pytest.mark.parametrize("name", [*GYMNASIUM, "dm_humanoid"])
def test_mass_inertia_and_frames_match_mujoco_at_density_1000(name, tmp_path):
    check_against_mujoco(model_path(name), tmp_path)


@pytest.mark.parametrize("name", [*GYMNASIUM, "dm_humanoid"])
def test_joint_parameters_match_mujoco(name):
    """Ranges (degrees → radians unless the compiler says radian), limits, axes and per-joint gains, with the
    loader reading gains from the MJCF (FromMJCF(0), the default)."""
    path = model_path(name)
    ours = load_mjcf(path)
    model = mujoco.MjModel.from_xml_path(str(path))
    for joint in range(model.njnt):
        link = ours.links[ours.link_index(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint))]
        dof = model.jnt_dofadr[joint]
        assert link.stiffness == pytest.approx(model.jnt_stiffness[joint])
        assert link.damping == pytest.approx(model.dof_damping[dof])
        assert link.armature == pytest.approx(model.dof_armature[dof])
        if model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_FREE:
            continue
        if model.jnt_limited[joint]:
            ref = model.qpos0[model.jnt_qposadr[joint]]
            np.testing.assert_allclose([link.lower, link.upper], model.jnt_range[joint] - ref, atol=1e-12)
        else:
            assert (link.lower, link.upper) == (-UNLIMITED, UNLIMITED)
        np.testing.assert_allclose(link.joint_axis, model.jnt_axis[joint], atol=1e-12)


def test_humanoid_joint_values_and_overrides():
    path = gym("humanoid")
    humanoid = load_mjcf(path)
    hip_y = humanoid.links[humanoid.link_index("right_hip_y")]
    assert (hip_y.lower, hip_y.upper) == pytest.approx((math.radians(-110), math.radians(20)))
    assert (hip_y.stiffness, hip_y.damping, hip_y.armature) == (20.0, 5.0, 0.008)
    shoulder = humanoid.links[humanoid.link_index("right_shoulder1")]
    np.testing.assert_allclose(shoulder.joint_axis, np.array([2, 1, 1]) / math.sqrt(6))
    knee = humanoid.links[humanoid.link_index("right_knee")]
    assert (knee.stiffness, knee.damping, knee.armature) == (0.0, 1.0, 0.006)  # damping from <default>
    root = humanoid.links[0]
    assert (root.lower, root.upper) == (-UNLIMITED, UNLIMITED) and not root.joint_axis.any()

    # FromMJCF: the file's value where it has one, the fallback elsewhere
    fallback = load_mjcf(path, stiffness=FromMJCF(5.0), damping=FromMJCF(0.1), armature=FromMJCF(0.007))
    knee = fallback.links[fallback.link_index("right_knee")]
    assert (knee.stiffness, knee.damping, knee.armature) == (5.0, 1.0, 0.006)
    # ... counting only what is written on the <joint> itself
    own = load_mjcf(path, damping=FromMJCF(0.1), gains_from_defaults=False)
    assert own.links[own.link_index("right_knee")].damping == 0.1
    assert own.links[own.link_index("right_hip_y")].damping == 5.0

    # a number overrides every joint (dflex's Ant and Hopper)
    forced = load_mjcf(path, stiffness=0.0, damping=2.0, armature=0.05)
    assert {(lk.stiffness, lk.damping, lk.armature) for lk in forced.links} == {(0.0, 2.0, 0.05)}


def test_radians_argument_overrides_the_compiler():
    hopper = load_mjcf(gym("hopper"), radians=True)
    thigh = hopper.links[hopper.link_index("thigh_joint")]
    assert (thigh.lower, thigh.upper) == (-150.0, 0.0)
    cheetah = load_mjcf(gym("half_cheetah"))  # compiler angle="radian"
    bthigh = cheetah.links[cheetah.link_index("bthigh")]
    assert (bthigh.lower, bthigh.upper) == (-0.52, 1.05)
    in_degrees = load_mjcf(gym("half_cheetah"), radians=False)
    assert in_degrees.links[in_degrees.link_index("bthigh")].upper == pytest.approx(math.radians(1.05))


def test_defaults_classes_childclass_and_nesting_match_mujoco(tmp_path):
    head = """
      <compiler angle="degree"/>
      <default>
        <geom type="capsule" size="0.05 0.2"/>
        <joint damping="1" armature="0.1" range="-10 10"/>
        <default class="thick">
          <geom size="0.08 0.1"/>
          <default class="ball"><geom type="sphere" size="0.11"/><joint stiffness="7"/></default>
        </default>
        <default class="arm"><joint axis="0 1 0" damping="3"/></default>
      </default>"""
    body = """
      <body name="base" pos="0 0 1" childclass="thick">
        <freejoint name="root"/>
        <geom name="g0"/>
        <geom name="g1" class="ball" pos="0 0 0.3"/>
        <body name="upper" pos="0.2 0 0" euler="0 30 0" childclass="arm">
          <joint name="j1" pos="0 0 0.05"/>
          <joint name="j2" class="ball" axis="1 0 0" range="-20 40"/>
          <geom name="g2" fromto="0 0 0 0.3 0 0" size="0.04"/>
          <body name="hand" pos="0.3 0 0" quat="0.9 0.1 0.3 0.2"><geom name="g3" class="ball"/></body>
        </body>
      </body>"""
    path = write(tmp_path, body, head)
    ours, _ = check_against_mujoco(path, tmp_path / "mj")
    base = ours.links[0]
    assert [g.kind for g in base.geoms] == ["capsule", "sphere"]
    assert base.geoms[0].radius == 0.08 and base.geoms[1].radius == 0.11
    assert base.damping == 0.0  # a <freejoint> takes no defaults, as in MuJoCo
    j1, j2 = ours.links[1], ours.links[2]
    assert (j1.damping, j1.stiffness) == (3.0, 0.0)
    assert (j2.damping, j2.stiffness, j2.upper) == (1.0, 7.0, pytest.approx(math.radians(40)))
    np.testing.assert_allclose(j1.joint_axis, [0, 1, 0])


def numbers(low, high):
    """Floats with few digits, so that the XML text is the number both parsers read."""
    return st.floats(low, high).map(lambda v: round(v, 4))


@settings(max_examples=25)
@given(
    seq=st.text("xyzXYZ", min_size=3, max_size=3),
    angles=st.lists(numbers(-180, 180), min_size=3, max_size=3),
    axisangle=st.lists(numbers(-1, 1), min_size=4, max_size=4),
    zaxis=st.lists(numbers(-1, 1), min_size=3, max_size=3),
)
def test_body_orientations_match_mujoco(seq, angles, axisangle, zaxis):
    """euler (in the compiler's eulerseq), axisangle, zaxis, xyaxes and quat (wxyz in the file) against MuJoCo."""
    if np.linalg.norm(axisangle[:3]) < 1e-3 or np.linalg.norm(zaxis) < 1e-3:
        return
    bodies = [
        f'euler="{" ".join(map(str, angles))}"',
        f'axisangle="{" ".join(map(str, axisangle[:3]))} {axisangle[3] * 180}"',
        f'zaxis="{" ".join(map(str, zaxis))}"',
        'xyaxes="1 2 0 -1 3 1"',
        'quat="0.9 0.1 -0.3 0.2"',
    ]
    xml = (
        f'<mujoco><compiler eulerseq="{seq}"/><worldbody>'
        + "".join(
            f'<body name="b{i}" pos="{i} 0 0" {o}><joint/><geom size="0.1"/></body>' for i, o in enumerate(bodies)
        )
        + "</worldbody></mujoco>"
    )
    ours = parse_mjcf(xml)
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    for i, (_, quat) in enumerate(ours.world_frames()):
        np.testing.assert_allclose(matrix(quat), data.xmat[i + 1].reshape(3, 3), atol=1e-9)


# ------------------------------------------------------------------------------------------- mass properties


def monte_carlo_capsule(radius, half_length, density, n=2_000_000, seed=0):
    """Mass and principal inertia of a z-axis capsule from uniform samples in its bounding box."""
    rng = np.random.default_rng(seed)
    extent = np.array([radius, radius, half_length + radius])
    p = rng.uniform(-extent, extent, size=(n, 3))
    z_out = np.clip(np.abs(p[:, 2]) - half_length, 0.0, None)  # distance past the cylinder along the axis
    inside = p[:, 0] ** 2 + p[:, 1] ** 2 + z_out**2 <= radius**2
    cell = density * np.prod(2 * extent) / n
    q = p[inside]
    ixx = cell * np.sum(q[:, 1] ** 2 + q[:, 2] ** 2)
    iyy = cell * np.sum(q[:, 0] ** 2 + q[:, 2] ** 2)
    izz = cell * np.sum(q[:, 0] ** 2 + q[:, 1] ** 2)
    return cell * inside.sum(), np.array([ixx, iyy, izz])


@pytest.mark.parametrize("radius, half_length", [(0.08, 0.1414), (0.05, 0.2), (0.1, 0.02), (0.3, 0.0)])
def test_capsule_formulas_against_monte_carlo(radius, half_length):
    mass, inertia = capsule_mass_properties(radius, half_length, 1000.0)
    mc_mass, mc_inertia = monte_carlo_capsule(radius, half_length, 1000.0)
    assert mass == pytest.approx(mc_mass, rel=0.01)
    np.testing.assert_allclose(inertia, mc_inertia, rtol=0.01)
    if half_length == 0.0:  # a capsule of no length is a sphere
        sphere_mass, sphere_inertia = sphere_mass_properties(radius, 1000.0)
        assert mass == pytest.approx(sphere_mass) and inertia == pytest.approx(sphere_inertia)


def test_sphere_formula():
    mass, inertia = sphere_mass_properties(0.25, 1000.0)
    assert mass == pytest.approx(65.45, abs=0.01)
    np.testing.assert_allclose(inertia, 0.4 * mass * 0.25**2)


def quaternions():
    return st.lists(numbers(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1)


@given(q=quaternions(), radius=numbers(0.01, 0.5), half_length=numbers(0.01, 1.0))
def test_rotated_capsule_inertia_is_r_i_rt(q, radius, half_length):
    xml = (
        f'<mujoco><worldbody><body><joint/><geom type="capsule" size="{radius} {half_length}" pos="0.1 0.2 0.3" '
        f'quat="{" ".join(map(str, q))}"/></body></worldbody></mujoco>'
    )
    geom = parse_mjcf(xml).links[0].geoms[0]
    w, x, y, z = np.array(q) / np.linalg.norm(q)
    np.testing.assert_allclose(geom.orientation, [x, y, z, w], atol=1e-12)  # stored xyzw
    mass, principal = capsule_mass_properties(radius, half_length, 1000.0)
    rot = matrix(geom.orientation)
    np.testing.assert_allclose(geom.inertia, rot @ np.diag(principal) @ rot.T, rtol=1e-9, atol=1e-12 * mass)
    link = parse_mjcf(xml).links[0]  # one geom: the link inertia about its COM is the geom's
    np.testing.assert_allclose(link.com, [0.1, 0.2, 0.3])
    np.testing.assert_allclose(link.inertia, geom.inertia, atol=1e-12 * mass)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(geom.inertia)), np.sort(principal), rtol=1e-9)


def test_fromto_equals_pos_size_and_zaxis(tmp_path):
    a = parse_mjcf('<mujoco><worldbody><body><joint/><geom type="capsule" fromto="0 0 0 0.3 0 0.4" size="0.05"/>'
                   "</body></worldbody></mujoco>").links[0].geoms[0]  # fmt: skip
    b = parse_mjcf('<mujoco><worldbody><body><joint/><geom type="capsule" pos="0.15 0 0.2" zaxis="0.3 0 0.4" '
                   'size="0.05 0.25"/></body></worldbody></mujoco>').links[0].geoms[0]  # fmt: skip
    assert a.half_length == pytest.approx(0.25) and a.mass == pytest.approx(b.mass)
    np.testing.assert_allclose(a.inertia, b.inertia, atol=1e-12)
    np.testing.assert_allclose(a.contact_points, [[0, 0, 0], [0.3, 0, 0.4]], atol=1e-12)


def test_parallel_axis_over_two_spheres():
    xml = ('<mujoco><worldbody><body><joint/><geom size="0.1" pos="-0.5 0 0"/><geom size="0.1" pos="0.5 0 0"/>'
           "</body></worldbody></mujoco>")  # fmt: skip
    link = parse_mjcf(xml).links[0]
    m, i = sphere_mass_properties(0.1, 1000.0)
    np.testing.assert_allclose(link.com, 0, atol=1e-15)
    np.testing.assert_allclose(np.diag(link.inertia), 2 * i + [0, 2 * m * 0.25, 2 * m * 0.25])


# ---------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kind", ["box", "cylinder", "ellipsoid", "mesh"])
def test_unsupported_geom_type_names_the_geom(tmp_path, kind):
    path = write(tmp_path, f'<body name="b"><joint/><geom name="crate" type="{kind}" size="0.1 0.1 0.1"/></body>')
    with pytest.raises(MJCFError, match=f"'crate'.*'{kind}'"):
        load_mjcf(path)


def test_floor_plane_is_skipped_but_other_world_geoms_are_errors(tmp_path):
    ok = write(tmp_path, '<geom name="floor" type="plane" size="1 1 1"/><body><joint/><geom size="0.1"/></body>')
    assert len(load_mjcf(ok).links[0].geoms) == 1
    with pytest.raises(MJCFError, match="'rock'"):
        load_mjcf(write(tmp_path, '<geom name="rock" size="0.1"/><body><joint/><geom size="0.1"/></body>'))
    with pytest.raises(MJCFError, match="'wall'"):
        load_mjcf(write(tmp_path, '<body><joint/><geom name="wall" type="plane" size="1 1 1"/></body>'))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nowhere.xml"):
        load_mjcf("/nonexistent/nowhere.xml")


@pytest.mark.parametrize("kind, hint", [("ball", "ball"), ("hinj", "did you mean 'hinge'")])
def test_bad_joint_type_names_the_joint(tmp_path, kind, hint):
    path = write(tmp_path, f'<body name="b"><joint name="neck" type="{kind}"/><geom size="0.1"/></body>')
    with pytest.raises(MJCFError, match=f"'neck'.*{hint}"):
        load_mjcf(path)


@pytest.mark.parametrize(
    "body, head, message",
    [
        ('<body><joint class="nope"/><geom size="0.1"/></body>', "", "unknown default class 'nope'"),
        ('<body name="s"><geom size="0.1"/></body>', "", "'s' has no joint"),
        ('<body><joint range="0 1" limited="true"/><geom type="capsule" name="c" size="0.1"/></body>', "", "'c'"),
        ('<body><joint name="j" limited="true"/><geom size="0.1"/></body>', "", "'j' is limited but has no range"),
        ('<body><body><freejoint name="f"/><geom size="0.1"/></body><joint/></body>', "", "free joint 'f'"),
        ("<body><joint/><geom size='0.1'/></body>", '<compiler coordinate="global"/>', "global"),
    ],
)
def test_clear_errors(tmp_path, body, head, message):
    with pytest.raises(MJCFError, match=message):
        load_mjcf(write(tmp_path, body, head))


def test_not_xml_or_not_mujoco():
    with pytest.raises(MJCFError, match="well-formed"):
        parse_mjcf("<mujoco>")
    with pytest.raises(MJCFError, match="<robot>"):
        parse_mjcf("<robot/>")


def test_gymnasium_asset_names_and_missing_package(monkeypatch):
    assert mjcf.gymnasium_asset("ant") == mjcf.gymnasium_asset("ant.xml")
    for name in GYMNASIUM:
        assert mjcf.gymnasium_asset(name).is_file()
    with pytest.raises(FileNotFoundError, match="did you mean 'hopper.xml'"):
        mjcf.gymnasium_asset("hoper")
    monkeypatch.setattr(mjcf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="gymnasium is not installed"):
        mjcf.gymnasium_asset("ant")
