"""dflex's single-task environments (Ant, Humanoid, Hopper, CartPole swing-up, Cheetah) re-implemented on NVIDIA Warp.

dflex, the differentiable simulator PWM and SHAC used, no longer builds on current CUDA and is not licensed for
commercial use, so this plugin rebuilds its tasks from the documented facts (reference/dflex.md) on `warp-lang`.
Pieces:
- `mjcf`: the model loader (numpy only): MuJoCo XML → dflex's reduced-coordinate articulation (one link per
  joint, masses from one density, sphere/capsule contact points);
- `model`, `kernels`, `sim`: the batched articulated-body simulator in Warp kernels (forward kinematics, joint
  forces, RNEA bias, composite-rigid-body mass matrix with armature, Cholesky, semi-implicit Euler, mass-matrix
  caching); `contact`: penalty ground contact at fixed contact points; `warp_setup`: a project-level kernel cache;
- `bridge`: one env step recorded on a `wp.Tape` as a torch autograd function (gradients to actions and state);
- `frame`: the root-following frame (each env's state relative to its own horizontal origin, re-centred every
  step: exact by translation invariance, and float32 stays accurate hundreds of metres out);
- `tasks` (definitions: model, actuation, observation, reward, termination, initial states), `env` (the batched
  `DflexVecEnv` with PWM's episode semantics), `plugin` (the task hook: `dflex/cartpole`, `dflex/hopper`,
  `dflex/ant`, `dflex/humanoid`, `dflex/cheetah`), `rotations` (torch quaternions).
Importing this package (or registering its tasks) does not import Warp; making an environment does.
"""

__version__ = "0.1.0"
