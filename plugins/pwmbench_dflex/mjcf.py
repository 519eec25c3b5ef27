"""MJCF (MuJoCo XML) → dflex-style reduced-coordinate articulation, in numpy and the standard library only.

Why a loader of our own: the dflex tasks are defined by MuJoCo model files (gymnasium ships the same bodies and
geoms) but dflex read them with *its* rules, which differ from MuJoCo's, and the Warp simulator needs exactly
those rules (reference/dflex.md):

- **One link per MJCF joint.** A body with several joints becomes a chain of massless links, one per joint in
  document order; the body's geoms attach to the last link of the chain. A body with no joint is welded to its
  parent: its geoms are added to the parent's link, transformed into that link's frame.
- **Masses from one density.** Every geom's mass is `density · volume` with the loader's `density`; MJCF
  `density`, `mass`, `<inertial>` and `settotalmass` are ignored.
- **Only spheres and capsules**, whose fixed contact points (sphere centres, capsule end points, each with its
  radius) are what dflex collides with the ground plane. Planes in `<worldbody>` (the floor) are skipped; any
  other geom type is an error naming the geom.
- Hinge ranges are in degrees unless the compiler says `angle="radian"` (or `radians=` overrides it);
  unlimited joints get the range ±1e6.

Conventions of the result:

- **Quaternions are stored x, y, z, w** (dflex's and Warp's order). MJCF writes them w, x, y, z; the
  conversion happens once, while parsing.
- Coordinates stay MJCF's (z up). The tasks rotate the root themselves (dflex's tasks are y up).
- A link's frame has its body's orientation and its origin at its joint's anchor (the joint's `pos`), so a
  hinge turns about the link origin, as a Featherstone joint does. For the (usual) joints with `pos="0 0 0"`
  that is the body's frame; a free joint's anchor is always the body origin.
- **q = 0 is the model configuration** (for a free joint: position 0 and the identity quaternion relative to
  the link's parent frame, which for a root link is the world). MuJoCo's `ref` is kept in `Link.ref`; MuJoCo's
  qpos is `q + ref`, so the limits are stored shifted by `−ref` to stay limits on q.
- Free joint: q = position (3) + quaternion xyzw (4), q̇ = 6; hinge and slide: 1 and 1.

Mass properties (geom frame: capsule axis along local z, centre at the origin; ρ = density, r = radius,
h = half-length, L = 2h):

- sphere: m = ρ·4/3·π·r³, I = 2/5·m·r² about every axis.
- capsule = a cylinder (m_c = ρ·π·r²·L) plus two hemispheres (together m_s = ρ·4/3·π·r³):
  I_zz = m_c·r²/2 + m_s·2/5·r²;
  I_xx = I_yy = m_c·(r²/4 + L²/12) + m_s·(2/5·r² + L²/4 + 3/8·L·r). The hemisphere term is each hemisphere's
  inertia about its flat face (2/5·m·r², as for a sphere) moved to its centre of mass (3r/8 from the face,
  parallel-axis theorem backwards) and then to the capsule centre (L/2 + 3r/8 away).
- A geom rotated by R has inertia R·I·Rᵀ in the link frame; a link's inertia about its centre of mass is the
  sum over its geoms of R·I·Rᵀ + m·(|d|²·1 − d·dᵀ) with d the geom centre minus the link's centre of mass.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "UNLIMITED",
    "Articulation",
    "ContactPoint",
    "FromMJCF",
    "Geom",
    "Link",
    "MJCFError",
    "capsule_mass_properties",
    "dm_control_asset",
    "gymnasium_asset",
    "load_mjcf",
    "parse_mjcf",
    "quat_to_matrix",
    "sphere_mass_properties",
]

UNLIMITED = 1.0e6  # the range dflex gives joints without limits
JOINT_COORDS = {"free": 7, "hinge": 1, "slide": 1}  # entries of q per joint type
JOINT_DOFS = {"free": 6, "hinge": 1, "slide": 1}  # entries of q̇ per joint type
GEOM_KINDS = ("sphere", "capsule")
GYMNASIUM_MODELS = ("ant.xml", "half_cheetah.xml", "hopper.xml", "humanoid.xml")

# Elements inside <body> that carry nothing the simulator uses.
_IGNORED_BODY_CHILDREN = {"site", "camera", "light", "inertial"}
_ORIENTATION_KEYS = ("quat", "axisangle", "euler", "xyaxes", "zaxis")
_IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])


class MJCFError(ValueError):
    """A model file the loader cannot (or will not) turn into a dflex articulation; the message names the culprit."""


@dataclass(frozen=True)
class FromMJCF:
    """Take a joint gain (stiffness, damping, armature) from the MJCF, or `fallback` where the MJCF gives none.

    Passing a plain number to `load_mjcf` instead overrides the MJCF for every joint; `None` means
    `FromMJCF(0.0)`. Example, the Humanoid: `damping=FromMJCF(0.1)` keeps per-joint damping and uses 0.1 for the
    rest.
    """

    fallback: float = 0.0


# ---------------------------------------------------------------------------------------------------- rotations
# All quaternions here are x, y, z, w.


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a·b (apply b, then a)."""
    av, aw, bv, bw = a[:3], a[3], b[:3], b[3]
    return np.concatenate([aw * bv + bw * av + np.cross(av, bv), [aw * bw - av @ bv]])


def _quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vector v by unit quaternion q."""
    u, w = q[:3], q[3]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion (xyzw)."""
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _quat_from_axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.concatenate([axis * math.sin(angle / 2), [math.cos(angle / 2)]])


def _quat_from_matrix(m: np.ndarray) -> np.ndarray:
    """Unit quaternion (xyzw, w ≥ 0) of a rotation matrix (Shepperd's method: branch on the largest term)."""
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * math.sqrt(1.0 + trace)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i], q[j], q[k] = s / 4, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    return q if q[3] >= 0 else -q


def _quat_z_to(v: np.ndarray) -> np.ndarray:
    """The smallest rotation taking +z onto direction v (MuJoCo's meaning of `zaxis` and of a `fromto` axis)."""
    v = v / np.linalg.norm(v)
    axis = np.cross([0.0, 0.0, 1.0], v)
    s = np.linalg.norm(axis)
    if s < 1e-12:  # parallel or antiparallel: any perpendicular axis does
        axis = np.array([1.0, 0.0, 0.0])
    return _quat_from_axis_angle(axis, math.atan2(s, v[2]))


def _compose(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Frame b given in frame a, expressed in a's parent: (p_a + R_a p_b, q_a q_b)."""
    return a[0] + _quat_rotate(a[1], b[0]), _quat_mul(a[1], b[1])


# ------------------------------------------------------------------------------------------------ mass properties


def sphere_mass_properties(radius: float, density: float) -> tuple[float, np.ndarray]:
    """(mass, principal inertia [Ixx, Iyy, Izz] about the centre) of a solid sphere: m = ρ·4/3·π·r³, I = 2/5·m·r²."""
    mass = density * 4.0 / 3.0 * math.pi * radius**3
    return mass, np.full(3, 0.4 * mass * radius**2)


def capsule_mass_properties(radius: float, half_length: float, density: float) -> tuple[float, np.ndarray]:
    """(mass, principal inertia [Ixx, Iyy, Izz] about the centre) of a solid capsule along z (formulas: module doc)."""
    r, length = radius, 2.0 * half_length
    m_cyl = density * math.pi * r**2 * length
    m_caps = density * 4.0 / 3.0 * math.pi * r**3  # both hemispheres
    axial = m_cyl * r**2 / 2 + m_caps * 0.4 * r**2
    transverse = m_cyl * (r**2 / 4 + length**2 / 12) + m_caps * (0.4 * r**2 + length**2 / 4 + 3.0 / 8.0 * length * r)
    return m_cyl + m_caps, np.array([transverse, transverse, axial])


def _parallel_axis(mass: float, offset: np.ndarray) -> np.ndarray:
    """Inertia of a point mass at `offset`: what moving a body's inertia from its COM to the origin adds."""
    return mass * ((offset @ offset) * np.eye(3) - np.outer(offset, offset))


def _frozen(a) -> np.ndarray:
    """A read-only float64 copy, so that the frozen dataclasses really are immutable."""
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


# ------------------------------------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class Geom:
    """One sphere or capsule, placed in its owning link's frame.

    `orientation` is a quaternion in x, y, z, w order (a capsule's axis is its local z); `inertia` is the full
    3×3 tensor about the geom's own centre, expressed in the link frame (R·I_principal·Rᵀ).
    """

    name: str
    kind: str  # "sphere" | "capsule" (| "box": mass only, built in code; the loader reads no boxes)
    radius: float
    half_length: float  # 0 for spheres
    position: np.ndarray
    orientation: np.ndarray  # xyzw
    mass: float
    inertia: np.ndarray

    def __post_init__(self):
        for key in ("position", "orientation", "inertia"):
            object.__setattr__(self, key, _frozen(getattr(self, key)))

    @property
    def axis(self) -> np.ndarray:
        """Unit direction of a capsule's axis in the link frame (the local z axis)."""
        return _quat_rotate(self.orientation, np.array([0.0, 0.0, 1.0]))

    @property
    def contact_points(self) -> tuple[np.ndarray, ...]:
        """Fixed contact points in the link frame: a sphere's centre, or a capsule's two end-cap centres (a "box",
        built in code for SHAC's cartpole, which has no ground, carries mass only)."""
        if self.kind == "box":
            return ()
        if self.kind == "sphere":
            return (self.position,)
        return (self.position - self.half_length * self.axis, self.position + self.half_length * self.axis)


@dataclass(frozen=True, eq=False)
class Link:
    """One rigid link with the one joint that attaches it to its parent link.

    `position`/`orientation` (xyzw) are the link frame relative to the parent link's frame (the world for a
    root) at q = 0. `joint_axis` is a unit vector in the link frame (zeros for a free joint). `name` is the
    MJCF body the link comes from (the links of a multi-joint body share it); `joint_name` is its joint's.
    """

    name: str
    joint_name: str
    parent: int  # −1 for a root
    joint_type: str  # "free" | "hinge" | "slide"
    joint_axis: np.ndarray
    position: np.ndarray
    orientation: np.ndarray  # xyzw
    lower: float
    upper: float
    ref: float  # MuJoCo's qpos at the model configuration (information only: q = 0 there)
    stiffness: float
    damping: float
    armature: float
    geoms: tuple[Geom, ...]

    def __post_init__(self):
        for key in ("joint_axis", "position", "orientation"):
            object.__setattr__(self, key, _frozen(getattr(self, key)))

    @property
    def coord_count(self) -> int:
        return JOINT_COORDS[self.joint_type]

    @property
    def dof_count(self) -> int:
        return JOINT_DOFS[self.joint_type]

    @property
    def mass(self) -> float:
        return float(sum(g.mass for g in self.geoms))

    @property
    def com(self) -> np.ndarray:
        """Centre of mass in the link frame (the origin for a massless link)."""
        if not self.geoms:
            return np.zeros(3)
        return sum(g.mass * g.position for g in self.geoms) / self.mass

    @property
    def inertia(self) -> np.ndarray:
        """3×3 inertia about the centre of mass, in the link frame (parallel-axis theorem over the geoms)."""
        com = self.com
        return sum((g.inertia + _parallel_axis(g.mass, g.position - com) for g in self.geoms), np.zeros((3, 3)))

    @property
    def contact_points(self) -> tuple[tuple[np.ndarray, float], ...]:
        """(point in the link frame, radius) for every contact point of the link's geoms."""
        return tuple((p, g.radius) for g in self.geoms for p in g.contact_points)


@dataclass(frozen=True, eq=False)
class ContactPoint:
    """A fixed contact sphere: centre `position` in link `link`'s frame; it touches the ground when it is closer than
    `radius`."""

    link: int
    position: np.ndarray
    radius: float


@dataclass(frozen=True, eq=False)
class Articulation:
    """A tree of links in tree order (every parent before its children), and the layout of q and q̇."""

    name: str
    links: tuple[Link, ...]

    @property
    def coord_count(self) -> int:
        """Size of q (free joint 7: position 3 + quaternion xyzw 4; hinge/slide 1)."""
        return sum(link.coord_count for link in self.links)

    @property
    def dof_count(self) -> int:
        """Size of q̇ (free joint 6; hinge/slide 1)."""
        return sum(link.dof_count for link in self.links)

    @property
    def coord_start(self) -> tuple[int, ...]:
        """Index into q of each link's first coordinate."""
        return tuple(np.cumsum([0] + [link.coord_count for link in self.links[:-1]]).tolist())

    @property
    def dof_start(self) -> tuple[int, ...]:
        """Index into q̇ of each link's first degree of freedom."""
        return tuple(np.cumsum([0] + [link.dof_count for link in self.links[:-1]]).tolist())

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(link.joint_name for link in self.links)

    @property
    def total_mass(self) -> float:
        return sum(link.mass for link in self.links)

    @property
    def contact_points(self) -> tuple[ContactPoint, ...]:
        return tuple(ContactPoint(i, p, r) for i, link in enumerate(self.links) for p, r in link.contact_points)

    def contact_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The contact points as arrays (link index int32 [n], position [n, 3], radius [n]), ready to upload."""
        points = self.contact_points
        return (
            np.array([c.link for c in points], dtype=np.int32),
            np.array([c.position for c in points], dtype=np.float64).reshape(-1, 3),
            np.array([c.radius for c in points], dtype=np.float64),
        )

    def link_index(self, joint_name: str) -> int:
        """The link of the joint `joint_name`."""
        return self.joint_names.index(_known(joint_name, self.joint_names, "joint"))

    def body_link(self, body: str) -> int:
        """The link carrying body `body`'s geoms (the last link of a multi-joint body's chain)."""
        names = [link.name for link in self.links]
        return len(names) - 1 - names[::-1].index(_known(body, names, "jointed body"))

    def world_frames(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every link frame in the world at q = 0, as (position, quaternion xyzw)."""
        frames: list[tuple[np.ndarray, np.ndarray]] = []
        for link in self.links:
            own = (link.position, link.orientation)
            frames.append(own if link.parent < 0 else _compose(frames[link.parent], own))
        return frames


def _known(name: str, names, what: str) -> str:
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=1)
        raise KeyError(f"no {what} named {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    return name


# ------------------------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Compiler:
    """The `<compiler>` settings that change how numbers are read."""

    radians: bool = False  # MuJoCo's default angle unit is the degree
    eulerseq: str = "xyz"
    autolimits: bool = True  # MuJoCo ≥ 2.3.3: a joint with a range is limited unless limited="false"


@dataclass
class _LinkDraft:
    """A link while its body's subtree is being read (jointless descendants still add geoms to it)."""

    fields: dict
    geoms: list


def _read_compiler(root: ET.Element, radians: bool | None) -> _Compiler:
    attrs: dict[str, str] = {}
    for element in root.iter("compiler"):
        attrs.update(element.attrib)
    if attrs.get("coordinate", "local") != "local":
        raise MJCFError("compiler coordinate='global' is not supported (MuJoCo itself dropped it); use local")
    angle = attrs.get("angle", "degree")
    if angle not in ("degree", "radian"):
        raise MJCFError(f"compiler angle={angle!r}: expected 'degree' or 'radian'")
    seq = attrs.get("eulerseq", "xyz")
    if len(seq) != 3 or any(c not in "xyzXYZ" for c in seq):
        raise MJCFError(f"compiler eulerseq={seq!r}: expected three letters from xyzXYZ")
    return _Compiler(
        radians=(angle == "radian") if radians is None else bool(radians),
        eulerseq=seq,
        autolimits=attrs.get("autolimits", "true") == "true",
    )


def _read_defaults(root: ET.Element) -> dict[str, dict[str, dict[str, str]]]:
    """class name → element tag → attributes, each class already merged with the classes it is nested in."""
    classes: dict[str, dict[str, dict[str, str]]] = {}

    def visit(element: ET.Element, inherited: dict[str, dict[str, str]], top: bool):
        name = element.get("class", "main" if top else None)
        if name is None:
            raise MJCFError("a nested <default> needs a class name")
        if name in classes:
            raise MJCFError(f"default class {name!r} is defined twice")
        merged = {tag: dict(attrs) for tag, attrs in inherited.items()}
        for child in element:
            if child.tag != "default":
                merged.setdefault(child.tag, {}).update(child.attrib)
        classes[name] = merged
        for child in element.findall("default"):
            visit(child, merged, top=False)

    for element in root.findall("default"):
        visit(element, {}, top=True)
    classes.setdefault("main", {})
    return classes


def _floats(text: str, what: str, count: int | None = None) -> np.ndarray:
    try:
        values = np.array([float(x) for x in text.split()])
    except ValueError:
        raise MJCFError(f"{what}: {text!r} is not a list of numbers") from None
    if count is not None and values.size != count:
        raise MJCFError(f"{what}: expected {count} numbers, got {text!r}")
    return values


class _Reader:
    """Walks `<worldbody>` once, turning bodies and joints into link drafts."""

    def __init__(self, density, compiler, defaults, gains, gains_from_defaults):
        self.density = float(density)
        self.compiler = compiler
        self.defaults = defaults
        self.gains = gains
        self.gains_from_defaults = gains_from_defaults
        self.links: list[_LinkDraft] = []
        self.unnamed = 0

    # --- attributes -------------------------------------------------------------------------------------------
    def attrs(self, element: ET.Element, childclass: str) -> dict[str, str]:
        """The element's attributes over those of its default class (its own `class`, else the body's childclass).

        `<freejoint>` takes no defaults (as in MuJoCo, where a class's joint damping or armature never reaches it)."""
        if element.tag == "freejoint":
            return dict(element.attrib)
        cls = element.get("class", childclass)
        if cls not in self.defaults:
            close = difflib.get_close_matches(cls, list(self.defaults), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise MJCFError(f"<{element.tag} name={element.get('name')!r}> uses unknown default class {cls!r}{hint}")
        return {**self.defaults[cls].get(element.tag, {}), **element.attrib}

    def angle(self, value: float) -> float:
        return value if self.compiler.radians else math.radians(value)

    def orientation(self, element: ET.Element, attrs: dict[str, str], what: str) -> np.ndarray:
        """The element's quaternion (xyzw) from whichever one of quat/axisangle/euler/xyaxes/zaxis it uses.

        The element's own attributes win over its default class's, so a class's `euler` cannot combine with an
        element's `quat`."""
        source = element.attrib if any(k in element.attrib for k in _ORIENTATION_KEYS) else attrs
        given = [k for k in _ORIENTATION_KEYS if k in source]
        if len(given) > 1:
            raise MJCFError(f"{what}: give one orientation, not {' and '.join(given)}")
        if not given:
            return _IDENTITY.copy()
        key = given[0]
        if key == "quat":
            w, x, y, z = _floats(source[key], f"{what} quat", 4)  # MJCF order is w, x, y, z
            q = np.array([x, y, z, w])
            norm = np.linalg.norm(q)
            if norm == 0:
                raise MJCFError(f"{what}: quat is zero")
            return q / norm
        if key == "axisangle":
            values = _floats(source[key], f"{what} axisangle", 4)
            return _quat_from_axis_angle(values[:3], self.angle(values[3]))
        if key == "euler":
            return self.euler(_floats(source[key], f"{what} euler", 3))
        if key == "zaxis":
            return _quat_z_to(_floats(source[key], f"{what} zaxis", 3))
        values = _floats(source[key], f"{what} xyaxes", 6)
        x = values[:3] / np.linalg.norm(values[:3])
        y = values[3:] - (values[3:] @ x) * x
        y /= np.linalg.norm(y)
        return _quat_from_matrix(np.column_stack([x, y, np.cross(x, y)]))

    def euler(self, angles: np.ndarray) -> np.ndarray:
        """Compose the three rotations in the compiler's eulerseq: a lower-case axis turns with the frame
        (intrinsic, multiply on the right), an upper-case axis stays fixed (extrinsic, multiply on the left)."""
        q = _IDENTITY.copy()
        for letter, value in zip(self.compiler.eulerseq, angles):
            step = _quat_from_axis_angle(np.eye(3)["xyz".index(letter.lower())], self.angle(value))
            q = _quat_mul(q, step) if letter.islower() else _quat_mul(step, q)
        return q

    # --- bodies -----------------------------------------------------------------------------------------------
    def world(self, worldbody: ET.Element):
        for child in worldbody:
            if child.tag == "geom":
                self.world_geom(child)
            elif child.tag == "body":
                self.body(child, parent=-1, frame=(np.zeros(3), _IDENTITY.copy()), childclass="main")
            elif child.tag not in _IGNORED_BODY_CHILDREN:
                raise MJCFError(f"<{child.tag}> in worldbody is not supported")

    def world_geom(self, element: ET.Element):
        attrs = self.attrs(element, "main")
        if attrs.get("type", "sphere") != "plane":
            name = element.get("name", "<unnamed>")
            raise MJCFError(f"geom {name!r} in worldbody: static geoms other than the ground plane are not supported")

    def body(self, element: ET.Element, parent: int, frame, childclass: str):
        """Read one body. `frame` is the parent body's frame in the frame of the link that owns the parent body."""
        name = element.get("name") or self.fresh_name("body")
        childclass = element.get("childclass", childclass)
        if childclass not in self.defaults:
            raise MJCFError(f"body {name!r}: unknown childclass {childclass!r}")
        local = (_floats(element.get("pos", "0 0 0"), f"body {name!r} pos", 3), self.orientation(element, {}, name))
        body_frame = _compose(frame, local)  # this body's frame in the parent's owning link frame

        joints = [child for child in element if child.tag in ("joint", "freejoint")]
        owner, geom_frame = parent, body_frame
        if joints:
            owner, anchor = parent, None
            for index, joint in enumerate(joints):
                fields = self.joint(joint, childclass, name, index, is_root_body=parent < 0, alone=len(joints) == 1)
                new_anchor = fields.pop("anchor")
                if anchor is None:  # the first link: body frame, moved to the anchor, in the parent link
                    position, orientation = _compose(body_frame, (new_anchor, _IDENTITY))
                else:  # later links: same orientation as the previous one, moved between anchors
                    position, orientation = new_anchor - anchor, _IDENTITY.copy()
                fields.update(name=name, parent=owner, position=position, orientation=orientation)
                self.links.append(_LinkDraft(fields, []))
                owner, anchor = len(self.links) - 1, new_anchor
            geom_frame = (-anchor, _IDENTITY.copy())  # the body frame seen from its last link
        elif parent < 0:
            raise MJCFError(f"body {name!r} has no joint and hangs from the world: static bodies are not supported")

        for child in element:
            if child.tag == "geom":
                geoms = self.links[owner].geoms
                geoms.append(self.geom(child, childclass, f"{name}_geom{len(geoms)}", geom_frame))
            elif child.tag == "body":
                self.body(child, owner, geom_frame, childclass)
            elif child.tag not in _IGNORED_BODY_CHILDREN | {"joint", "freejoint"}:
                raise MJCFError(f"<{child.tag}> in body {name!r} is not supported")

    def fresh_name(self, prefix: str) -> str:
        self.unnamed += 1
        return f"{prefix}{self.unnamed}"

    # --- joints -----------------------------------------------------------------------------------------------
    def joint(self, element, childclass, body, index, is_root_body, alone) -> dict:
        attrs = self.attrs(element, childclass)
        name = attrs.get("name") or f"{body}_joint{index}"
        kind = "free" if element.tag == "freejoint" else attrs.get("type", "hinge")
        if kind not in JOINT_COORDS:
            close = difflib.get_close_matches(kind, list(JOINT_COORDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise MJCFError(
                f"joint {name!r} in body {body!r} has type {kind!r}; supported: {', '.join(JOINT_COORDS)}{hint}"
            )
        if kind == "free" and not (is_root_body and alone):
            raise MJCFError(f"free joint {name!r}: only the sole joint of a body in worldbody can be free")
        axis = np.zeros(3)
        anchor = np.zeros(3)
        ref = 0.0
        lower, upper = -UNLIMITED, UNLIMITED
        if kind != "free":
            axis = _floats(attrs.get("axis", "0 0 1"), f"joint {name!r} axis", 3)
            if np.linalg.norm(axis) == 0:
                raise MJCFError(f"joint {name!r}: axis is zero")
            axis = axis / np.linalg.norm(axis)
            anchor = _floats(attrs.get("pos", "0 0 0"), f"joint {name!r} pos", 3)
            to_q = self.angle if kind == "hinge" else float  # hinge angles follow the compiler's unit
            ref = to_q(_floats(attrs.get("ref", "0"), f"joint {name!r} ref", 1)[0])
            if self.is_limited(attrs, name):
                low, high = _floats(attrs["range"], f"joint {name!r} range", 2)
                lower, upper = to_q(low) - ref, to_q(high) - ref
        gains = {key: self.gain(key, element, attrs, name) for key in ("stiffness", "damping", "armature")}
        return dict(joint_name=name, joint_type=kind, joint_axis=axis, anchor=anchor, lower=lower, upper=upper,
                    ref=ref, **gains)  # fmt: skip

    def is_limited(self, attrs: dict[str, str], name: str) -> bool:
        limited = attrs.get("limited", "auto")
        if limited == "auto":
            return self.compiler.autolimits and "range" in attrs
        if limited not in ("true", "false"):
            raise MJCFError(f"joint {name!r}: limited={limited!r}, expected true, false or auto")
        if limited == "true" and "range" not in attrs:
            raise MJCFError(f"joint {name!r} is limited but has no range")
        return limited == "true"

    def gain(self, key: str, element: ET.Element, attrs: dict[str, str], joint: str) -> float:
        """A plain number overrides the MJCF; FromMJCF(fallback) reads it, using the fallback where it is absent."""
        option = self.gains[key]
        if option is None:
            option = FromMJCF()
        if not isinstance(option, FromMJCF):
            return float(option)
        source = attrs if self.gains_from_defaults else element.attrib
        if key not in source:
            return float(option.fallback)
        return float(_floats(source[key], f"joint {joint!r} {key}", 1)[0])

    # --- geoms ------------------------------------------------------------------------------------------------
    def geom(self, element, childclass, default_name, frame) -> Geom:
        """One geom, moved from its body's frame into its link's frame (`frame` = the body frame in the link)."""
        attrs = self.attrs(element, childclass)
        name = attrs.get("name") or default_name
        kind = attrs.get("type", "sphere")
        if kind not in GEOM_KINDS:
            raise MJCFError(f"geom {name!r} has type {kind!r}; dflex supports only {' and '.join(GEOM_KINDS)} geoms")
        size = _floats(attrs.get("size", ""), f"geom {name!r} size")
        if size.size < 1 or size[0] <= 0:
            raise MJCFError(f"geom {name!r} needs a positive radius in size")
        radius = float(size[0])
        if kind == "capsule" and "fromto" in attrs:
            ends = _floats(attrs["fromto"], f"geom {name!r} fromto", 6)
            start, end = ends[:3], ends[3:]
            if np.allclose(start, end):
                raise MJCFError(f"geom {name!r}: fromto has zero length")
            position, orientation = (start + end) / 2, _quat_z_to(end - start)
            half_length = float(np.linalg.norm(end - start) / 2)
        else:
            position = _floats(attrs.get("pos", "0 0 0"), f"geom {name!r} pos", 3)
            orientation = self.orientation(element, attrs, f"geom {name!r}")
            half_length = 0.0
            if kind == "capsule":
                if size.size < 2 or size[1] <= 0:
                    raise MJCFError(f"capsule {name!r} needs size='radius half-length' or a fromto")
                half_length = float(size[1])
        position, orientation = _compose(frame, (position, orientation))
        if kind == "sphere":
            mass, principal = sphere_mass_properties(radius, self.density)
        else:
            mass, principal = capsule_mass_properties(radius, half_length, self.density)
        rotation = quat_to_matrix(orientation)
        inertia = rotation @ np.diag(principal) @ rotation.T
        return Geom(name, kind, radius, half_length, position, orientation, mass, inertia)


def parse_mjcf(
    xml: str,
    density: float = 1000.0,
    *,
    stiffness: float | FromMJCF | None = None,
    damping: float | FromMJCF | None = None,
    armature: float | FromMJCF | None = None,
    radians: bool | None = None,
    gains_from_defaults: bool = True,
    base_dir: str | os.PathLike | None = None,
) -> Articulation:
    """Read an MJCF document given as a string; see `load_mjcf` for the arguments. `<include file=...>` elements
    are resolved against `base_dir` (an error without one)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise MJCFError(f"not well-formed XML: {err}") from None
    if root.tag != "mujoco":
        raise MJCFError(f"the root element is <{root.tag}>, expected <mujoco>")
    if density <= 0:
        raise MJCFError(f"density must be positive, got {density}")
    _expand_includes(root, None if base_dir is None else Path(base_dir))
    for tag in ("frame", "replicate", "attach"):
        if root.find(f".//{tag}") is not None:
            raise MJCFError(f"<{tag}> is not supported; flatten the model first")
    worldbody = root.find("worldbody")
    if worldbody is None:
        raise MJCFError("the model has no <worldbody>")
    reader = _Reader(
        density,
        _read_compiler(root, radians),
        _read_defaults(root),
        {"stiffness": stiffness, "damping": damping, "armature": armature},
        gains_from_defaults,
    )
    reader.world(worldbody)
    if not reader.links:
        raise MJCFError("the model has no joints, so there is nothing to simulate")
    links = tuple(Link(geoms=tuple(draft.geoms), **draft.fields) for draft in reader.links)
    return Articulation(root.get("model", "model"), links)


def load_mjcf(
    path: str | os.PathLike,
    density: float = 1000.0,
    *,
    stiffness: float | FromMJCF | None = None,
    damping: float | FromMJCF | None = None,
    armature: float | FromMJCF | None = None,
    radians: bool | None = None,
    gains_from_defaults: bool = True,
) -> Articulation:
    """Load an MJCF file as a dflex articulation (rules and conventions: module docstring).

    density: kg/m³ for every geom (the MJCF's densities and masses are ignored, as dflex does).
    stiffness, damping, armature: per joint, a number overrides the MJCF for every joint (dflex's Ant and Hopper:
        `damping=1.0, armature=0.05`); `FromMJCF(x)` reads each joint's value from the MJCF and uses x where it
        has none (the Humanoid); `None` is `FromMJCF(0.0)`.
    radians: True/False overrides the compiler's `angle` for every angle in the file (ranges, refs, euler,
        axisangle); None follows the compiler (MuJoCo's default: degrees).
    gains_from_defaults: whether values inherited from `<default>` classes count as the MJCF's; False reads only
        attributes written on the `<joint>` element itself, so `FromMJCF` fallbacks fill in the rest.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MJCF file not found: {path}")
    return parse_mjcf(
        path.read_text(),
        density,
        stiffness=stiffness,
        damping=damping,
        armature=armature,
        radians=radians,
        gains_from_defaults=gains_from_defaults,
        base_dir=path.parent,
    )


def _expand_includes(element: ET.Element, base_dir: Path | None, depth: int = 0):
    """Replace every `<include file=...>` by the children of the included file's `<mujoco>` element, recursively
    (dm_control's models include their skybox, visual and material files this way)."""
    if depth > 16:
        raise MJCFError("<include> nested more than 16 deep (an include cycle?)")
    children = []
    for child in element:
        if child.tag != "include":
            _expand_includes(child, base_dir, depth)
            children.append(child)
            continue
        file = child.get("file")
        if file is None:
            raise MJCFError("<include> without a file attribute")
        if base_dir is None:
            raise MJCFError(f"<include file={file!r}> needs base_dir (or load the model with load_mjcf)")
        path = base_dir / file
        if not path.is_file():
            raise FileNotFoundError(f"included MJCF file not found: {path}")
        try:
            included = ET.parse(path).getroot()
        except ET.ParseError as err:
            raise MJCFError(f"{path}: not well-formed XML: {err}") from None
        if included.tag != "mujoco":
            raise MJCFError(f"{path}: the root element is <{included.tag}>, expected <mujoco>")
        _expand_includes(included, path.parent, depth + 1)
        children.extend(included)
    element[:] = children


def _bundled_model(package: str, folder: tuple[str, ...], name: str, known: tuple[str, ...]) -> Path:
    filename = name if name.endswith(".xml") else f"{name}.xml"
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"{package} is not installed, so its model file {filename!r} is not available: pip install {package}"
        )
    path = Path(spec.origin).parent.joinpath(*folder, filename)
    if not path.is_file():
        close = difflib.get_close_matches(filename, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise FileNotFoundError(f"{package} has no model file {filename!r} (looked for {path}){hint}")
    return path


def gymnasium_asset(name: str) -> Path:
    """Path of a model file bundled with gymnasium's MuJoCo environments (`ant`, `hopper`, `humanoid`,
    `half_cheetah`, with or without `.xml`): dflex's Ant, Hopper and Cheetah have the same bodies and geoms.

    gymnasium's humanoid has 17 hinges (no ankles); dflex's has 21, like DeepMind's (`dm_control_asset`)."""
    return _bundled_model("gymnasium", ("envs", "mujoco", "assets"), name, GYMNASIUM_MODELS)


def dm_control_asset(name: str) -> Path:
    """Path of a dm_control suite model file (e.g. `humanoid`: a free root and 21 hinges, the joint layout of
    dflex's Humanoid, with per-joint stiffness, damping and armature from default classes)."""
    return _bundled_model("dm_control", ("suite",), name, ("humanoid.xml", "cheetah.xml", "hopper.xml"))
