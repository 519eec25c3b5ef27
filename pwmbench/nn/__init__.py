"""Shared network pieces: TD-MPC2 layers, reward heads, presets and the world-model shell."""

from pwmbench.nn.layers import NormedLinear, SimNorm, init_weights, mlp, zero_last_layer
from pwmbench.nn.presets import PRESETS, WorldModelPreset, preset
from pwmbench.nn.reward import RewardHead, symexp, symlog, two_hot
from pwmbench.nn.world_model import SHARED_COMPONENTS, WorldModel, WorldModelLoss, build_world_model, count_parameters

__all__ = [
    "NormedLinear", "SimNorm", "init_weights", "mlp", "zero_last_layer", "PRESETS", "WorldModelPreset", "preset",
    "RewardHead", "symexp", "symlog", "two_hot", "SHARED_COMPONENTS", "WorldModel", "WorldModelLoss",
    "build_world_model", "count_parameters",
]
