"""TRADES (Zhang et al. 2019): CE(f(x), y) + β·KL(f(x) || f(x_adv)), sum over the batch / N.

The paper's code started the attack from x + 0.001·N(0, 1) and maximized the CE to the label
(``protocol.trades.inner: ce``); official TRADES maximizes the KL (``kl``). TRADES-PGD's
attack has its own budget, ``protocol.trades_pgd`` (ledger 4, 6).
"""
import torch
import torch.nn.functional as F

from repro.defenses import fgsm_budget, training_attack
from repro.registry import Defense


def trades_pgd_budget(protocol):
    cfg = protocol.trades_pgd
    return cfg.epsilon, cfg.step_size, cfg.steps, False


def noise(run, protocol, shape, generator):
    """TRADES starts its attack from N(0, 1) noise, drawn on the CPU."""
    return torch.randn(shape, generator=generator, device="cpu")


def _loss(budget):
    def loss(model, inputs, labels, run, protocol, noise):
        cfg = protocol.trades
        start = inputs + cfg.init_noise * noise.to(inputs.device)
        # Paper's code: the CE attack treats the noisy image as its origin; official TRADES
        # (inner="kl") starts there but projects around the clean image.
        if cfg.inner == "ce":
            adv = training_attack(model, start, labels, budget(protocol), protocol)
        else:
            adv = training_attack(model, inputs, labels, budget(protocol), protocol,
                                  start=start, loss="kl")
        logits_adv = model(adv)
        logits = model(inputs)
        robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1),
                          reduction="sum") / len(inputs)
        return F.cross_entropy(logits, labels) + cfg.beta * robust, logits_adv
    return loss


MEMBERS = [
    # cost: training on two passes (4/3 of standard's) plus the attack's steps
    Defense(id="trades-fgsm", label="ResNet+TRADES-FGSM", reads=("epsilon", "trades"),
            loss=_loss(fgsm_budget), noise=noise, cost=lambda p: 1 + 1 / 3 + 1),
    Defense(id="trades-pgd", label="ResNet+TRADES-PGD", reads=("trades_pgd", "trades"),
            loss=_loss(trades_pgd_budget), noise=noise,
            cost=lambda p: 1 + 1 / 3 + p.trades_pgd.steps),
]
