"""Speed of the Warp articulated-body simulator on this machine: the Ant, 64 envs, 16 substeps per 1/60 s,
mass matrix rebuilt once per step, without and with ground contact, measured in one run (compare as a ratio).

dflex.md's anchor: ≈ 37 batched steps/s with contact on a 2-core CPU (a slower machine than these).

    python benchmarks/dflex_sim_speed.py   # writes benchmarks/results/dflex_sim_speed.json
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np
from pwmbench_dflex.contact import ContactParams
from pwmbench_dflex.mjcf import gymnasium_asset, load_mjcf
from pwmbench_dflex.model import Model, default_q
from pwmbench_dflex.sim import Simulator

ENVS, SUBSTEPS, STEPS = 64, 16, 20


def ant_batch(rng: np.random.Generator) -> tuple[Model, np.ndarray, np.ndarray, np.ndarray]:
    art = load_mjcf(gymnasium_asset("ant"), stiffness=0.0, damping=1.0, armature=0.05)
    root = (np.zeros(3), np.array([-math.sin(math.pi / 4), 0.0, 0.0, math.cos(math.pi / 4)]))  # −π/2 about x
    model = Model.from_articulation(art, root_frame=root, joint_target=[0, 0, 0, 0, 0, 0, 0, 1, 0, -1, 0, -1, 0, 1])
    q = default_q(model, ENVS)
    q[:, :3] = [0.0, 0.4, 0.0]  # low enough for the feet to touch the ground
    q[:, 7:] = np.array([0, 1, 0, -1, 0, -1, 0, 1]) + rng.uniform(-0.2, 0.2, (ENVS, 8))
    qd = rng.uniform(-0.25, 0.25, (ENVS, model.dof_count))
    act = rng.uniform(-1, 1, (ENVS, model.dof_count)) * 20.0
    act[:, :6] = 0.0
    return model, q.astype(np.float32), qd.astype(np.float32), act.astype(np.float32)


def rate(contact: ContactParams | None) -> float:
    model, q, qd, act = ant_batch(np.random.default_rng(9))
    sim = Simulator(model, ENVS, substeps=SUBSTEPS, mm_caching_frequency=SUBSTEPS, limit_ke=1e3, limit_kd=10.0, contact=contact)
    q, qd = sim.step(q, qd, act)  # compile and warm up
    start = time.perf_counter()
    for _ in range(STEPS):
        q, qd = sim.step(q, qd, act)
    assert np.all(np.isfinite(q))
    return STEPS / (time.perf_counter() - start)


def main() -> None:
    no_contact = rate(None)
    contact = rate(ContactParams(ke=4e4, kd=1e4, kf=3e3, mu=0.75))
    result = {
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "setting": f"ant, {ENVS} envs, {SUBSTEPS} substeps, mass matrix once per step",
        "batched_steps_per_s": {"no_contact": no_contact, "contact": contact},
        "env_steps_per_s_with_contact": ENVS * contact,
        "contact_cost_ratio": no_contact / contact,
    }
    out = Path(__file__).parent / "results" / "dflex_sim_speed.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
