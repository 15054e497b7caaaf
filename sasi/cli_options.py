"""Options shared by several ``sasi`` commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Set a config key: dotted.key=value, the value read as YAML (repeatable), e.g. --set train.lr=1e-3.")]


def parse_sets(pairs: Optional[list[str]]) -> dict:
    """``--set`` pairs → nested overrides."""
    from sasi.config import parse_assignments

    return parse_assignments(pairs or [])


def storage_root(storage: Optional[str]) -> str:
    """Where results go: ``--storage``, else ``$SASI_STORAGE``, else ``runs/ray`` (absolute)."""
    return storage or os.environ.get("SASI_STORAGE") or str(Path("runs/ray").resolve())
