"""What a training run holds on the device: the training tomogram, its few-shot label volume and the labelled
centres per class, and the sliding windows of self-supervision."""

from __future__ import annotations

import numpy as np
import torch

from sasi.dataset import Dataset
from sasi.detect import ShapeClassifier, normalise
from sasi.detect.shape import fit_on_particles
from sasi.errors import SasiError
from sasi.fewshot import label_volume, labelled_particles
from sasi.train.config import SasiConfig
from sasi.train.crops import window_centres


class TrainingData:
    """The training tomogram, its few-shot label volume and the labelled centres, on the device."""

    def __init__(self, config: SasiConfig, dataset: Dataset, device: torch.device):
        cfg = config.data
        name, tomo, self.chosen = labelled_particles(dataset, cfg)
        self.classes = dataset.classes
        radii = {c: dataset.radii[c] / dataset.voxel_size * cfg.label_radius_scale for c in self.classes}
        instances = dataset.instances(name) if cfg.background == "certain" else None
        labels = label_volume(tomo.shape, self.chosen, self.classes, radii, dataset.voxel_size,
                              background=cfg.background, instances=instances)
        self.name = name
        self.shape = tomo.shape
        self.volume = torch.as_tensor(normalise(tomo.data), device=device)
        self.labels = torch.as_tensor(labels.astype(np.int64), device=device)
        zyx = np.stack([self.chosen.column(c).to_numpy() for c in ("z", "y", "x")], 1) / dataset.voxel_size
        label_of = self.chosen.column("label").to_pylist()
        self.centres = [torch.as_tensor(zyx[[i for i, lab in enumerate(label_of) if lab == c]],
                                        dtype=torch.float32) for c in self.classes]
        self.centres = [c for c in self.centres if len(c)]
        self.windows = window_centres(self.shape, cfg.patch, cfg.patch // 2)
        self.classifier = self._shape_classifier(config.detect.class_source, dataset.voxel_size)

    def _shape_classifier(self, class_source: str, voxel_size: float) -> ShapeClassifier | None:
        """Classes from shape, fitted on the labelled particles; ``auto`` without an example of every class falls
        back to the network's classes (``shape`` says which class is missing)."""
        if class_source == "network":
            return None
        try:
            return fit_on_particles(self.volume, self.chosen, self.classes, voxel_size)
        except SasiError:
            if class_source == "shape":
                raise
            return None
