"""AutoAttack (Croce & Hein 2020) from torchattacks' four components, seeded and isolated.

The components are torchattacks' own APGD (CE), APGD-T, FAB-T and Square; this module only
composes them the way the original AutoAttack does (each runs on the points every earlier one
failed to fool), with three things torchattacks 3.5.1 gets wrong for a pipeline:

- **Budgets.** ``torchattacks.AutoAttack(version='standard')`` runs 10 iterations per
  component; the original runs APGD-CE 100, APGD-T 9 targets x 100, FAB-T 9 x 100 and Square
  5,000 queries. Every budget is a :class:`Budget` field (a config value).
- **Random numbers.** Each component reseeds and draws from torch's process-wide RNG. Jobs
  run as threads of one process, so two attacks (or an attack and a model initialization)
  would disturb each other. :func:`private_rng` gives the calling thread a generator of its
  own that those four modules draw from instead (see :class:`_ThreadSeededTorch`); nothing
  else in the process sees a draw or a reseed.
- **The box.** The components clamp to [0, 1] with no check. :class:`UnitBox` presents the
  model to them as a function of u in [0, 1]^d, an affine image of the threat model's box, so
  the clamp is the threat model's own box (pixels: [0, 1]; the paper's normalized tensors: a
  range wide enough never to bind, i.e. no box, as the paper's PGD had).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torchattacks.attacks import apgd, apgdt, fab, square

from repro.attacks import attacking

COMPONENTS = ("apgd-ce", "apgd-t", "fab-t", "square")
GRADIENT_FREE = ("square",)
# Square's step schedule: the official code's fixed one (False), not torchattacks' default,
# which rescales it to the query budget; audit records carry it (repro.records).
SQUARE_RESCALE = False


@dataclass(frozen=True)
class Budget:
    """Iterations, targets and queries of each component (``audit.autoattack`` in the config)."""
    apgd_ce_steps: int = 100
    apgd_t_steps: int = 100
    apgd_t_targets: int = 9
    fab_t_steps: int = 100
    fab_t_targets: int = 9
    square_queries: int = 5000

    @classmethod
    def from_config(cls, section: dict) -> "Budget":
        return cls(section["apgd_ce"]["steps"], section["apgd_t"]["steps"],
                   section["apgd_t"]["targets"], section["fab_t"]["steps"],
                   section["fab_t"]["targets"], section["square"]["queries"])

    @property
    def is_original(self) -> bool:
        """At least the original AutoAttack's budget in every component."""
        original = ORIGINAL_BUDGET
        return all(getattr(self, f) >= getattr(original, f) for f in vars(original))


ORIGINAL_BUDGET = Budget()


# ---- a private RNG for torchattacks' AutoAttack modules ----

_LOCAL = threading.local()


def _private() -> torch.Generator | None:
    return getattr(_LOCAL, "generator", None)


class _Forward:
    """Attribute access falls through to the wrapped module."""

    def __init__(self, wrapped):
        self._wrapped = wrapped

    def __getattr__(self, name):
        return getattr(self._wrapped, name)


class _ThreadSeededRandom(_Forward):
    """``torch.random`` whose ``manual_seed`` reseeds the thread's private generator."""

    def manual_seed(self, seed):
        generator = _private()
        return torch.manual_seed(seed) if generator is None else generator.manual_seed(int(seed))


class _ThreadSeededCuda(_Forward):
    """``torch.cuda`` whose ``random.manual_seed`` is a no-op under a private generator: the
    components draw every random number on the CPU, so the CUDA RNG plays no part."""

    class _Random(_Forward):
        def manual_seed(self, seed):
            if _private() is None:
                torch.cuda.random.manual_seed(seed)

    def __init__(self):
        super().__init__(torch.cuda)
        self.random = self._Random(torch.cuda.random)


class _ThreadSeededTorch(_Forward):
    """What the four component modules see as ``torch``: the real module, except that their
    random draws (``torch.rand``, ``torch.randn``) and reseeds (``torch.random.manual_seed``,
    ``torch.cuda.random.manual_seed``) go to the calling thread's private generator while
    :func:`private_rng` is active, and to torch's as usual otherwise. Those four calls are
    every use of randomness in the modules (torchattacks 3.5.1); tests/test_autoattack.py
    fails if a draw escapes."""

    def __init__(self):
        super().__init__(torch)
        self.random = _ThreadSeededRandom(torch.random)
        self.cuda = _ThreadSeededCuda()

    @staticmethod
    def rand(*size, **kwargs):
        return torch.rand(*size, generator=_private(), **kwargs)

    @staticmethod
    def randn(*size, **kwargs):
        return torch.randn(*size, generator=_private(), **kwargs)


for _module in (apgd, apgdt, fab, square):
    if _module.torch is torch:
        _module.torch = _ThreadSeededTorch()


@contextmanager
def private_rng():
    """Route the AutoAttack components' randomness in this thread to a fresh generator."""
    previous = _private()
    _LOCAL.generator = torch.Generator()
    try:
        yield
    finally:
        _LOCAL.generator = previous


# ---- the threat model as a unit box ----

class UnitBox(nn.Module):
    """``model`` as a function of u in [0, 1]^d: model(low + (high - low) * u).

    One scale for every coordinate, so an L∞ ball of radius ε in the model's input space is
    the L∞ ball of radius ε / (high - low) in u, and the components' [0, 1] clamp is the box
    [low, high] of the model's input space.
    """

    def __init__(self, model: nn.Module, low: float, high: float):
        super().__init__()
        self.model, self.low, self.span = model, float(low), float(high - low)

    def to_unit(self, inputs: torch.Tensor) -> torch.Tensor:
        return (inputs - self.low) / self.span

    def from_unit(self, unit: torch.Tensor) -> torch.Tensor:
        return self.low + self.span * unit

    def forward(self, unit: torch.Tensor) -> torch.Tensor:
        return self.model(self.from_unit(unit))


def input_box(model, epsilon: float, clip: bool) -> tuple[float, float]:
    """The box of the threat model in the model's input space.

    ``clip``: [0, 1] pixels. Otherwise (the paper's normalized tensors, never clipped) the
    smallest range holding every normalized image and its whole ε-ball, so the box never
    binds: the threat model is the ε-ball alone, as for the paper's PGD.
    """
    if clip:
        return 0.0, 1.0
    device = next(model.parameters()).device  # a CPU corner and a GPU's statistics won't mix
    corners = torch.cat([model.to_input(torch.zeros(1, 3, 1, 1, device=device)).flatten(),
                         model.to_input(torch.ones(1, 3, 1, 1, device=device)).flatten()])
    return corners.min().item() - epsilon, corners.max().item() + epsilon


# ---- the ensemble ----

def components(boxed: UnitBox, epsilon: float, budget: Budget, seed: int) -> list:
    """The four torchattacks components at ``budget``, as the original AutoAttack sets them
    (one restart each; Square with p_init 0.8, the margin loss and the original's fixed step
    schedule: torchattacks' default ``resc_schedule=True`` rescales Square's schedule to its
    query budget, the official code does not, which matters below 10,000 queries)."""
    from torchattacks import APGD, APGDT, FAB, Square

    eps = epsilon / boxed.span
    return [APGD(boxed, norm="Linf", eps=eps, steps=budget.apgd_ce_steps, n_restarts=1,
                 seed=seed, loss="ce"),
            APGDT(boxed, norm="Linf", eps=eps, steps=budget.apgd_t_steps, n_restarts=1,
                  seed=seed + 1, n_classes=budget.apgd_t_targets + 1),
            FAB(boxed, norm="Linf", eps=eps, steps=budget.fab_t_steps, n_restarts=1,
                seed=seed + 2, multi_targeted=True, n_classes=budget.fab_t_targets + 1),
            Square(boxed, norm="Linf", eps=eps, n_queries=budget.square_queries, n_restarts=1,
                   seed=seed + 3, p_init=0.8, loss="margin", resc_schedule=SQUARE_RESCALE)]


def _project(candidate: torch.Tensor, unit: torch.Tensor, eps: float) -> torch.Tensor:
    """Into the threat model (ε-ball and box); a non-finite candidate falls back to the clean
    point (FAB divides by gradient norms, which are 0 on a model that masks its gradients)."""
    candidate = torch.where(torch.isfinite(candidate), candidate, unit)
    return torch.min(torch.max(candidate, unit - eps), unit + eps).clamp(0.0, 1.0)


def autoattack(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, epsilon: float,
               clip: bool, budget: Budget, seed: int) -> dict:
    """AutoAttack on one batch of model inputs, inside the threat model (ε, box).

    Returns ``adversarial`` (model inputs), ``logits`` there, and ``fooled_by``: per image the
    index in :data:`COMPONENTS` of the component that fooled it first, -1 if none did (clean
    mistakes count as fooled by none: they are wrong without an attack).

    The same batch, budget and seed give the same result whatever other threads do; a
    different batch composition gives other random draws, so callers fix the batches.
    """
    # In eval mode from the start: torchattacks restores the mode it found after each call,
    # and a fresh module is in training mode (batch statistics, running stats overwritten).
    boxed = UnitBox(model, *input_box(model, epsilon, clip)).eval()
    unit = boxed.to_unit(inputs.detach())
    eps = epsilon / boxed.span
    adversarial = unit.clone()
    fooled_by = torch.full_like(labels, -1)
    with attacking(model), private_rng():
        with torch.no_grad():
            robust = boxed(unit).argmax(1) == labels
        for index, attack in enumerate(components(boxed, epsilon, budget, seed)):
            todo = robust.nonzero().flatten()
            if len(todo) == 0:
                break
            found = _project(attack(unit[todo], labels[todo]).detach(), unit[todo], eps)
            with torch.no_grad():
                fooled = boxed(found).argmax(1) != labels[todo]
            adversarial[todo[fooled]] = found[fooled]
            fooled_by[todo[fooled]] = index
            robust[todo[fooled]] = False
        with torch.no_grad():
            logits = boxed(adversarial)
    return {"adversarial": boxed.from_unit(adversarial), "logits": logits,
            "fooled_by": fooled_by}
