"""Shared network pieces: TD-MPC2 layers, reward heads, presets and the world-model shell."""

from pwmbench.nn.layers import FeatureAffine, NormedLinear, SimNorm, init_weights, mlp, zero_last_layer
from pwmbench.nn.presets import PRESETS, WorldModelPreset, preset
from pwmbench.nn.reward import RewardHead, symexp, symlog, two_hot
from pwmbench.nn.world_model import SHARED_COMPONENTS, WorldModel, WorldModelLoss, build_world_model, count_parameters

__all__ = [
    "PRESETS",
    "SHARED_COMPONENTS",
    "FeatureAffine",
    "NormedLinear",
    "RewardHead",
    "SimNorm",
    "WorldModel",
    "WorldModelLoss",
    "WorldModelPreset",
    "build_world_model",
    "count_parameters",
    "init_weights",
    "mlp",
    "preset",
    "symexp",
    "symlog",
    "two_hot",
    "zero_last_layer",
]
