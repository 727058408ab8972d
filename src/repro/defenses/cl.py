"""The paper's contrastive loss (CL): CE on the adversarial batch + β·d_emb(g(x_adv), g(x)) at
an embedding layer g (Table 3); ``run.layer`` and ``run.beta`` pick them (a layered defense)."""
import torch
import torch.nn.functional as F

from repro.defenses import fgsm_budget, pgd_budget, training_attack, uniform_start_noise
from repro.registry import Defense


def embedding_distance(adv: torch.Tensor, clean: torch.Tensor, distance: str) -> torch.Tensor:
    """d_emb: the paper's code used the mean squared difference over all elements ("mse");
    the text says Euclidean ("euclidean": per-sample L2 norm, averaged over the batch)."""
    if distance == "mse":
        return torch.mean((adv - clean) ** 2)
    return (adv - clean).flatten(1).norm(dim=1).mean()


def _loss(budget):
    def loss(model, inputs, labels, run, protocol, noise):
        adv = training_attack(model, inputs, labels, budget(protocol), protocol, noise=noise)
        layer = run.layer
        logits, taps_adv = model.forward_taps(adv, (layer,))
        _, taps_clean = model.forward_taps(inputs, (layer,), logits=False)
        if protocol.cl.extra_adv_pass:  # the paper's code embedded x_adv in a pass of its own
            _, taps_adv = model.forward_taps(adv, (layer,), logits=False)
        distance = embedding_distance(taps_adv[layer], taps_clean[layer], protocol.cl.distance)
        return F.cross_entropy(logits, labels) + run.beta * distance, logits
    return loss


MEMBERS = [
    # cost: training on three passes plus the attack's steps
    Defense(id="cl-fgsm", label="ResNet+CL-FGSM", reads=("epsilon", "cl"), layered=True,
            loss=_loss(fgsm_budget), noise=uniform_start_noise(fgsm_budget),
            cost=lambda p: 1 + 2 / 3 + 1),
    Defense(id="cl-pgd", label="ResNet+CL-PGD", reads=("epsilon", "pgd", "cl"), layered=True,
            loss=_loss(pgd_budget), noise=uniform_start_noise(pgd_budget),
            cost=lambda p: 1 + 2 / 3 + p.pgd.steps),
]
