"""A toy attack as a user would add one (docs/extending.md): Gaussian noise, no gradients.

Every test image gets ``protocol.gaussian.sigma`` times N(0, 1) noise in the attack space. It
reads ``attack_space`` and its own section, so the recorded parameters (by default the values
of the keys it reads) and the Snakemake params follow them. No cost is declared: the estimate
prices it by the stated default rule.
"""
import torch

from repro.attacks import logits_at
from repro.registry import Attack


def noise(protocol, shape, generator):
    """N(0, 1) draws from the run's evaluation stream, on the CPU."""
    return torch.randn(shape, generator=generator, device="cpu")


def run(model, inputs, labels, protocol, noise):
    adv = inputs + protocol.value("gaussian")["sigma"] * noise.to(inputs.device)
    return adv, logits_at(model, adv)


MEMBERS = [
    Attack(id="gaussian", label="Gauss", reads=("attack_space",), run=run, noise=noise,
           graphs=True, settings_key="gaussian",
           schema={"type": "object", "additionalProperties": False, "required": ["sigma"],
                   "properties": {"sigma": {"type": "number", "minimum": 0}}},
           defaults={"sigma": 0.5}),
]
