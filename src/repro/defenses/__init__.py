"""The training losses of every defense, in the order of forward passes the paper's code used.

Order matters beyond the loss value: every train-mode forward pass updates the batch-norm
running statistics that the evaluation later uses, so the passes below mirror the authors'
``training_step`` (adversarial pass first, then the clean one).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from repro import attacks
from repro.config import Protocol, RunSpec


def _budget(defense: str, protocol: Protocol) -> tuple[float, float, int, bool]:
    """(epsilon, step size, steps, random start) of the attack a defense trains on."""
    if defense.endswith("fgsm"):  # FGSM is one PGD step of size epsilon
        return protocol.epsilon, protocol.epsilon, 1, False
    if defense.startswith("trades"):  # ledger 4
        cfg = protocol.trades_pgd
        return cfg.epsilon, cfg.step_size, cfg.steps, False
    cfg = protocol.pgd
    return protocol.epsilon, cfg.step_size, cfg.steps, cfg.random_start


def training_attack(model, inputs, labels, defense: str, protocol: Protocol, start=None,
                    loss: str = "ce", generator=None, noise=None):
    """The adversarial examples a defense trains on: the ε-ball is centred on ``inputs``."""
    epsilon, step_size, steps, random_start = _budget(defense, protocol)
    return attacks.pgd(model, inputs, labels, epsilon, step_size, steps,
                       random_start=random_start, clip=(0.0, 1.0) if protocol.clip else None,
                       start=start, loss=loss, generator=generator, noise=noise)


def step_noise(run: RunSpec, protocol: Protocol, shape, generator) -> torch.Tensor | None:
    """The one random draw a training step of ``run`` makes, on the CPU, or None.

    TRADES starts its attack from N(0, 1) noise; PGD with a random start draws U[0, 1).
    Drawn apart from the step so that a CUDA graph of the step can take it as an input.
    """
    if run.defense.startswith("trades"):
        return torch.randn(shape, generator=generator, device="cpu")
    if run.defense != "standard" and _budget(run.defense, protocol)[3]:
        return attacks.uniform_noise(shape, generator)
    return None


def embedding_distance(adv: torch.Tensor, clean: torch.Tensor, distance: str) -> torch.Tensor:
    """d_emb: the paper's code used the mean squared difference over all elements ("mse");
    the text says Euclidean ("euclidean": per-sample L2 norm, averaged over the batch)."""
    if distance == "mse":
        return torch.mean((adv - clean) ** 2)
    return (adv - clean).flatten(1).norm(dim=1).mean()


def training_loss(model, inputs, labels, run: RunSpec, protocol: Protocol,
                  generator: torch.Generator | None = None, noise: torch.Tensor | None = None):
    """(loss, logits whose accuracy is logged) for one batch; model must be in train mode.

    ``noise`` is the step's random draw (:func:`step_noise`); drawn here from ``generator``
    when not given.
    """
    defense = run.defense
    if defense == "standard":
        logits = model(inputs)
        return F.cross_entropy(logits, labels), logits

    if noise is None:
        noise = step_noise(run, protocol, inputs.shape, generator)
    if defense.startswith("trades"):
        cfg = protocol.trades
        start = inputs + cfg.init_noise * noise.to(inputs.device)
        # Paper's code: the CE attack treats the noisy image as its origin; official TRADES
        # (inner="kl") starts there but projects around the clean image.
        if cfg.inner == "ce":
            adv = training_attack(model, start, labels, defense, protocol)
        else:
            adv = training_attack(model, inputs, labels, defense, protocol, start=start,
                                  loss="kl")
        logits_adv = model(adv)
        logits = model(inputs)
        robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1),
                          reduction="sum") / len(inputs)
        return F.cross_entropy(logits, labels) + cfg.beta * robust, logits_adv

    adv = training_attack(model, inputs, labels, defense, protocol, noise=noise)
    if defense.startswith("at-"):
        logits = model(adv)
        return F.cross_entropy(logits, labels), logits

    # cl-*: CE on the adversarial batch + beta * d_emb(g(x_adv), g(x)).
    layer = run.layer
    logits, taps_adv = model.forward_taps(adv, (layer,))
    _, taps_clean = model.forward_taps(inputs, (layer,), logits=False)
    if protocol.cl.extra_adv_pass:  # the paper's code embedded x_adv in a pass of its own
        _, taps_adv = model.forward_taps(adv, (layer,), logits=False)
    distance = embedding_distance(taps_adv[layer], taps_clean[layer], protocol.cl.distance)
    return F.cross_entropy(logits, labels) + run.beta * distance, logits
