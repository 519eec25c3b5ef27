"""Import a PWM or TD-MPC2 world-model checkpoint into pwmbench's WorldModel (the baseline MLP dynamics).

The networks are the same functions with other names and another input order: PWM and TD-MPC2 feed the dynamics and
reward MLPs `[z, emb, a]`, pwmbench `[z, a, emb]` (docs/fidelity.md#checkpoint-interchange). So an import
- renames: `_encoder[.state].i` → `encoder.i`, `_dynamics.i` → `dynamics.net.i`, `_reward.i` → `reward.net.i`,
  `_task_emb.weight` → `task_embedding.weight`, `_action_masks` → `action_masks` (TD-MPC2's `model.` prefix and
  PWM's `wm` wrapper are taken off);
- permutes the input columns of the dynamics' and reward head's first layer from [z, emb, a] to [z, a, emb];
- leaves out what pwmbench's world model does not have (TD-MPC2's Q ensemble, target Qs, policy prior,
  termination head, log-std buffers) and says so;
- refuses, naming the key, any tensor whose shape does not fit the target model (another preset, width, task set).
Files are read with `torch.load(weights_only=True)`: an import never runs code from the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pwmbench.errors import ConfigError
from pwmbench.nn.world_model import WorldModel

__all__ = ["SOURCES", "import_world_model", "read_checkpoint"]

SOURCES = ("pwm", "tdmpc2")
_RENAMES = (
    (re.compile(r"^_encoder\.(?:state\.)?(\d+)\.(.+)$"), r"encoder.\1.\2"),
    (re.compile(r"^_dynamics\.(\d+)\.(.+)$"), r"dynamics.net.\1.\2"),
    (re.compile(r"^_reward\.(\d+)\.(.+)$"), r"reward.net.\1.\2"),
    (re.compile(r"^_task_emb\.weight$"), "task_embedding.weight"),
    (re.compile(r"^_action_masks$"), "action_masks"),
)
_PERMUTED = ("dynamics.net.0.weight", "reward.net.0.weight")  # first layers fed [z, emb, a] there, [z, a, emb] here


def read_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """A checkpoint's world-model tensors: TD-MPC2's `{"model": state_dict}`, PWM's `{"wm": state_dict, ...}` or a bare
    state dict; read with weights_only (no code runs)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a file it refuses
        raise ConfigError(f"{path}: not a checkpoint that loads without running code ({str(exc).splitlines()[0][:200]})") from None
    for key in ("model", "wm", "world_model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"{path}: holds no state dict of tensors (TD-MPC2: {{'model': ...}}, PWM: {{'wm': ...}})")
    return state


def _rename(key: str) -> str | None:
    for pattern, target in _RENAMES:
        if pattern.match(key):
            return pattern.sub(target, key)
    return None


def import_world_model(state: dict[str, Tensor], wm: WorldModel, source: str = "tdmpc2") -> dict[str, Any]:
    """Load a PWM/TD-MPC2 world-model state dict into `wm` (built with pwmbench's MLP dynamics and the checkpoint's
    sizes). Returns {"loaded": [pwmbench keys], "left_out": [checkpoint keys pwmbench has no place for]}."""
    if source not in SOURCES:
        raise ConfigError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    target = wm.state_dict()
    mapped: dict[str, Tensor] = {}
    left_out: list[str] = []
    for key, value in state.items():
        key = key.removeprefix("model.")
        name = _rename(key)
        if name is None:
            left_out.append(key)
            continue
        mapped[name] = value
    latent, task_dim = wm.config.latent_dim, wm.task_dim
    for name in _PERMUTED:
        if name in mapped and task_dim:
            w = mapped[name]
            z, emb, a = w[:, :latent], w[:, latent : latent + task_dim], w[:, latent + task_dim :]
            mapped[name] = torch.cat((z, a, emb), dim=1)
    mlp_hint = f" (a {source} checkpoint holds an MLP dynamics model: build the world model with dynamics = 'mlp', not {wm.dynamics_name})" if wm.dynamics_name != "mlp" else ""
    wrong = [f"{k}: checkpoint {tuple(v.shape)}, this model {tuple(target[k].shape)}" for k, v in mapped.items() if k in target and v.shape != target[k].shape]
    if wrong:
        raise ConfigError(f"the {source} checkpoint does not fit this world model (preset, widths, latent or task set differ): "
                          + "; ".join(wrong[:4]) + (mlp_hint if any(w.startswith("dynamics.") for w in wrong) else ""))
    unknown = sorted(k for k in mapped if k not in target)
    if unknown:
        raise ConfigError(f"the {source} checkpoint has layers this world model lacks: {', '.join(unknown[:6])} (another number of layers?)"
                          + (mlp_hint if any(k.startswith("dynamics.") for k in unknown) else ""))
    missing = sorted(k for k in target if k not in mapped and k != "action_masks")
    if missing:
        raise ConfigError(f"the {source} checkpoint lacks {', '.join(missing[:6])}{' …' if len(missing) > 6 else ''}: not a world model of this shape"
                          + (mlp_hint if any(k.startswith("dynamics.") for k in missing) else ""))
    with torch.no_grad():
        wm.load_state_dict({**target, **{k: v.to(target[k].dtype) for k, v in mapped.items()}})
    return {"loaded": sorted(mapped), "left_out": sorted(left_out)}
