"""L∞ PGD (Madry et al. 2018) with the protocol's steps, step size and random start
(``protocol.pgd``; ledger 3)."""
from repro.attacks import clip_range, logits_at, pgd, uniform_noise
from repro.registry import Attack


def noise(protocol, shape, generator):
    """The random start's draws, when the protocol asks for one."""
    return uniform_noise(shape, generator) if protocol.pgd.random_start else None


def run(model, inputs, labels, protocol, noise):
    cfg = protocol.pgd
    adv = pgd(model, inputs, labels, protocol.epsilon, cfg.step_size, cfg.steps,
              random_start=cfg.random_start, clip=clip_range(protocol), noise=noise)
    return adv, logits_at(model, adv)


def parameters(protocol):
    return {"epsilon": protocol.epsilon, **vars(protocol.pgd), "space": protocol.attack_space,
            "clip": protocol.clip}


MEMBERS = [Attack(id="pgd", label="PGD", reads=("epsilon", "pgd", "attack_space", "clip"),
                  run=run, noise=noise, parameters=parameters, graphs=True,
                  cost=lambda p, assumed: p.pgd.steps + 1 / 3)]
