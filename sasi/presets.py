"""The paper's configurations as named presets: each is a set of overrides of :class:`SasiConfig`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sasi.config import apply_overrides, deep_update, dotted
from sasi.errors import SasiError
from sasi.train.config import SasiConfig

_INFILL = {"infill": {"enabled": True}}
_ISS = {"pretrain": {"schedule": "initial"}}
_PSS = {"pretrain": {"schedule": "periodic"}}
_CONS = {"consistency": {"enabled": True}}

PRESETS: dict[str, dict[str, Any]] = {
    "df-cc3d": {},  # supervised-only DeepFinder U-Net + cc3d, the paper's main baseline
    "df-infill": _INFILL,
    "df-iss": _ISS,
    "df-pss": _PSS,
    "df-consistency": _CONS,
    "df-pss-infill": deep_update(_PSS, _INFILL),
    "df-consistency-infill": deep_update(_CONS, _INFILL),
    "df-consistency-pss": deep_update(_CONS, _PSS),
    "sasi": deep_update(deep_update(_ISS, _INFILL), _CONS),  # ISS + infill + consistency
    "sasi-star": deep_update(_ISS, _INFILL),  # ISS + infill: the paper's best row (Table 1 SaSi*)
}


def preset_config(name: str, overrides: Mapping[str, Any] | None = None,
                  base: SasiConfig | None = None) -> SasiConfig:
    """``base`` (default config) + preset ``name`` + ``overrides`` (dotted keys), named ``name`` unless the
    overrides say otherwise, validated (:func:`sasi.config.apply_overrides`)."""
    if name not in PRESETS:
        raise SasiError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    layers = {"name": name, **dotted(SasiConfig, PRESETS[name]), **dotted(SasiConfig, overrides or {})}
    return apply_overrides(base or SasiConfig(), layers, f"preset {name}")
