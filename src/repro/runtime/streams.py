"""The random streams of a run, one per use, each seeded from the run's seed and an index
(the epoch or the batch) alone.

Why one place: two uses that shared a stream would change each other's draws, and a draw that
depended on anything but (seed, index, use), such as the thread or the order in which jobs
ran, would make a resumed or parallel run differ from an uninterrupted one.
"""
from __future__ import annotations

import torch

USES = {
    "shuffle": 0,  # the order of training batches, per epoch
    "train_noise": 1,  # random starts of the attack a defense trains on, per epoch
    "eval_noise": 2,  # random starts of the evaluation attacks (index 0)
    "audit_pgd": 4,  # the audit's PGD, per batch
    "autoattack": 5,  # AutoAttack, per batch
    "epsilon": 6,  # the ε curve's PGD, per batch (+ the ε's index)
}


def generator(seed: int, index: int, use: str, offset: int = 0) -> torch.Generator:
    """A CPU generator for ``use`` at ``index`` (epoch or batch) of the run seeded ``seed``;
    ``offset`` tells apart the draws of one batch (the ε curve's: the ε's index)."""
    return torch.Generator().manual_seed(stream_seed(seed, index, use) + offset)


def stream_seed(seed: int, index: int, use: str) -> int:
    return 1_000_003 * seed + 1009 * index + USES[use]
