"""Each audited model as a RobustBench ``model_info`` entry, to set beside the leaderboard's.

RobustBench (github.com/RobustBench/robustbench) keeps one JSON per model under
``model_info/<dataset>/<threat model>/<model id>.json``; its leaderboards read the fields of
:data:`FIELDS` (its ``ModelInfo`` dataclass, Linf/L2 entries): accuracies and ε as strings,
``reported`` the robust accuracy the model's own paper claimed, ``footnote`` free text. This
module writes the same layout and fields from an audit JSON (``repro.runs.audit``, the
``autoattack`` kind), never from a checkpoint, and adds one key of its own, :data:`EXTENSION`,
with what RobustBench's format has no field for (threat model in detail, image count, attack
implementation and budget, the run) and, as a list, every way the evaluation differs from
RobustBench's protocol; the footnote says the same in words, so a reader of the leaderboard's
fields alone is not misled.

RobustBench's protocol, for comparison: the official AutoAttack (``version='standard'``,
fra31/auto-attack) on the full test set (10,000 CIFAR-10 images), L∞ ε = 8/255 on [0, 1]
pixels; ImageNet pre-training counts as additional data.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from repro.config import RunSpec
from repro.grid import DATASET_NAMES, DEFENSE_LABELS, MAIN_TABLES
from repro.runtime.io import write_json

FIELDS = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset",
          "venue", "architecture", "eps", "clean_acc", "reported", "autoattack_acc",
          "footnote")
EXTENSION = "repro"
THREAT_MODEL = "Linf"  # the audit's only norm (repro.attacks.autoattack)
ROBUSTBENCH_TEST_IMAGES = 10_000
ROBUSTBENCH_EPSILON = Fraction(8, 255)

PAPER = {"link": "https://github.com/zh-qifan/Contrastive_Learning_Adversarial_Training",
         "title": "Can Contrastive Learning in Embedding Space Improve Adversarial Robustness?",
         "authors": "Qifan Zhang"}


def model_id(run: dict) -> str:
    """The file stem: ``<run name>_seed<seed>`` (unique within a dataset's folder)."""
    return f"{RunSpec(**run).name}_seed{run['seed']}"


def eps_text(epsilon: float) -> str:
    """RobustBench writes ε as '8/255'; a value that is no such fraction stays a decimal."""
    steps = epsilon * 255
    if round(steps) > 0 and abs(steps - round(steps)) < 1e-6:
        return f"{round(steps)}/255"
    return f"{epsilon:g}"


def row_label(run: dict) -> str:
    """The model as the paper's Tables 1 and 2 name it, with layer and β for the CL rows."""
    label = DEFENSE_LABELS[run["defense"]]
    if run.get("layer") is not None:
        label += f" ({run['layer']}, β = {run['beta']:g})"
    return label


def reported_pgd(run: dict, paper: dict) -> float | None:
    """The paper's own PGD top-1 for this model's row (RobustBench's ``reported``: the robust
    accuracy the model's paper claimed), or None where the paper has no such cell."""
    table = next(n for n, (dataset, metric) in MAIN_TABLES.items()
                 if dataset == run["dataset"] and metric == "top1")
    cell = paper.get((table, DEFENSE_LABELS[run["defense"]], "pgd"))
    return None if cell is None else cell[0]


def differences(audit: dict, pretrained: str) -> list[str]:
    """Every way this evaluation differs from RobustBench's protocol, one sentence each."""
    threat, found = audit["threat_model"], []
    if audit["run"]["dataset"] != "cifar10":
        found.append(f"RobustBench has no {DATASET_NAMES[audit['run']['dataset']]} "
                     f"leaderboard")
    if not audit["data_source"].startswith("real"):
        found.append(f"data: {audit['data_source']}, not the dataset's own test set")
    if audit["n"] < ROBUSTBENCH_TEST_IMAGES:
        found.append(f"{audit['n']} test images, not the full {ROBUSTBENCH_TEST_IMAGES:,}")
    if threat["space"] != "pixel":
        found.append("ε is measured on normalized tensors with no [0, 1] box (the paper's "
                     "protocol), not on [0, 1] pixels")
    if abs(threat["epsilon"] - float(ROBUSTBENCH_EPSILON)) > 1e-9:
        found.append(f"ε = {eps_text(threat['epsilon'])}, not 8/255")
    found.append("AutoAttack from torchattacks' components (repro.attacks.autoattack), not "
                 "the official code; checked against it image by image in "
                 "docs/evidence/autoattack-official")
    if not audit["original_budget"]:
        found.append("a reduced AutoAttack budget (an upper bound on robustness): "
                     + attack_budget(audit["budget"]))
    if pretrained != "none":
        found.append(f"initialized from {pretrained} weights (additional data to RobustBench)")
    found.append(f"one training seed (seed {audit['run']['seed']}) of the paper's runs")
    return found


def attack_budget(budget: dict) -> str:
    return (f"APGD-CE {budget['apgd_ce_steps']} steps, APGD-T {budget['apgd_t_targets']} x "
            f"{budget['apgd_t_steps']}, FAB-T {budget['fab_t_targets']} x "
            f"{budget['fab_t_steps']}, Square {budget['square_queries']} queries")


def model_info(audit: dict, paper: dict, pretrained: str) -> dict:
    """The RobustBench entry of one audited model (``audit``: its autoattack audit JSON;
    ``paper``: :func:`repro.report.reported`; ``pretrained``: ``model.pretrained``)."""
    run = audit["run"]
    reported = reported_pgd(run, paper)
    found = differences(audit, pretrained)
    version = "standard" if audit["original_budget"] else "custom"
    return {
        "link": PAPER["link"],
        "name": f"{PAPER['title']} {row_label(run)}, seed {run['seed']} (reproduction)",
        "authors": PAPER["authors"],
        "additional_data": pretrained != "none",
        "number_forward_passes": 1,
        "dataset": run["dataset"],
        "venue": "N/A",
        "architecture": "ResNet-18",
        "eps": eps_text(audit["threat_model"]["epsilon"]),
        "clean_acc": f"{audit['clean_top1']:.2f}",
        "reported": None if reported is None else f"{reported:.2f}",
        "autoattack_acc": f"{audit['autoattack_top1']:.2f}",
        "footnote": "Not RobustBench's protocol: " + "; ".join(found) + ".",
        EXTENSION: {
            "threat_model": THREAT_MODEL, "epsilon": audit["threat_model"]["epsilon"],
            "space": audit["threat_model"]["space"], "box": audit["threat_model"]["box"],
            "n_images": audit["n"], "images": audit.get("images"),
            "data_source": audit["data_source"],
            "attack": {"implementation": "repro.attacks.autoattack (torchattacks components)",
                       "version": version, "components": list(audit["fooled_first_by"]),
                       "budget": audit["budget"], "original_budget": audit["original_budget"]},
            "pgd_acc": f"{audit['pgd_top1']:.2f}",
            "reported_attack": "the paper's PGD-20 (its Tables 1 and 2)",
            "run": run, "differences": found,
        },
    }


def write(audit: dict, paper: dict, pretrained: str, out: str | Path) -> dict:
    info = model_info(audit, paper, pretrained)
    write_json(out, info)
    return info
