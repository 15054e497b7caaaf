"""Particle tables as arrays: tomogram, label and x, y, z (Å) per row, checked once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sasi.errors import SasiError


@dataclass(frozen=True)
class Points:
    tomogram: np.ndarray  # (n,) str
    label: np.ndarray  # (n,) str
    xyz: np.ndarray  # (n, 3) Å

    @classmethod
    def of(cls, table: pa.Table, source: str) -> Points:
        missing = [c for c in ("tomogram", "label", "x", "y", "z") if c not in table.column_names]
        if missing:
            raise SasiError(f"particle table lacks column(s) {missing}", source)
        xyz = np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in "xyz"], axis=1)
        xyz = xyz.astype(np.float64).reshape(-1, 3)
        if not np.isfinite(xyz).all():
            raise SasiError("coordinates contain NaN/inf or nulls", source)
        return cls(_strings(table, "tomogram"), _strings(table, "label"), xyz)

    def __len__(self) -> int:
        return len(self.xyz)

    def check_radii(self, source: str, radii: Mapping[str, float]) -> None:
        """One-line error naming labels without a radius, and the labels that have one."""
        unknown = sorted(set(self.label) - set(radii))
        if unknown:
            raise SasiError(f"no radius for label(s) {unknown}; radii are known for {sorted(radii)}", source)

    def counts(self, classes: list[str]) -> dict[str, int]:
        return {c: int((self.label == c).sum()) for c in classes}


def _strings(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray([str(v) for v in table.column(name).to_pylist()], dtype=str)
