"""What a job's output depends on: a checkpoint's run record, an evaluation's and an audit's.

One definition serves three readers: the checkpoint stores its run record, the evaluation refuses
a checkpoint whose record differs from the config's, and the workflow passes both records as
Snakemake ``params:``, so that a changed value reruns exactly the jobs that read it (a changed
DeepFool setting reruns DeepFool evaluations, not trainings; ``report:`` or ``resources:``
rerun no job). Torch-free, so that parsing the workflow does not import PyTorch.
"""
from __future__ import annotations

from .config import Protocol, RunSpec, Settings


def training_protocol(defense: str, protocol: Protocol) -> dict:
    """The protocol values that training ``defense`` reads (defenses.py), and no other.

    Every defense reads the input space and normalization (the model's wrapper); the adversarial
    ones the budget of their training attack (defenses._budget); TRADES and CL their losses."""
    used = {"attack_space": protocol.attack_space, "normalization": protocol.normalization}
    if defense == "standard":
        return used
    if defense == "trades-pgd":  # ledger 4: its own budget
        used["trades_pgd"] = vars(protocol.trades_pgd)
    else:
        used["epsilon"] = protocol.epsilon
        if defense.endswith("pgd"):
            used["pgd"] = vars(protocol.pgd)
    if defense.startswith("trades"):
        used["trades"] = vars(protocol.trades)
    if defense.startswith("cl"):
        used["cl"] = vars(protocol.cl)
    return used


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
    """What an evaluation JSON records about its attack."""
    space = {"space": protocol.attack_space, "clip": protocol.clip}
    return {
        "clean": {},
        "fgsm": {"epsilon": protocol.epsilon, **space},
        "pgd": {"epsilon": protocol.epsilon, **vars(protocol.pgd), **space},
        "deepfool": {**vars(protocol.deepfool), "clamp": [0.0, 1.0], **space},
    }[attack]


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
    return {"epsilon": protocol.epsilon, "space": protocol.attack_space, "clip": protocol.clip,
            "pgd": vars(protocol.pgd), "test_subset": _test_subset(settings, run.dataset),
            "n_images": audit.n_images, "chunk_size": audit.chunk_size,
            kind: audit.autoattack if kind == "autoattack" else list(audit.epsilons)}


def _test_subset(settings: Settings, dataset: str):
    return settings.data.source(dataset).get("subset", {}).get("test")
