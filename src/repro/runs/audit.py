"""Evaluations beyond the paper, one JSON per (run, kind), like the attack evaluations:

- ``autoattack``: clean, FGSM, the table's PGD and AutoAttack on the *same* first
  ``audit.n_images`` test images, per image, so Table A and the masking checks compare like
  with like (same images, same threat model: the table's ε, space and box);
- ``epsilon``: the table's PGD at every ε of ``audit.epsilons`` (same step-to-ε ratio and
  steps), for the robustness curve and the "accuracy falls to 0" check.

Batches are ``audit.chunk_size`` images, fixed and recorded: AutoAttack's random draws depend
on how many points a batch holds, so the numbers must not follow ``evaluation.chunk_size``.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from repro import data

from repro.runtime import io

from repro.runtime import streams
from repro.attacks import run_attack
from repro.attacks.autoattack import COMPONENTS, Budget, autoattack, input_box
from repro.config import Protocol, RunSpec, Settings
from repro.runtime.device import select_device
from repro.runs.evaluate import load_checkpoint, made_by
from repro.grid import AUDITS


def _correct(model, attack: str, inputs, labels, protocol: Protocol, generator=None):
    return (run_attack(model, attack, inputs, labels, protocol, generator)[1].argmax(1)
            == labels).cpu()


def threat_model(model, protocol: Protocol) -> dict:
    """What was attacked, in words a caption can quote."""
    low, high = input_box(model, protocol.epsilon, protocol.clip)
    space = "[0, 1] pixels" if protocol.clip else "normalized tensors"
    box = ("clipped to [0, 1]" if protocol.clip
           else f"no box (the range [{low:.3f}, {high:.3f}] holds every ε-ball: it never "
                f"binds)")
    return {"norm": "Linf", "epsilon": protocol.epsilon, "space": protocol.attack_space,
            "box": [low, high], "text": f"L∞ ε = {protocol.epsilon:.4g} on {space}, {box}"}


def audit_autoattack(settings: Settings, run: RunSpec, model, test: data.Split) -> dict:
    """Clean, FGSM, PGD and AutoAttack top-1 on ``test``, and the per-image disagreements."""
    protocol, audit = settings.protocol, settings.audit
    budget = Budget.from_config(audit.autoattack)
    columns = {name: [] for name in ("clean", "fgsm", "pgd", "autoattack", "fooled_by")}
    for chunk, (pixels, labels) in enumerate(data.batches(test, audit.chunk_size)):
        inputs = model.to_input(pixels)
        columns["clean"].append(_correct(model, "clean", inputs, labels, protocol))
        columns["fgsm"].append(_correct(model, "fgsm", inputs, labels, protocol))
        columns["pgd"].append(_correct(model, "pgd", inputs, labels, protocol,
                                       streams.generator(run.seed, chunk, "audit_pgd")))
        found = autoattack(model, inputs, labels, protocol.epsilon, protocol.clip, budget,
                           streams.stream_seed(run.seed, chunk, "autoattack"))
        columns["autoattack"].append((found["logits"].argmax(1) == labels).cpu())
        columns["fooled_by"].append(found["fooled_by"].cpu())
    per_image = {name: torch.cat(values) for name, values in columns.items()}
    pgd_only = (~per_image["pgd"] & per_image["autoattack"]).nonzero().flatten()
    return {
        **{f"{name}_top1": 100 * per_image[name].float().mean().item()
           for name in ("clean", "fgsm", "pgd", "autoattack")},
        "top1": 100 * per_image["autoattack"].float().mean().item(),
        "fooled_first_by": {name: int((per_image["fooled_by"] == i).sum())
                            for i, name in enumerate(COMPONENTS)},
        "pgd_fooled_autoattack_not": pgd_only.tolist(),
        "budget": dataclasses.asdict(budget), "original_budget": budget.is_original,
        "threat_model": threat_model(model, protocol),
        "pgd_parameters": dataclasses.asdict(protocol.pgd),
    }


def audit_epsilon(settings: Settings, run: RunSpec, model, test: data.Split) -> dict:
    """The table's PGD (same steps and step-to-ε ratio) at every ε of ``audit.epsilons``."""
    protocol, audit = settings.protocol, settings.audit
    ratio = protocol.pgd.step_size / protocol.epsilon
    top1 = []
    for index, epsilon in enumerate(audit.curve_epsilons()):
        attack = "pgd" if epsilon > 0 else "clean"
        at = dataclasses.replace(protocol, epsilon=epsilon, pgd=dataclasses.replace(
            protocol.pgd, step_size=epsilon * ratio))
        correct = [_correct(model, attack, model.to_input(pixels), labels, at,
                            streams.generator(run.seed, chunk, "epsilon", offset=index))
                   for chunk, (pixels, labels) in enumerate(data.batches(test,
                                                                         audit.chunk_size))]
        top1.append(100 * torch.cat(correct).float().mean().item())
    return {"epsilons": audit.curve_epsilons(), "epsilons_255": list(audit.epsilons),
            "top1_by_epsilon": top1, "table_epsilon": protocol.epsilon,
            "step_size_ratio": ratio, "steps": protocol.pgd.steps,
            "random_start": protocol.pgd.random_start,
            "space": protocol.attack_space, "clip": protocol.clip}


def evaluate_audit(settings: Settings, run: RunSpec, checkpoint: str | Path, kind: str,
                   out_json: str | Path | None = None, device=None) -> dict:
    """Run one audit evaluation of ``run``'s checkpoint and write its JSON."""
    if kind not in AUDITS:
        raise ValueError(f"unknown audit {kind!r}; choose from {list(AUDITS)}")
    device = select_device(device or settings.runtime.device)
    if device.type == "cuda":
        # AutoAttack's batches shrink as points are fooled: cuDNN would autotune every new
        # shape. Process-wide, so concurrent jobs lose their autotuning too (speed only).
        torch.backends.cudnn.benchmark = False
    started = time.perf_counter()
    model, saved = load_checkpoint(settings, run, checkpoint, device)
    splits = data.load(settings, run.dataset)
    test = splits.test.head(settings.audit.n_images).to(device)
    compute = audit_autoattack if kind == "autoattack" else audit_epsilon
    result = {"attack": kind, **compute(settings, run, model, test), "n": len(test),
              "images": f"the first {len(test)} test images", "chunk_size":
              settings.audit.chunk_size,
              **made_by(settings, run, saved, checkpoint, splits.source, started, device)}
    if out_json is not None:
        io.write_json(out_json, result)
    return result
