"""dflex's single-task environments (Ant, Humanoid, Hopper, CartPole swing-up, Cheetah) re-implemented on NVIDIA Warp.

dflex, the differentiable simulator PWM and SHAC used, no longer builds on current CUDA and is not licensed for
commercial use, so this plugin rebuilds its tasks from the documented facts (reference/dflex.md) on `warp-lang`.
Built so far (issue W3, in steps):
- `mjcf`: the model loader (numpy only): MuJoCo XML → dflex's reduced-coordinate articulation (one link per
  joint, masses from one density, sphere/capsule contact points);
- `model`, `kernels`, `sim`: the batched articulated-body simulator core in Warp kernels (forward kinematics,
  joint forces, RNEA bias, composite-rigid-body mass matrix with armature, Cholesky, semi-implicit Euler,
  mass-matrix caching), forward only; `warp_setup` gives Warp a project-level kernel cache.
- `contact`: penalty ground contact at fixed contact points (opt-in `contact=ContactParams(...)`).
Still to come: the torch autograd bridge over wp.Tape with its gradient checks, and the tasks with their hooks. Importing this package does
not import Warp.
"""

__version__ = "0.1.0"
