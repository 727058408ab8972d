"""Adversarial training (Madry et al.): cross-entropy on FGSM or PGD examples only."""
import torch.nn.functional as F

from repro.defenses import fgsm_budget, pgd_budget, training_attack, uniform_start_noise
from repro.registry import Defense


def _loss(budget):
    def loss(model, inputs, labels, run, protocol, noise):
        adv = training_attack(model, inputs, labels, budget(protocol), protocol, noise=noise)
        logits = model(adv)
        return F.cross_entropy(logits, labels), logits
    return loss


MEMBERS = [
    # cost: one training pass plus one attack step (a forward and an input backward) per step
    Defense(id="at-fgsm", label="ResNet+AT-FGSM", reads=("epsilon",), loss=_loss(fgsm_budget),
            noise=uniform_start_noise(fgsm_budget), cost=lambda p: 2.0),
    Defense(id="at-pgd", label="ResNet+AT-PGD", reads=("epsilon", "pgd"), loss=_loss(pgd_budget),
            noise=uniform_start_noise(pgd_budget), cost=lambda p: 1.0 + p.pgd.steps),
]
