"""Template matching on a dataset: templates and imaging from its manifest, thresholds on ``val``, scores on ``test``.

This is the ``template-matching`` baseline that sits beside the trained variants (``df-cc3d``, ``sasi``):
:func:`match_and_score` returns the same metric keys as a suite trial's test report
(:func:`sasi.platform.evaluation.evaluate_checkpoint`), so its row can go into the same tables.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from sasi.dataset import Dataset, score_on_dataset
from sasi.errors import SasiError
from sasi.io.particles import make_particles, voxels_to_angstrom
from sasi.match.angles import rotations
from sasi.match.correlate import Imaging, Matcher
from sasi.match.peaks import extract_peaks, fit_thresholds, merge_classes
from sasi.scoring import score_picks

PRESET = "template-matching"


@dataclass(frozen=True, kw_only=True)
class MatchConfig:
    """Template-matching settings (``sasi match`` options)."""

    angle_step: float = 10.0  # degrees between neighbouring rotations
    templates: str | None = None  # folder of <class>.mrc/.pdb/.cif; None: the dataset's simulator templates
    tilt_range: float | None = None  # ± degrees; None: from the manifest (no wedge if it has none)
    defocus_um: float | None = None  # CTF defocus; None: from the manifest (else a contrast flip only)
    contrast: str = "auto"  # "dark" / "bright" particles; auto: from the manifest's imaging path, else dark
    exclusion: float = 1.0  # exclusion sphere radius as a fraction of the class radius
    floor_sigma: float = 2.0  # candidate peaks: score ≥ mean + floor_sigma · std of the class's map
    max_peaks: int = 2000  # candidates per class and tomogram
    batch: int = 16  # rotations per batched FFT
    device: str = "auto"


@dataclass
class MatchReport:
    picks: pa.Table  # scored split, with a score column (the NCC)
    metrics: dict[str, float]
    thresholds: dict[str, float]
    seconds: dict[str, float]  # matching wall time per tomogram (scored and validation)
    scores: Any = None  # sasi.evaluate.Scores of the scored split
    settings: dict[str, Any] = field(default_factory=dict)


def dataset_templates(dataset: Dataset, folder: str | None = None) -> dict[str, np.ndarray]:
    """Class name → density box (max 1) at the dataset's voxel size: from ``folder`` or the simulator's recipe."""
    from sasi.simulate.recipes import SimulationConfig
    from sasi.simulate.templates import load_templates
    from sasi.simulate.writer import resolve_templates

    if folder is not None:
        found = load_templates(folder, dataset.voxel_size, list(dataset.classes))
    else:
        sim = dataset.meta.get("simulation")
        if not isinstance(sim, dict):
            raise SasiError("the dataset was not simulated: give the templates (--templates FOLDER)", dataset.root)
        config = SimulationConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in sim.items()})
        from sasi.simulate.fetch import is_named_set

        local = config.templates == "builtin" or is_named_set(config.templates)
        if not local and not Path(config.templates).is_dir():
            raise SasiError(f"the dataset's template folder {config.templates!r} is not here: give --templates FOLDER",
                            dataset.root)
        found = resolve_templates(config)
    by_name = {t.name: t.density for t in found}
    missing = [c for c in dataset.classes if c not in by_name]
    if missing:
        raise SasiError(f"no template for class(es) {missing}", folder or dataset.root)
    return {c: by_name[c] for c in dataset.classes}


def dataset_imaging(dataset: Dataset, config: MatchConfig) -> Imaging:
    """Missing wedge, CTF and contrast of the dataset (manifest ``simulation``), overridden by ``config``.

    Contrast matters as much as the CTF: a template of the wrong sign anti-correlates with every particle. The
    simulator's tilt-series path shows particles bright (torch-ctf's CTF sign), its Fourier path dark
    (:data:`sasi.simulate.imaging.PARTICLES_DARK`); data that was not simulated is taken as dark (underfocus,
    not inverted) unless ``config.contrast`` says otherwise.
    """
    from sasi.simulate.imaging import PARTICLES_DARK

    sim = dataset.meta.get("simulation") or {}
    tilt = config.tilt_range if config.tilt_range is not None else sim.get("tilt_range")
    defocus = config.defocus_um if config.defocus_um is not None else sim.get("defocus_um")
    if config.contrast == "auto":
        dark = PARTICLES_DARK.get(sim.get("imaging", "wedge"), True) if sim else True
    elif config.contrast in ("dark", "bright"):
        dark = config.contrast == "dark"
    else:
        raise SasiError(f"contrast must be auto, dark or bright, got {config.contrast!r}")
    return Imaging(tilt_range=tilt, defocus_um=defocus, dark=dark)


def resolve_device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def match_volume(volume: np.ndarray, voxel_size: float, templates: dict[str, np.ndarray], radii_vox: dict[str, float],
                 imaging: Imaging, config: MatchConfig, device: torch.device
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Candidate peaks per class (zyx voxels, NCC), best first, above each map's ``mean + floor_sigma · std``."""
    matcher = Matcher(volume, voxel_size, imaging, device, batch=config.batch)
    mats = rotations(config.angle_step)
    out = {}
    for c, template in templates.items():
        score = matcher.score(template, mats)
        floor = float(score.mean() + config.floor_sigma * score.std())
        out[c] = extract_peaks(score, config.exclusion * radii_vox[c], floor, config.max_peaks)
        del score
    return out


def match_and_score(dataset: Dataset, split: str = "test", val_split: str = "val",
                    config: MatchConfig | None = None, thresholds: dict[str, float] | None = None,
                    log=None) -> MatchReport:
    """Fit per-class thresholds on ``val_split`` (never the scored split), match ``split``, score it (SHREC rule)."""
    config = config or MatchConfig()
    device = resolve_device(config.device)
    templates = dataset_templates(dataset, config.templates)
    imaging = dataset_imaging(dataset, config)
    radii_vox = {c: dataset.radii[c] / dataset.voxel_size for c in dataset.classes}
    exclusion = {c: config.exclusion * r for c, r in radii_vox.items()}
    seconds: dict[str, float] = {}

    def run(name: str):
        start = time.perf_counter()
        peaks = match_volume(dataset.tomogram(name).data, dataset.voxel_size, templates, radii_vox, imaging, config,
                             device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds[name] = time.perf_counter() - start
        if log:
            log(f"{name}: matched {len(templates)} templates in {seconds[name]:.1f} s")
        return peaks

    if thresholds is None:
        val = dataset.names(val_split)
        if set(val) & set(dataset.names(split)):
            raise SasiError(f"the threshold split {val_split!r} overlaps the scored split {split!r}")
        fitted = [fit_thresholds(run(n), dataset.particles(n), dataset.instances(n)) for n in val]
        thresholds = {c: float(np.mean([f[c] for f in fitted])) for c in dataset.classes}
    tables = []
    for name in dataset.names(split):
        labels, zyx, score = merge_classes(run(name), exclusion, thresholds)
        tables.append(make_particles(name, labels, voxels_to_angstrom(zyx, dataset.voxel_size), score=score))
    picks = pa.concat_tables(tables)
    scores = score_on_dataset(dataset, picks, dataset.names(split), rule="shrec")
    metrics = score_picks(dataset, picks, dataset.names(split), split).metrics()  # the trials' metric names
    return MatchReport(picks, metrics, thresholds, seconds, scores,
                       {**asdict(config), "imaging": asdict(imaging), "rotations": len(rotations(config.angle_step)),
                        "device": str(device), "preset": PRESET})
