"""Compare self-supervised checkpoints without ground truth, more precisely than one run's ``val/loss``.

    python experiments/selfsup_criterion.py [--draws N] CKPT [CKPT ...] [hydra overrides, e.g. seed=1]

``val/loss`` scores one fixed split of the sampled columns and one fixed rotation, and it weighs the terms
by the run's own ``ei_weight``/``split_weight``, so it cannot compare runs whose objectives differ. This
scores every checkpoint on the validation split's measurements with ``N`` splits (seeds 0..N-1) and the
quarter turns 90/180/270 in turn, and prints each term's mean: the held-out k-space error
(``selfsup_split``, the self-supervised validation criterion of SSDU, Yaman et al. 2020: how well the
network predicts measured columns it was not given), the EI error and the measurement consistency, each a
relative squared error, and the held-out error also as a relative L1 error (runs trained with
``finetune.objective.norm=1`` against runs trained with squared errors: each norm favours its own). The
terms do not depend on any weight, so runs with different objectives are compared on them. Reads the
measurements only, never the ground truth.
"""

from __future__ import annotations

import argparse

import torch
from validation_run import validation_run

from spade_pl.objectives import SelfSupervised
from spade_pl.physics.equivariance import Rotations

QUARTER_TURNS = (90.0, 180.0, 270.0)
TERMS = ("selfsup_split", "selfsup_ei", "selfsup_mc")


def criterion(network, batches, draws: int, norm: float = 2) -> dict[str, float]:
    """Each term's mean over the batches and ``draws`` (split seed, quarter turn) pairs, errors to the ``norm``."""
    sums = dict.fromkeys(TERMS, 0.0)
    for seed in range(draws):
        objective = SelfSupervised(
            transform=Rotations(angles=[QUARTER_TURNS[seed % len(QUARTER_TURNS)]]),
            split_weight=1.0,
            eval_split_seed=seed,
            norm=norm,
        )
        for batch in batches:
            _, logs = objective(batch, network)
            for term in TERMS:
                sums[term] += float(logs[term]) / (draws * len(batches))
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=12, help="splits (and turns) per checkpoint")
    parser.add_argument("args", nargs="+", help="checkpoints (*.ckpt), then hydra overrides")
    options = parser.parse_args()
    checkpoints = [a for a in options.args if a.endswith(".ckpt")]
    overrides = [a for a in options.args if not a.endswith(".ckpt")]
    run = validation_run(overrides, "selfsup_criterion_")
    batches = list(run.datamodule.test_dataloader())  # the evaluation split: val
    print(
        f"| checkpoint | held-out k-space error | EI error | measurement consistency | held-out error, L1 |"
        f"  ({options.draws} draws)"
    )
    print("|---|---:|---:|---:|---:|")
    for path in checkpoints:
        network = run.networks.load(path)[0].eval()  # (replaying a pruned structure traces with autograd)
        with torch.no_grad():
            terms = criterion(network, batches, options.draws)
            held_out_l1 = criterion(network, batches, options.draws, norm=1)["selfsup_split"]
        print(
            f"| {path} | {terms['selfsup_split']:.4f} | {terms['selfsup_ei']:.5f} | {terms['selfsup_mc']:.6f} "
            f"| {held_out_l1:.4f} |"
        )


if __name__ == "__main__":
    main()
