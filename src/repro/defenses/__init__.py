"""The training defenses: one module per family (standard, at, trades, cl), each declaring its
members for the registry (repro.registry); this module dispatches a run to its defense and
holds what the adversarial ones share.

Order matters beyond the loss value: every train-mode forward pass updates the batch-norm
running statistics that the evaluation later uses, so each defense's passes mirror the
authors' ``training_step`` (adversarial pass first, then the clean one).
"""
from __future__ import annotations

import torch

from repro import attacks, registry
from repro.config import Protocol, RunSpec


def fgsm_budget(protocol: Protocol) -> tuple[float, float, int, bool]:
    """(epsilon, step size, steps, random start) of FGSM training: one PGD step of size ε."""
    return protocol.epsilon, protocol.epsilon, 1, False


def pgd_budget(protocol: Protocol) -> tuple[float, float, int, bool]:
    """The protocol's PGD (``protocol.pgd``) at ``protocol.epsilon``."""
    cfg = protocol.pgd
    return protocol.epsilon, cfg.step_size, cfg.steps, cfg.random_start


def training_attack(model, inputs, labels, budget, protocol: Protocol, start=None,
                    loss: str = "ce", generator=None, noise=None):
    """The adversarial examples a defense trains on: the ε-ball is centred on ``inputs``;
    ``budget`` is (epsilon, step size, steps, random start)."""
    epsilon, step_size, steps, random_start = budget
    return attacks.pgd(model, inputs, labels, epsilon, step_size, steps,
                       random_start=random_start, clip=(0.0, 1.0) if protocol.clip else None,
                       start=start, loss=loss, generator=generator, noise=noise)


def uniform_start_noise(budget):
    """A defense's ``noise``: PGD's random start draws U[0, 1) when its budget asks for one."""
    def noise(run: RunSpec, protocol: Protocol, shape, generator):
        return attacks.uniform_noise(shape, generator) if budget(protocol)[3] else None
    return noise


def step_noise(run: RunSpec, protocol: Protocol, shape, generator) -> torch.Tensor | None:
    """The one random draw a training step of ``run`` makes, on the CPU, or None
    (its defense's ``noise``)."""
    draw = registry.defense(run.defense).noise
    return None if draw is None else draw(run, protocol, shape, generator)


def training_loss(model, inputs, labels, run: RunSpec, protocol: Protocol,
                  generator: torch.Generator | None = None, noise: torch.Tensor | None = None):
    """(loss, logits whose accuracy is logged) for one batch; model must be in train mode.

    ``noise`` is the step's random draw (:func:`step_noise`); drawn here from ``generator``
    when not given.
    """
    if noise is None:
        noise = step_noise(run, protocol, inputs.shape, generator)
    return registry.defense(run.defense).loss(model, inputs, labels, run, protocol, noise)
