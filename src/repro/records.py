"""What a job's output depends on: a checkpoint's run record, an evaluation's and an audit's.

One definition serves three readers: the checkpoint stores its run record, the evaluation refuses
a checkpoint whose record differs from the config's, and the workflow passes both records as
Snakemake ``params:``, so that a changed value reruns exactly the jobs that read it (a changed
DeepFool setting reruns DeepFool evaluations, not trainings; ``report:`` or ``resources:``
rerun no job). The keys each defense and attack reads come from its declaration in the
registry (repro.registry), so nobody lists them by hand.
"""
from __future__ import annotations

import dataclasses

from repro import registry
from repro.attacks.autoattack import SQUARE_RESCALE
from repro.config import Protocol, RunSpec, Settings

# What every run reads: the model's wrapper normalizes in the attack space (ledger 2, 11).
EVERY_RUN_READS = ("attack_space", "normalization")


def training_keys(defense: str) -> tuple[str, ...]:
    """The protocol keys that training ``defense`` reads, and no other: what every run reads,
    then what its declaration says (its ``reads`` and its own section)."""
    member = registry.defense(defense)
    own = (member.settings_key,) if member.settings_key else ()
    return tuple(dict.fromkeys(EVERY_RUN_READS + tuple(member.reads) + own))


def attack_keys(attack: str) -> tuple[str, ...]:
    """The protocol keys an evaluation ``attack`` reads (its declaration)."""
    member = registry.attack(attack)
    return tuple(member.reads) + ((member.settings_key,) if member.settings_key else ())


def training_protocol(defense: str, protocol: Protocol) -> dict:
    """The values of :func:`training_keys` (what a checkpoint's run record holds)."""
    return _values(training_keys(defense), protocol)


def _values(keys, protocol: Protocol) -> dict:
    values = {key: protocol.value(key) for key in keys}
    return {key: vars(value) if dataclasses.is_dataclass(value) else value
            for key, value in values.items()}


def evaluation_keys(defense: str, attack: str) -> tuple[str, ...]:
    """The protocol keys an evaluation's accuracy depends on: its checkpoint's, its attack's
    and the averaging. Only these are rebuilt when they change (params:), so only these of
    the protocol an evaluation JSON records are sure to be current (report.caption)."""
    keys = training_keys(defense) + attack_keys(attack) + ("topk_average",)
    return tuple(dict.fromkeys(keys))


def run_record(settings: Settings, run: RunSpec) -> dict:
    """The values that define a run's checkpoint (checked again at evaluation)."""
    cfg = settings.training
    return {"run": run.as_dict(), "protocol": training_protocol(run.defense, settings.protocol),
            "lr": cfg.lr, "weight_decay": cfg.weight_decay_for(run),
            "batch_size": cfg.batch_size_for(run.dataset), "max_epochs": cfg.max_epochs,
            "patience": cfg.patience, "shuffle": cfg.shuffle, "pretrained": settings.pretrained,
            "precision": cfg.precision, "data": _training_data(settings, run.dataset),
            "split_seed": settings.data.split_seed}


def _training_data(settings: Settings, dataset: str) -> dict:
    """The dataset entry without the test subset, which only evaluations read."""
    entry = dict(settings.data.source(dataset))
    subset = {k: v for k, v in entry.pop("subset", {}).items() if k != "test"}
    return {**entry, "subset": subset} if subset else entry


def attack_parameters(attack: str, protocol: Protocol) -> dict:
    """What an evaluation JSON records about its attack: its declaration's ``parameters``, by
    default the values of the keys it reads."""
    member = registry.attack(attack)
    if member.parameters is not None:
        return member.parameters(protocol)
    return _values(attack_keys(attack), protocol)


def evaluation_record(settings: Settings, run: RunSpec, attack: str) -> dict:
    """What an evaluation's accuracy depends on beyond its checkpoint's run record: the attack's
    parameters and how accuracies are averaged (ledger 12: per batch of the training size)."""
    return {"attack": attack_parameters(attack, settings.protocol),
            "test_subset": _test_subset(settings, run.dataset),
            "topk_average": settings.protocol.topk_average,
            "batch_size": settings.training.batch_size_for(run.dataset)}


def audit_record(settings: Settings, run: RunSpec, kind: str) -> dict:
    """What an audit JSON (audit.py) depends on beyond its checkpoint's run record: the table's
    threat model and PGD, which images in which batches, and its kind's own settings.

    Not DeepFool's settings or the averaging, which no audit reads, nor the masking checks'
    thresholds (``audit.tolerance``, ``near_zero``), which only the report reads."""
    protocol, audit = settings.protocol, settings.audit
    # Square's schedule is in the record so that AutoAttack JSONs made with torchattacks'
    # rescaled one (before the official one was adopted) are rebuilt.
    own = ({"autoattack": _sorted(audit.autoattack), "square_rescale": SQUARE_RESCALE}
           if kind == "autoattack" else {"epsilons": list(audit.epsilons)})
    return {"epsilon": protocol.epsilon, "space": protocol.attack_space, "clip": protocol.clip,
            "pgd": vars(protocol.pgd), "test_subset": _test_subset(settings, run.dataset),
            "n_images": audit.n_images, "chunk_size": audit.chunk_size, **own}


def _sorted(value):
    """A config dict with its keys in one order: Snakemake compares params as text, so YAML
    keys written in another order must not rerun the expensive AutoAttack jobs."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    return value


def _test_subset(settings: Settings, dataset: str):
    return settings.data.source(dataset).get("subset", {}).get("test")
