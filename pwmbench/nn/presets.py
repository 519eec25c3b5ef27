"""World-model size presets, named as PWM's `cfg/alg/*.yaml` (see reference/pwm.md).

Only the world-model shape lives here; the algorithm's hyper-parameters are in the trainer's config.
`num_bins = 1` means a scalar reward head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pwmbench.errors import ConfigError, check_keys, unknown_name_message
from pwmbench.plugin.options import MAX_WIDTH, is_int, is_number, is_widths

MAX_BINS = 10_001  # two-hot reward bins (PWM's presets use 101)


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
        """A copy with some fields changed; unknown field names are errors with a suggestion, and a value of the wrong
        type is one naming the setting (a width of 1.7 is refused, not truncated to 1)."""
        check_keys(overrides, [f.name for f in fields(self) if f.name != "name"], kind="world-model setting")
        for key, value in overrides.items():
            overrides[key] = self._typed(key, value)
        out = replace(self, **overrides)
        out.validate()
        return out

    def validate(self) -> None:
        """Ranges: widths and latent_dim in [1, MAX_WIDTH] (MAX_WIDTH is 16× the largest preset's width: more is a typo
        that would only fail at training time), latent_dim a multiple of simnorm_dim, a scalar (1) or two-hot (≥ 3)
        reward head, a finite vmin < vmax."""
        for key in ("units", "encoder_units"):
            widths = getattr(self, key)
            if not is_widths(widths):
                raise self._error(key, f"a non-empty list of integer widths in [1, {MAX_WIDTH}]", widths)
        for key, high in (("latent_dim", MAX_WIDTH), ("simnorm_dim", MAX_WIDTH), ("num_bins", MAX_BINS)):
            if not is_int(getattr(self, key), 1, high):
                raise self._error(key, f"an integer in [1, {high}]", getattr(self, key))
        if self.num_bins == 2:
            raise self._error("num_bins", "1 (a scalar reward head) or ≥ 3 (two-hot bins)", self.num_bins)
        if self.latent_dim % self.simnorm_dim:
            raise ConfigError(f"preset {self.name!r}: latent_dim {self.latent_dim} is not a multiple of simnorm_dim {self.simnorm_dim}")
        if not (is_number(self.vmin) and is_number(self.vmax)) or self.vmin >= self.vmax:
            raise ConfigError(f"preset {self.name!r}: need finite vmin < vmax (the two-hot reward range), got vmin={self.vmin!r}, vmax={self.vmax!r}")

    def _typed(self, key: str, value: Any) -> Any:
        """`value` checked against the type of world-model setting `key` (lists for width tuples, ints for floats)."""
        if key in ("units", "encoder_units"):
            ok, what = isinstance(value, (list, tuple)) and all(is_int(u) for u in value), "a list of integer widths"
            value = tuple(value) if ok else value
        elif key in ("latent_dim", "num_bins", "simnorm_dim"):
            ok, what = is_int(value), "an integer"
        elif key == "rew_rms":
            ok, what = isinstance(value, bool), "true or false"
        else:  # vmin, vmax
            ok, what = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
            value = float(value) if ok else value
        if not ok:
            raise self._error(key, what, value, shown=f"{value!r} ({type(value).__name__})")
        return value

    def _error(self, key: str, what: str, value: Any, shown: str | None = None) -> ConfigError:
        return ConfigError(f"world-model setting {key!r} (preset {self.name!r}) must be {what}, got {shown or repr(value)}")

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
