"""World-model size presets, named as PWM's `cfg/alg/*.yaml` (see reference/pwm.md).

Only the world-model shape lives here; the algorithm's hyper-parameters are in the trainer's config.
`num_bins = 1` means a scalar reward head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pwmbench.errors import ConfigError, check_keys, unknown_name_message


@dataclass(frozen=True)
class WorldModelPreset:
    name: str
    units: tuple[int, ...]  # dynamics and reward hidden widths
    encoder_units: tuple[int, ...]
    latent_dim: int
    num_bins: int  # 1 → scalar reward head; 101 → two-hot
    rew_rms: bool
    vmin: float = -10.0
    vmax: float = 10.0
    simnorm_dim: int = 8

    def with_overrides(self, **overrides: Any) -> WorldModelPreset:
        """A copy with some fields changed; unknown field names are errors with a suggestion."""
        check_keys(overrides, [f.name for f in fields(self) if f.name != "name"], kind="world-model setting")
        for key in ("units", "encoder_units"):
            if key in overrides:
                overrides[key] = tuple(int(u) for u in overrides[key])
        out = replace(self, **overrides)
        out.validate()
        return out

    def validate(self) -> None:
        if not self.units or any(u < 1 for u in self.units) or any(u < 1 for u in self.encoder_units):
            raise ConfigError(f"preset {self.name!r}: hidden widths must be ≥ 1, got {self.units} / {self.encoder_units}")
        if self.latent_dim % self.simnorm_dim:
            raise ConfigError(f"preset {self.name!r}: latent_dim {self.latent_dim} is not a multiple of simnorm_dim {self.simnorm_dim}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, WorldModelPreset] = {
    p.name: p
    for p in (
        WorldModelPreset("pwm", (512, 512), (256,), 512, 1, rew_rms=True),
        WorldModelPreset("pwm_5M", (512, 512), (256,), 512, 101, rew_rms=False),
        WorldModelPreset("pwm_19M", (1024, 1024), (1024, 1024), 512, 101, rew_rms=True),
        WorldModelPreset("pwm_48M", (1792, 1792), (1792, 1792, 1792), 768, 101, rew_rms=False),
        WorldModelPreset("pwm_317M", (4096, 4096), (4096,) * 4, 1376, 101, rew_rms=False),
    )
}


def preset(name: str) -> WorldModelPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(unknown_name_message("preset", name, PRESETS)) from None
