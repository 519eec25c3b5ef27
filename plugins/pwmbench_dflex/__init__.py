"""dflex's single-task environments (Ant, Humanoid, Hopper, CartPole swing-up, Cheetah) re-implemented on NVIDIA Warp.

dflex, the differentiable simulator PWM and SHAC used, no longer builds on current CUDA and is not licensed for
commercial use, so this plugin will rebuild its tasks from the documented facts (reference/dflex.md) on
`warp-lang`. Its first piece is `pwmbench_dflex.mjcf`, the model loader: it reads the MuJoCo XML files into
dflex's reduced-coordinate articulation (one link per joint, masses from one density, sphere/capsule contact
points) with numpy only, so it can be tested without Warp. The task hooks will follow; nothing here imports Warp.
"""

__version__ = "0.1.0"
