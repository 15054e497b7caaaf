"""Template matching: the baseline a structural biologist would run instead of a few-shot network (``sasi match``)."""

from sasi.match.angles import rotation_count, rotations
from sasi.match.correlate import Imaging, Matcher
from sasi.match.peaks import extract_peaks, fit_thresholds, merge_classes
from sasi.match.run import PRESET, MatchConfig, MatchReport, match_and_score, match_volume

__all__ = [
    "PRESET",
    "Imaging",
    "MatchConfig",
    "MatchReport",
    "Matcher",
    "extract_peaks",
    "fit_thresholds",
    "match_and_score",
    "match_volume",
    "merge_classes",
    "rotation_count",
    "rotations",
]
