"""Does soft self-consistency shrink the foreground through the loss alone? (CPU, seconds)

    python benchmarks/consistency_fixed_point.py

Issue 17: with soft consistency targets the fixed SaSi* loses most of its picks. This isolates the loss from the
network: free logits are fitted (Adam) to a soft target of two faint particles in a background cube with the
supervised loss (Dice + Focal, each alone, and the 20 : 1 mix), and the fitted softmax becomes the next round's
target, as the network's own prediction does in consistency guidance. Per round it prints the foreground mass
(summed non-background probability) and the argmax foreground voxels. Shrinking rounds would explain the lost
picks by the loss alone; growing or stable ones point at the network and the data. Writes
``results/consistency_fixed_point-<device>.json``.
"""

from __future__ import annotations

import argparse

import torch
from _common import print_table, write_results

from sasi.method.losses import SegmentationLoss

LOSSES = {"dice+focal 20:1": {}, "focal only": {"dice_weight": 0.0}, "dice only": {"focal_weight": 0.0}}


def faint_particles(size: int) -> torch.Tensor:
    """A (1, 3, S, S, S) soft target: a class-1 blob peaking at 0.6 and a smaller class-2 blob at 0.4."""
    axis = torch.arange(size).float() - size / 2
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    one = 0.6 * torch.exp(-(z**2 + y**2 + x**2) / 9)
    two = 0.4 * torch.exp(-((z - 6) ** 2 + y**2 + (x - 6) ** 2) / 4)
    return torch.stack([1 - one - two, one, two])[None]


def fit(loss: SegmentationLoss, target: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
    """Logits fitted to ``target`` from its own log-probabilities (the network's starting point)."""
    logits = target.clamp_min(1e-6).log().requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        loss(logits, target).total.backward()
        optimiser.step()
    return logits.detach().softmax(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    start = faint_particles(args.size)
    rows = []
    for name, weights in LOSSES.items():
        loss, target = SegmentationLoss(**weights), start
        for round_ in range(args.rounds + 1):
            rows.append({"loss": name, "round": round_, "foreground_mass": float(target[0, 1:].sum()),
                         "argmax_foreground": int((target.argmax(1) > 0).sum())})
            target = fit(loss, target, args.steps, args.lr)
    print_table(rows, {"loss": "s", "round": "d", "foreground_mass": ".1f", "argmax_foreground": "d"})
    print("written:", write_results("consistency_fixed_point", vars(args), rows))


if __name__ == "__main__":
    main()
