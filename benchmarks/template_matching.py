"""Template matching with the true templates on shrec-like-v1: class-aware F1 per class and wall time per tomogram.

GPU (one H200, from the repository root; simulates the recipe once under /tmp/sasi-bench)::

    python benchmarks/template_matching.py --batch 32

CPU smoke check (tiny-v1, 45° sampling, a few minutes on 2 cores)::

    python benchmarks/template_matching.py --quick

Per-class thresholds are fitted on the validation tomogram, never on the test tomograms. Writes
``benchmarks/results/template_matching.json`` (``template_matching-quick.json`` with ``--quick``), including
a ``fewshot_row`` (per-class F1 on the same test tomograms) to put beside few-shot SaSi and df-cc3d.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TEMPLATES = ROOT.parent / "shared" / "structures" / "polnet-10A"  # benchmark-only: the true templates, by path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny-v1, 45° sampling: a CPU smoke check")
    parser.add_argument("--recipe", default=None, help="data recipe (default shrec-like-v1; --quick: tiny-v1)")
    parser.add_argument("--data", default="/tmp/sasi-bench", help="where the recipe is simulated (once)")
    parser.add_argument("--templates", default=None, help=f"template folder (default {TEMPLATES} for SHREC recipes)")
    parser.add_argument("--angle-step", type=float, default=None, help="degrees (default 10; --quick: 45)")
    parser.add_argument("--batch", type=int, default=16, help="rotations per batched FFT")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="result JSON (default benchmarks/results/template_matching*.json)")
    args = parser.parse_args(argv)

    import torch

    from benchmarks._common import recipe_dataset
    from sasi.dataset import load_dataset
    from sasi.match import MatchConfig, match_and_score, rotation_count

    recipe = args.recipe or ("tiny-v1" if args.quick else "shrec-like-v1")
    step = args.angle_step or (45.0 if args.quick else 10.0)
    dataset = load_dataset(recipe_dataset(recipe, args.data))
    templates = args.templates
    if templates is None and (dataset.meta.get("simulation") or {}).get("templates", "builtin") != "builtin":
        templates = str(TEMPLATES)
    config = MatchConfig(angle_step=step, templates=templates, batch=args.batch, device=args.device)
    print(f"{recipe}: {len(dataset.classes)} classes, {rotation_count(step)} rotations at {step:g}°, "
          f"device {args.device}", flush=True)
    start = time.perf_counter()
    report = match_and_score(dataset, "test", "val", config, log=lambda line: print(line, flush=True))
    total = time.perf_counter() - start
    scores = report.scores
    test = dataset.names("test")
    per_class = {c: {"f1": s.f1, "precision": s.precision, "recall": s.recall, "tp": s.tp, "fp": s.fp, "fn": s.fn,
                     "threshold": report.thresholds.get(c)} for c, s in scores.per_class.items()}
    device = torch.cuda.get_device_name() if report.settings["device"].startswith("cuda") else "cpu"
    body = {
        "benchmark": "template_matching", "device": device, "torch": torch.__version__,
        "date": datetime.date.today().isoformat(), "recipe": recipe, "quick": args.quick,
        "settings": {**report.settings, "templates": "true templates (polnet 10 Å)" if templates else "builtin"},
        "shape_zyx": list(dataset.tomogram(test[0]).shape), "test_tomograms": test,
        "seconds_per_tomogram": {n: round(s, 2) for n, s in report.seconds.items()},
        "mean_seconds_per_test_tomogram": round(sum(report.seconds[n] for n in test) / len(test), 2),
        "total_seconds": round(total, 1),
        "class_f1": scores.class_aware.f1, "localisation_f1": scores.micro.f1, "macro_f1": scores.macro_f1,
        "fbeta": scores.fbeta, "picks_per_truth": scores.picks_per_truth,
        "per_class": per_class,
        "fewshot_row": {"method": "template-matching (true templates)", "shots": None,
                        "class_f1": scores.class_aware.f1, "localisation_f1": scores.micro.f1,
                        "macro_f1": scores.macro_f1,
                        **{f"f1.{c}": s.f1 for c, s in scores.per_class.items()}},
        "scores": scores.to_dict(),
    }
    name = "template_matching-quick.json" if args.quick else "template_matching.json"
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=2, default=str))
    print(f"{'class':>8} {'F1':>6} {'P':>6} {'R':>6}  threshold")
    for c, s in per_class.items():
        print(f"{c:>8} {s['f1']:6.3f} {s['precision']:6.3f} {s['recall']:6.3f}  {s['threshold']}")
    print(f"class-aware F1 {scores.class_aware.f1:.3f} · localisation F1 {scores.micro.f1:.3f} · "
          f"{body['mean_seconds_per_test_tomogram']} s per test tomogram · wrote {out}")
    return out


if __name__ == "__main__":
    main()
