"""Paired differences against the supervised baseline pooled over simulated datasets (data seeds).

Each data seed of ``benchmarks/fewshot.py`` is its own report; a method run on several of them has one pair per
(data seed, N, seed), so pooling them doubles the pairs behind each CI. Only methods with runs on every given data
seed are pooled (a method chosen on one seed's test tomograms and tested on another is not a fair member).

    python benchmarks/fewshot_pooled.py --runs benchmarks/results/fewshot-4500.runs.jsonl \
        benchmarks/results/fewshot-4500-data1.runs.jsonl --methods sasi-star sasi-star-faithful
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot import key  # noqa: E402
from fewshot_report import paired  # noqa: E402


def load_runs(paths: list[str], iterations: int) -> list[dict]:
    """The finished runs of the given logs at ``iterations`` (a later record of the same run replaces an earlier)."""
    runs = {key(r): r for path in paths for r in map(json.loads, Path(path).read_text().splitlines())
            if "error" not in r and r["iterations"] == iterations}
    return list(runs.values())


def pooled(runs: list[dict], methods: list[str], baseline: str, mode: str = "foreground") -> list[dict]:
    """``paired`` over every data seed at once, for the ``methods`` that were run on all of them."""
    seeds = sorted({r.get("data_seed", 0) for r in runs})
    on = {m: {r.get("data_seed", 0) for r in runs if r["method"] == m} for m in [baseline, *methods]}
    missing = {m: sorted(set(seeds) - s) for m, s in on.items() if set(seeds) - s}
    if missing:
        sys.exit(f"not run on every data seed {seeds}: {missing}")
    rows = paired([r for r in runs if r["method"] in on], mode, baseline)
    return [r | {"data_seeds": seeds} for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="runs logs (.runs.jsonl) of benchmarks/fewshot.py")
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--baseline", default="df-cc3d")
    p.add_argument("--iterations", type=int, default=4500)
    p.add_argument("--out", default="benchmarks/results/fewshot-4500-pooled.json")
    args = p.parse_args()
    rows = pooled(load_runs(args.runs, args.iterations), args.methods, args.baseline)
    for r in rows:
        print(f"{r['method']} − {r['baseline']} N={r['shots']} {r['metric']}: {r['gain']:+.3f} ± {r['ci95']:.3f} "
              f"({r['pairs']} pairs, better in {r['wins']}; data seeds {r['data_seeds']})")
    meta = {"runs": args.runs, "iterations": args.iterations, "date": datetime.date.today().isoformat()}
    Path(args.out).write_text(json.dumps({"meta": meta, "paired": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
