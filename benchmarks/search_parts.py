"""Where a search run in parts stands: each study's Optuna mirror in benchmarks/results/search/parts/.

    python benchmarks/search_parts.py            # Markdown: per study, trials so far and the best one
    python benchmarks/search_parts.py --merge N5/search.json N10/search.json   # confirmations run one N per call

Reads the mirrors that ``benchmarks/search_part.sh`` keeps (``<space>-N<shots>-optuna.db``): finished trials by
state, the best validation score with its parameters, and each trial's wall time. Validation scores only: the
test tomograms are scored by the last part's ``--confirm``. Where one call cannot confirm every shot count, run the
last part once per ``--shots N`` and ``--merge`` their ``search.json`` files into ``--out`` (studies of later files
replace earlier ones of the same method and N; the machine's absolute paths become relative to ``runs/``), with
its ``search.md`` and F1-vs-N figure beside it.
"""

from __future__ import annotations

import argparse
import json
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


def portable(value):
    """``value`` with absolute paths made machine-free: from ``runs/`` on when they pass through it, else the name."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return "runs/" + value.rsplit("/runs/", 1)[1] if "/runs/" in value else Path(value).name
    return value


def merge(paths: list[Path], out: Path) -> None:
    """One ``search.json`` (+ ``search.md`` and the F1-vs-N figure) from the summaries of several last parts."""
    import shutil
    import tempfile

    from sasi.platform.confirm import FIGURE, write_summary

    parts = [json.loads(p.read_text()) for p in paths]
    studies = {(s["method"], s["shots"]): s for part in parts for s in part["studies"]}
    merged = portable({**parts[0], "studies": sorted(studies.values(), key=lambda s: (s["method"] != parts[0]["name"], s["method"], s["shots"])),
                       "merged_from": [str(p) for p in paths]})
    with tempfile.TemporaryDirectory() as tmp:
        write_summary(merged, tmp, None, None)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(tmp) / "search.json", out)
        shutil.copy(Path(tmp) / "search.md", out.with_suffix(".md"))
        if (Path(tmp) / FIGURE).exists():
            shutil.copy(Path(tmp) / FIGURE, out.with_name(FIGURE))
    print(f"wrote {out} ({len(studies)} studies)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", type=Path, default=PARTS)
    ap.add_argument("--merge", nargs="+", type=Path, default=None, help="search.json files of last parts")
    ap.add_argument("--out", type=Path, default=PARTS.parents[1] / "search.json")
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print("| study | trials | completed | stopped (ASHA) | failed | trial-minutes | best val class F1 | its parameters |")
    print("|---|---|---|---|---|---|---|---|")
    for db in sorted(args.parts.glob("*-optuna.db")):
        print("\n".join(study_lines(db)))


if __name__ == "__main__":
    main()
