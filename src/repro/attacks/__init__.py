"""FGSM, PGD and DeepFool, batched, in the model's input space (see model.Classifier).

All attacks run with the model in eval mode and restore the caller's mode afterwards (the
paper's code attacked in eval mode, also during training). They need input gradients only,
so parameter gradients are switched off while attacking.

``clip`` is the image range: (0, 1) when attacking pixels, None when attacking normalized
tensors as the paper's code did (ledger 2).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from repro import registry
from repro.config import Protocol

Range = tuple[float, float] | None


@contextmanager
def attacking(model: torch.nn.Module):
    """Eval mode and frozen parameters for the duration of an attack, then restore both."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)
        model.train(was_training)


def _input_grad(loss_fn, model, inputs, labels, reference=None):
    inputs = inputs.detach().requires_grad_(True)
    logits = model(inputs)
    loss = loss_fn(logits, labels, reference)
    (grad,) = torch.autograd.grad(loss, inputs)
    return grad


def ce_loss(logits, labels, reference=None):
    return F.cross_entropy(logits, labels)


def kl_loss(logits, labels, reference):
    """TRADES' inner objective: KL(f(x) || f(x_adv)) with f(x) fixed (``reference``)."""
    return F.kl_div(F.log_softmax(logits, dim=1), reference, reduction="sum")


def fgsm(model, inputs, labels, epsilon: float, clip: Range = None) -> torch.Tensor:
    """One signed-gradient step of size ε up the cross-entropy (a one-step PGD)."""
    return pgd(model, inputs, labels, epsilon, epsilon, 1, clip=clip)


def pgd(model, inputs, labels, epsilon: float, step_size: float, steps: int, *,
        random_start: bool = False, clip: Range = None, start: torch.Tensor | None = None,
        loss: str = "ce", generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None) -> torch.Tensor:
    """L∞ PGD: signed steps, projected onto [x − ε, x + ε] (and ``clip``) after each step.

    ``start`` overrides the starting point (TRADES starts from x + 0.001·N(0, 1));
    ``random_start`` draws it uniformly from the ε-ball instead, from ``noise`` (U[0, 1) of
    the inputs' shape, :func:`uniform_noise`) or else from ``generator``. ``loss="kl"``
    maximizes KL(f(x) || f(x_adv)) as official TRADES does, instead of the cross-entropy to
    the label.
    """
    low, high = inputs - epsilon, inputs + epsilon
    adv = inputs if start is None else start
    if random_start:
        if noise is None:
            noise = uniform_noise(inputs.shape, generator)
        adv = inputs + (2 * noise.to(inputs.device) - 1) * epsilon
    if clip:
        adv = adv.clamp(*clip)
    with attacking(model):
        reference = F.softmax(model(inputs), dim=1) if loss == "kl" else None
        loss_fn = kl_loss if loss == "kl" else ce_loss
        for _ in range(steps):
            grad = _input_grad(loss_fn, model, adv, labels, reference)
            adv = torch.max(torch.min(adv + step_size * grad.sign(), high), low)
            if clip:
                adv = adv.clamp(*clip)
    return adv.detach()


def uniform_noise(shape, generator: torch.Generator | None) -> torch.Tensor:
    """PGD's random start draws, on the CPU whatever the device: a seed gives the same start
    on any machine, and a CUDA graph can take the draws as an input (it cannot draw from a
    CPU generator itself)."""
    return torch.rand(shape, generator=generator, device="cpu")


def _boundary_gradients(model, inputs, labels):
    """Logit differences f_k − f_label (N×(K−1), k ≠ label) and their input gradients
    ((K−1)×N×...), from one forward pass and one batched backward pass.

    DeepFool needs a gradient per class; ``is_grads_batched`` runs the K−1 backward passes as
    one vmapped pass (one set of large kernels instead of K−1 small ones, which is what matters
    on a GPU) and asking for the differences directly skips the label's own gradient.
    """
    inputs = inputs.detach().requires_grad_(True)
    logits = model(inputs)
    n, k = logits.shape
    shift = torch.arange(k - 1, device=inputs.device).expand(n, -1)
    others = shift + (shift >= labels.unsqueeze(1))  # N×(K−1): every class but the label
    directions = F.one_hot(others, k) - F.one_hot(labels, k).unsqueeze(1)  # N×(K−1)×K
    (grads,) = torch.autograd.grad(logits, inputs, directions.transpose(0, 1).to(logits.dtype),
                                   is_grads_batched=True)
    f_diff = logits.detach().gather(1, others) - logits.detach().gather(1, labels.unsqueeze(1))
    return f_diff, grads


def bucket(active: torch.Tensor, full: int) -> torch.Tensor:
    """``active`` padded, by repeating its first index, to the next power of two (at most
    ``full``): the few shapes DeepFool's shrinking active set then shows the model.

    On a GPU, ``cudnn.benchmark`` autotunes every new input shape: an active set that shrinks
    by a few samples per step made DeepFool 20x slower than with autotuning off (13.3 s vs
    0.58 s for 1,024 images on an H100, 2026-11-26). Padded to powers of
    two, a chunk of 1,024 shows at most 11 sizes, tuned once per process. The padding rows
    are computed and dropped: in eval mode every sample's outputs are its own.
    """
    size = min(full, 1 << (len(active) - 1).bit_length())
    return torch.cat([active, active[:1].expand(size - len(active))])


def deepfool(model, inputs, labels, steps: int = 20, overshoot: float = 0.02,
             overshoot_on: str = "step", clamp: tuple[float, float] = (0.0, 1.0),
             buckets: bool | None = None):
    """Batched DeepFool (L2) on the samples that are still classified as their label.

    A sample stops as soon as its prediction differs from its label. Each step moves it to
    the linearized nearest boundary: ``overshoot_on="step"`` applies (1 + overshoot) to each
    step as the paper's code (and torchattacks) do; ``"total"`` applies it to the accumulated
    perturbation as the original DeepFool and foolbox do. The input space is clamped to
    ``clamp`` after every step; in the paper's protocol that space is the *normalized*
    tensor, which wipes its negative values (ledger 5).

    Cost: every step first checks the active samples with a gradient-free forward pass, and
    only those still classified as their label pay for the K−1 class gradients.

    ``buckets`` pads the active set to a few sizes (:func:`bucket`); the default, None, pads
    on CUDA only, so CPU runs compute exactly what they did before.

    Returns (adversarial inputs, logits): the logits are the ones the stop rule looked at, so
    the verdict reported by the evaluation is the verdict the attack reached, whatever the
    batch composition of a later forward pass.
    """
    adv = inputs.detach().clone()
    total = torch.zeros_like(adv)
    active = torch.arange(len(inputs), device=inputs.device)
    logits = None
    if buckets is None:
        buckets = inputs.is_cuda

    def computed(indices):  # the samples a pass computes: the active ones, padded or not
        return bucket(indices, len(inputs)) if buckets else indices

    with attacking(model):
        for step in range(steps + 1):
            with torch.no_grad():
                current = model(adv[computed(active)])[:len(active)]
            if logits is None:
                logits = current.new_empty(len(inputs), current.shape[1])
            logits[active] = current
            active = active[current.argmax(1) == labels[active]]
            if step == steps or len(active) == 0:
                break
            padded = computed(active)
            f_diff, w_diff = _boundary_gradients(model, adv[padded], labels[padded])
            f_diff, w_diff = f_diff[:len(active)], w_diff[:, :len(active)]
            w_norm = w_diff.flatten(2).norm(dim=2).t()  # N×(K−1)
            target = (f_diff.abs() / w_norm).argmin(1)
            rows = torch.arange(len(active), device=inputs.device)
            scale = f_diff[rows, target].abs() / w_norm[rows, target] ** 2
            step_r = scale.view(-1, *[1] * (adv.dim() - 1)) * w_diff[target, rows]
            if overshoot_on == "step":
                adv[active] = (adv[active] + (1 + overshoot) * step_r).clamp(*clamp)
            else:
                total[active] = total[active] + step_r
                adv[active] = (inputs[active] + (1 + overshoot) * total[active]).clamp(*clamp)
    return adv.detach(), logits


def attack_noise(attack: str, protocol: Protocol, shape, generator) -> torch.Tensor | None:
    """The random draws ``run_attack`` makes (its attack's ``noise``), or None."""
    draw = registry.attack(attack).noise
    return None if draw is None else draw(protocol, shape, generator)


def run_attack(model, attack: str, inputs, labels, protocol: Protocol,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None):
    """Evaluate-time attack by id (repro.registry); returns (adversarial inputs, logits at
    those inputs).

    ``noise``: its random draws (:func:`attack_noise`), else drawn from ``generator``."""
    if noise is None:
        noise = attack_noise(attack, protocol, inputs.shape, generator)
    return registry.attack(attack).run(model, inputs, labels, protocol, noise)


def logits_at(model, adv: torch.Tensor) -> torch.Tensor:
    """The eval-mode logits at ``adv``, without gradients, restoring the caller's mode (the
    verdict of an attack that returns only its adversarial inputs)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(adv)
    model.train(was_training)
    return logits


def clip_range(protocol: Protocol) -> Range:
    """FGSM/PGD's image range: [0, 1] on pixels, none on normalized tensors (ledger 2)."""
    return (0.0, 1.0) if protocol.clip else None
