"""Where a search run in parts stands: each study's Optuna mirror in benchmarks/results/search/parts/.

    python benchmarks/search_parts.py            # Markdown: per study, trials so far and the best one

Reads the mirrors that ``benchmarks/search_part.sh`` keeps (``<space>-N<shots>-optuna.db``): finished trials by
state, the best validation score with its parameters, and each trial's wall time. Validation scores only: the
test tomograms are scored by the last part's ``--confirm``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna

PARTS = Path(__file__).resolve().parent / "results" / "search" / "parts"


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def study_lines(db: Path) -> list[str]:
    name = db.name.removesuffix("-optuna.db")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db.resolve()}")
    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    minutes = sum(t.user_attrs.get("time_total_s", 0.0) for t in trials) / 60
    line = (f"| {name} | {len(trials)} | {states['complete']} | {states['pruned']} | {states['fail']} "
            f"| {minutes:.0f} |")
    if not done:
        return [line + " – | – |"]
    best = max(done, key=lambda t: t.value)
    params = ", ".join(f"{k}={_short(v)}" for k, v in best.params.items())
    return [line + f" {best.value:.3f} | {params} |"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", type=Path, default=PARTS)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print("| study | trials | completed | stopped (ASHA) | failed | trial-minutes | best val class F1 | its parameters |")
    print("|---|---|---|---|---|---|---|---|")
    for db in sorted(args.parts.glob("*-optuna.db")):
        print("\n".join(study_lines(db)))


if __name__ == "__main__":
    main()
