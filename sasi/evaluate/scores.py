"""What scoring returns: counts and rates per class, the false-pick breakdown, and their table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.table import Table

MICRO_LABEL = "all"


def f_beta(precision: float, recall: float, beta: float) -> float:
    """``(1 + b²) P R / (b² P + R)``, or 0 when ``P + R`` is 0."""
    if precision + recall <= 0:
        return 0.0
    b2 = beta * beta
    return float((1 + b2) * precision * recall / (b2 * precision + recall))


def ratio(num: int, den: int) -> float:
    """``num / den``, or 0 when ``den`` is 0 (the 0/0 = 0 convention)."""
    return float(num / den) if den > 0 else 0.0


@dataclass(frozen=True)
class ClassScore:
    """Detection counts and rates for one class (or all classes, for the micro score)."""

    label: str
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float

    @classmethod
    def from_counts(cls, label: str, tp: int, n_pred: int, n_truth: int) -> ClassScore:
        """Build a score from true positives and the numbers of picks and truth particles."""
        precision, recall = ratio(tp, n_pred), ratio(tp, n_truth)
        return cls(label, int(tp), int(n_pred - tp), int(n_truth - tp), precision, recall,
                   f_beta(precision, recall, 1.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PickBreakdown:
    """Every pick is exactly one of these (SHREC rule, picks in file order).

    ``true``: the first pick on a particle, with its class. ``wrong_class``: the first pick on a particle, with
    another class. ``duplicate``: a later pick on an already claimed particle. ``background``: on no particle.
    ``outside``: its nearest voxel lies outside the tomogram.
    """

    true: int = 0
    wrong_class: int = 0
    duplicate: int = 0
    background: int = 0
    outside: int = 0

    @property
    def total(self) -> int:
        return self.true + self.wrong_class + self.duplicate + self.background + self.outside

    def fractions(self) -> dict[str, float]:
        """Each kind as a fraction of all picks (0 without picks)."""
        return {k: ratio(v, self.total) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Scores:
    """Result of :func:`sasi.evaluate.evaluate`.

    Attributes
    ----------
    per_class : dict[str, ClassScore]
        Scores of every present class, sorted by label (class-aware under both rules).
    micro : ClassScore
        All classes pooled, labelled ``"all"``: for ``rule="shrec"`` the class-agnostic localisation score
        (the SaSi paper's F1), for ``"distance"`` the sum of the per-class counts.
    macro_f1 : float
        Mean per-class F1 over present classes.
    fbeta : float
        CZII weighted F-beta.
    rule : str
        Matching rule used for ``per_class`` and ``micro``.
    n_truth, n_pred : int
        Numbers of truth particles and picks.
    fbeta_per_class : dict[str, float]
        CZII F-beta of every present class.
    class_aware : ClassScore or None
        ``rule="shrec"``: a pick is a TP only if it is the first pick on a particle and carries its class.
    breakdown : PickBreakdown or None
        ``rule="shrec"``: what every pick is (true, wrong class, duplicate, background, outside).
    distance_f1 : float
        Class-agnostic one-to-one matching within ``distance_factor`` × the truth radius: high only when picks
        sit near particle centres.
    n_truth_per_class, n_pred_per_class : dict[str, int]
        Truth particles and picks of every present class.
    """

    per_class: dict[str, ClassScore]
    micro: ClassScore
    macro_f1: float
    fbeta: float
    rule: str
    n_truth: int
    n_pred: int
    fbeta_per_class: dict[str, float] = field(default_factory=dict)
    class_aware: ClassScore | None = None
    breakdown: PickBreakdown | None = None
    distance_f1: float = 0.0
    n_truth_per_class: dict[str, int] = field(default_factory=dict)
    n_pred_per_class: dict[str, int] = field(default_factory=dict)

    @property
    def picks_per_truth(self) -> float:
        return ratio(self.n_pred, self.n_truth)

    def to_dict(self) -> dict[str, Any]:
        """Return plain nested dicts of Python numbers, ready for :func:`json.dumps`."""
        return {**asdict(self), "picks_per_truth": self.picks_per_truth}


def scores_table(scores: Scores) -> Table:
    """Render :class:`Scores` as a :class:`rich.table.Table`: one row per class plus the pooled rows."""
    caption = (f"macro F1 {scores.macro_f1:.3f} · distance F1 {scores.distance_f1:.3f} · "
               f"CZII F-beta {scores.fbeta:.3f} · {scores.n_pred} picks, {scores.n_truth} truth")
    if scores.breakdown is not None:
        kinds = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in asdict(scores.breakdown).items())
        caption += f"\npicks: {kinds}"
    table = Table(title=f"Detection scores (rule: {scores.rule})", caption=caption)
    for name in ("class", "picks", "truth", "TP", "FP", "FN", "precision", "recall", "F1", "F-beta"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for s in scores.per_class.values():
        table.add_row(*_row(s, scores.fbeta_per_class.get(s.label)))
    table.add_section()
    if scores.class_aware is not None:
        table.add_row(*_row(scores.class_aware, None, "all, class-aware"), style="bold")
        table.add_row(*_row(scores.micro, None, "all, localisation"))
    else:
        table.add_row(*_row(scores.micro, None), style="bold")
    return table


def _row(s: ClassScore, fbeta: float | None, name: str | None = None) -> list[str]:
    return [name or s.label, str(s.tp + s.fp), str(s.tp + s.fn), str(s.tp), str(s.fp), str(s.fn),
            f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.f1:.3f}", "" if fbeta is None else f"{fbeta:.3f}"]
