"""Resume safety: a suite or search writes the hash of its resolved configuration (:data:`CONFIG_FILE` in its
experiment folder); rerunning it into the same storage with a different configuration is refused unless the
command says ``--restart`` (the old results are then moved aside), so results of two configurations never mix."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sasi.errors import SasiError

CONFIG_FILE = "sasi-config.json"  # in <storage>/<name>/: the resolved configuration's hash


def config_hash(resolved: Mapping[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of a JSON-able resolved configuration."""
    text = json.dumps(resolved, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def check_resume(folder: str | os.PathLike, resolved: Mapping[str, Any], command: str, *, restart: bool) -> bool:
    """Compare ``resolved`` with the configuration stored in ``folder`` (a suite's or search's experiment folder).

    Returns True when earlier results exist and may be resumed. A different configuration is a one-line error
    unless ``restart``; with ``restart`` the old folder is moved aside (``<folder>.replaced-<time>``) and
    False is returned (a new run). Remote storage is not checked.
    """
    if "://" in str(folder):
        return True
    folder = Path(folder)
    stored = folder / CONFIG_FILE
    resolved = json.loads(json.dumps(resolved, sort_keys=True, default=str))
    digest = config_hash(resolved)
    if not folder.exists():
        return False
    if restart:
        archive = folder.with_name(f"{folder.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        folder.rename(archive)
        return False
    if not stored.is_file():
        return True  # results from before hashes were stored: resume as before
    try:
        old = json.loads(stored.read_text())
    except (OSError, ValueError):
        return True
    if old.get("hash") == digest:
        return True
    changed = _changed_keys(old.get("config") or {}, resolved)
    shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
    raise SasiError(f"its configuration changed since the results stored here ({shown or 'hash differs'}); "
                    f"rerun with --restart to start a new run (the old results are kept aside), "
                    f"or undo the change to resume: {command}", folder)


def store_config(folder: str | os.PathLike, resolved: Mapping[str, Any]) -> None:
    """Write the configuration hash (and the configuration, for the error's list of changed keys)."""
    if "://" in str(folder):
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    resolved = json.loads(json.dumps(resolved, sort_keys=True, default=str))
    from sasi.io.atomic import atomic_write

    with atomic_write(folder / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps({"hash": config_hash(resolved), "config": resolved}, indent=1, sort_keys=True))


def _experiment_folder(storage: str, name: str) -> Path | None:
    return None if "://" in str(storage) else Path(storage).expanduser().resolve() / name


def search_resume(space: Any, storage: str, settings: Mapping[str, Any], *, resume: bool, restart: bool) -> None:
    """``sasi tune``: refuse to mix a changed search (or a new one without ``--resume``) into stored results."""
    import dataclasses

    from sasi.config import to_dict
    from sasi.platform.interrupts import command_line

    if resume and restart:
        raise SasiError("--resume continues the stored search and --restart starts a new one: give one of them")
    folder = _experiment_folder(storage, space.name)
    if folder is None:
        return
    base = to_dict(space.config())
    if "://" not in base["data"]["dataset"]:
        base["data"]["dataset"] = str(Path(base["data"]["dataset"]).resolve())
    resolved = {"name": space.name, "preset": space.preset, "metric": space.metric, "mode": space.mode,
                "base": base, "parameters": [dataclasses.asdict(p) for p in space.parameters],
                "constraints": [dataclasses.asdict(c) for c in space.constraints], **settings}
    if ((folder / "tuner.pkl").is_file() or any(folder.glob("*/tuner.pkl"))) and not (resume or restart):
        raise SasiError(f"search {space.name!r} already has results here; add --resume to continue it or "
                        "--restart to start a new search (the old results are kept aside)", folder)
    check_resume(folder, resolved, command_line(add=("--resume",)), restart=restart)
    store_config(folder, resolved)


def suite_resume(parsed: Any, storage: str, dataset: str, quick: bool, *, restart: bool) -> None:
    """``sasi ablate``: a suite resumes its stored results only if its resolved configuration is unchanged."""
    from sasi.platform.ablate import QUICK
    from sasi.platform.interrupts import command_line

    folder = _experiment_folder(storage, f"{parsed.name}-quick" if quick else parsed.name)
    if folder is None:
        return
    resolved = {"recipe": parsed.recipe, "data_seed": parsed.data_seed, "shots": parsed.shots,
                "seeds": parsed.seeds, "variants": parsed.configs(dataset, QUICK if quick else None)}
    check_resume(folder, resolved, command_line(), restart=restart)
    store_config(folder, resolved)
