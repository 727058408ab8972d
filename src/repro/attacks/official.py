"""The official AutoAttack as a referee for :mod:`repro.attacks.autoattack`.

``pyautoattack`` (PyPI; the test extra) packages Croce & Hein's own code, fra31/auto-attack,
the implementation RobustBench reports. :func:`official_autoattack` runs it on the same
threat model and budget as the audit's cascade, so the two can be compared image by image
(tests/test_autoattack.py, benchmarks/autoattack_official.py). It is never part of the
pipeline: the audit keeps torchattacks' components and its private RNG, because the official
code reseeds torch's process-wide RNG, which concurrent jobs (threads of one process) share.

What has to be set by hand to make the official ``version='custom'`` run the audit's budget,
found by trying it (pyautoattack 0.2.0):

- ``attacks=`` is keyword-only, and with ``version='custom'`` APGD-CE keeps the 5 restarts
  of its constructor and FAB its 5 (the standard version sets both to 1);
- APGD derives its step-size checkpoints from ``n_iter`` when it is built, so setting
  ``n_iter`` afterwards keeps the 100-step schedule: every component is rebuilt here with its
  budget in the constructor, with the other arguments ``AutoAttack.__init__`` passes;
- it neither puts the model in eval mode nor freezes its weights (FAB's ``backward()`` leaves
  gradients on them): :func:`repro.attacks.attacking` does both, as for the audit;
- it reseeds torch's global RNG: the call runs inside ``torch.random.fork_rng``, so the
  caller's RNG state is the same afterwards (this is not thread-safe, hence a referee only);
- it logs at DEBUG level on the ``auto-attack`` logger (nothing shows by default).
"""
from __future__ import annotations

import torch
from torch import nn

from repro.attacks import attacking
from repro.attacks.autoattack import COMPONENTS, Budget, UnitBox, input_box
from repro.errors import UserError


def _official():
    try:
        import pyautoattack
    except ImportError as error:  # only the referee needs it, never the pipeline
        raise UserError("the official AutoAttack is not installed: pip install pyautoattack "
                        "(it is in the test extra of requirements.lock)") from error
    return pyautoattack


def referee(boxed: nn.Module, eps: float, budget: Budget, seed: int, device):
    """An official ``AutoAttack`` (version 'custom', the four standard components) whose
    components are built with ``budget``: one restart each, the standard version's settings
    otherwise (Square: p_init 0.8, ``resc_schedule=False``)."""
    official = _official()
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
    from pyautoattack.fab_pt import FABAttack_PT
    from pyautoattack.square import SquareAttack

    attack = official.AutoAttack(boxed, attacks=list(COMPONENTS), version="custom", eps=eps,
                                 norm="Linf", seed=seed, device=device)
    common = dict(norm="Linf", eps=eps, seed=seed, verbose=False, device=device)
    attack.apgd = APGDAttack(boxed, n_iter=budget.apgd_ce_steps, n_restarts=1, eot_iter=1,
                             rho=.75, logger=attack.logger, **common)
    attack.apgd_targeted = APGDAttack_targeted(
        boxed, n_iter=budget.apgd_t_steps, n_restarts=1, eot_iter=1, rho=.75,
        n_target_classes=budget.apgd_t_targets, logger=attack.logger, **common)
    attack.fab = FABAttack_PT(boxed, n_iter=budget.fab_t_steps, n_restarts=1,
                              n_target_classes=budget.fab_t_targets, **common)
    attack.square = SquareAttack(boxed, n_queries=budget.square_queries, p_init=.8,
                                 n_restarts=1, resc_schedule=False, **common)
    return attack


def official_autoattack(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                        epsilon: float, clip: bool, budget: Budget, seed: int) -> dict:
    """The official AutoAttack on one batch, inside the audit's threat model (ε, box).

    Same interface as :func:`repro.attacks.autoattack.autoattack` minus ``fooled_by`` (the
    official code does not say which component fooled an image): ``adversarial`` (model
    inputs) and ``logits`` there. The model is presented as the same :class:`UnitBox`, so the
    official [0, 1] clamp is the threat model's box, as for the audit.
    """
    boxed = UnitBox(model, *input_box(model, epsilon, clip))  # no .eval(): it would recurse
    unit = boxed.to_unit(inputs.detach())
    with attacking(model), torch.random.fork_rng():  # eval mode inside, the caller's after
        attack = referee(boxed, epsilon / boxed.span, budget, seed, inputs.device)
        adversarial, _ = attack.run_standard_evaluation(unit, labels, batch_size=len(unit))
        with torch.no_grad():
            logits = boxed(adversarial)
    return {"adversarial": boxed.from_unit(adversarial), "logits": logits}


def agreement(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, epsilon: float,
              clip: bool, budget: Budget, seeds: list[int], on_run=None) -> dict:
    """The audit's AutoAttack and the official one on the same images, once per seed each.

    Per image and run, robust = still classified correctly. The two use different random
    numbers (a private generator against torch's reseeded global one), so a single pair of
    runs differs on images whose verdict depends on the draw. The bound on that seed noise is
    the implementations' own spread: an image is a disagreement *beyond* seed noise only if
    one implementation fooled it in every one of its runs and the other in none of its own.
    Robust accuracies are compared the same way: their means over seeds against the largest
    difference between two seeds of one implementation. ``on_run(name, seed, robust)`` is
    called after each run (a long comparison can keep what it has).
    """
    from repro.attacks.autoattack import autoattack

    robust = {"repro": [], "official": []}
    for seed in seeds:
        for name, attack in (("repro", autoattack), ("official", official_autoattack)):
            found = attack(model, inputs, labels, epsilon, clip, budget, seed)
            robust[name].append((found["logits"].argmax(1) == labels).cpu())
            if on_run is not None:
                on_run(name, seed, robust[name][-1])
    robust = {name: torch.stack(runs) for name, runs in robust.items()}  # seeds x images

    def percent(flags):
        return (100 * flags.float().mean(-1)).tolist()

    def fooled_only_by(name, other):
        return (~robust[name].any(0) & robust[other].all(0)).nonzero().flatten().tolist()

    top1 = {name: percent(flags) for name, flags in robust.items()}
    return {
        "n": len(labels), "seeds": list(seeds),
        "robust_top1": top1,
        "mean_robust_top1": {name: sum(v) / len(v) for name, v in top1.items()},
        "seed_spread": max(max(v) - min(v) for v in top1.values()),
        "disagree_same_seed": [int((a != b).sum()) for a, b in zip(robust["repro"],
                                                                 robust["official"])],
        "seed_dependent": {name: int((flags.any(0) & ~flags.all(0)).sum())
                           for name, flags in robust.items()},
        "beyond_seed_noise": {"fooled_only_by_repro": fooled_only_by("repro", "official"),
                              "fooled_only_by_official": fooled_only_by("official", "repro")},
        "per_image": {name: flags.tolist() for name, flags in robust.items()},
    }
