"""Issue 17's label check on real supervised crops, per infill label rule (CPU, seconds).

    python benchmarks/infill_labels.py                       # shrec-like-fast-v1, N = 5, 256 crops
    python benchmarks/infill_labels.py --recipe shrec-like-v1 --label-radius-scale 0.75

The issue measured that, under the foreground-priority rule, 57 % of foreground-labelled voxels show their
class at amplitude < 0.5 and a crop holds ~3× the labelled voxels after infill. For the class-balanced,
shifted and rotated label crops the training loop draws (the labels do not depend on the noise), this prints
per ``infill.mask_rule`` (:func:`sasi.method.infill.label_faithfulness`, same draws for every rule):
``faint_share`` (share of foreground label mass where its class is mixed in at < 0.5), ``excess_share``
(share of foreground label mass the image does not show; 0 for soft targets) and
``foreground_ratio`` (foreground label mass after / before infill). Writes
``results/infill_labels-<device>.json``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
from _common import print_table, train_only_dataset, write_results

from sasi.method.infill import MASK_RULES, label_faithfulness
from sasi.presets import preset_config
from sasi.train.loop import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="shrec-like-fast-v1")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--label-radius-scale", type=float, default=0.5)
    parser.add_argument("--crops", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    settings = {"recipe": args.recipe, "shots": args.shots, "label_radius_scale": args.label_radius_scale,
                "crops": args.crops, "seed": args.seed, "infill": "sasi-star defaults (paper)"}
    config = preset_config("sasi-star", {"data.dataset": train_only_dataset(args.recipe), "data.shots": args.shots,
                                         "data.label_radius_scale": args.label_radius_scale,
                                         "train.batch_size": 16, "train.device": "cpu", "train.seed": args.seed})
    trainer = Trainer(config, progress=False)
    trainer.config = replace(config, infill=replace(config.infill, enabled=False))  # plain label crops; infill below
    masks = torch.cat([trainer.supervised_batch()[1] for _ in range(-(-args.crops // 16))])[:args.crops]
    rows = [{"mask_rule": rule, **label_faithfulness(masks, trainer.n_classes, replace(config.infill, mask_rule=rule),
                                                     args.seed)} for rule in MASK_RULES]
    print_table(rows, {"mask_rule": "s", "faint_share": ".3f", "excess_share": ".3f", "foreground_ratio": ".2f"})
    print("written:", write_results("infill_labels", settings, rows))


if __name__ == "__main__":
    main()
