"""Gradient-masking sanity checks (Carlini et al. 2019, "On Evaluating Adversarial
Robustness"), per model, from its ``autoattack`` and ``epsilon`` audit JSONs.

Every comparison is like with like: the same images (the audit's first N test images) and
the same threat model (the table's ε, space and box), with a stated tolerance in percentage
points. A check that fails names the model and the numbers. A failure that a reduced
AutoAttack budget explains (a 5-step APGD can be weaker than PGD-20 with no masking at all)
is reported as "inconclusive", not as masking.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from repro.attacks.autoattack import COMPONENTS, GRADIENT_FREE
from repro.config import RunSpec
from repro.report import to_csv, to_markdown

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive (reduced AutoAttack budget)"


@dataclass(frozen=True)
class Check:
    name: str
    statement: str
    # (autoattack JSON, epsilon JSON, tolerance, near_zero) -> (passed, numbers in words)
    test: Callable[[dict, dict, float, float], tuple[bool, str]]
    budget_sensitive: bool  # can a reduced AutoAttack budget alone make it fail?


def _iterative(aa: dict, curve: dict, tol: float, near_zero: float) -> tuple[bool, str]:
    return (aa["pgd_top1"] <= aa["fgsm_top1"] + tol,
            f"PGD {aa['pgd_top1']:.2f}% vs FGSM {aa['fgsm_top1']:.2f}%")


def _autoattack_vs_pgd(aa: dict, curve: dict, tol: float, near_zero: float):
    missed = len(aa["pgd_fooled_autoattack_not"])
    return (aa["autoattack_top1"] <= aa["pgd_top1"] + tol,
            f"AutoAttack {aa['autoattack_top1']:.2f}% vs PGD {aa['pgd_top1']:.2f}%; PGD fooled "
            f"{missed} of {aa['n']} images that AutoAttack did not")


def _gradient_free(aa: dict, curve: dict, tol: float, near_zero: float):
    extra = sum(aa["fooled_first_by"][name] for name in GRADIENT_FREE)
    share = 100 * extra / aa["n"]
    gradient = ", ".join(c for c in COMPONENTS if c not in GRADIENT_FREE)
    return (share <= tol, f"Square fooled {extra} of {aa['n']} images ({share:.2f}%) that "
                          f"{gradient} all missed")


def _falls_to_zero(aa: dict, curve: dict, tol: float, near_zero: float):
    top1, ks = curve["top1_by_epsilon"], curve["epsilons_255"]
    rises = [(ks[i], ks[i + 1]) for i in range(len(top1) - 1) if top1[i + 1] > top1[i] + tol]
    words = ", ".join(f"{k:g}/255: {t:.2f}%" for k, t in zip(ks, top1))
    if rises:
        words += "; rises between " + ", ".join(f"{a:g} and {b:g}/255" for a, b in rises)
    return not rises and top1[-1] <= near_zero, words


CHECKS = (
    Check("pgd<=fgsm", "the iterative attack is at least as strong as the single step "
          "(PGD ≤ FGSM)", _iterative, False),
    Check("aa<=pgd", "AutoAttack is at least as strong as PGD (AA ≤ PGD)", _autoattack_vs_pgd,
          True),
    Check("gradient-free", "a gradient-free attack finds little that the gradient attacks "
          "missed (Square's own kills ≤ tolerance)", _gradient_free, True),
    Check("epsilon", "accuracy falls as ε grows, towards 0 (never rises by more than the "
          "tolerance; at the largest ε at most the near-zero bound)", _falls_to_zero, False),
)


def model_name(ev: dict) -> str:
    run = RunSpec(**ev["run"])
    return f"{run.dataset} {run.name} seed {run.seed}"


def run_checks(autoattack: list[dict], curves: list[dict], tolerance: float,
               near_zero: float) -> list[dict]:
    """One row per (model, check): the verdict and the numbers behind it."""
    by_run = {model_name(ev): ev for ev in curves}
    rows = []
    for aa in autoattack:
        name = model_name(aa)
        if name not in by_run:
            raise ValueError(f"no epsilon audit for {name}")
        for check in CHECKS:
            passed, numbers = check.test(aa, by_run[name], tolerance, near_zero)
            verdict = HOLDS if passed else (
                INCONCLUSIVE if check.budget_sensitive and not aa["original_budget"] else FAILS)
            rows.append({"model": name, "check": check.name, "verdict": verdict,
                         "numbers": numbers})
    return rows


def summary(rows: list[dict]) -> list[str]:
    """Per check how many models pass, and every failure by name with its numbers."""
    lines = []
    for check in CHECKS:
        mine = [r for r in rows if r["check"] == check.name]
        counts = {v: sum(r["verdict"] == v for r in mine) for v in (HOLDS, FAILS, INCONCLUSIVE)}
        lines.append(f"- **{check.statement}**: " + ", ".join(
            f"{n} {v}" for v, n in counts.items() if n) + f" (of {len(mine)} models).")
        lines += [f"  - {r['verdict']}: {r['model']}: {r['numbers']}" for r in mine
                  if r["verdict"] != HOLDS]
    return lines


COLUMNS = ["model", "check", "verdict", "numbers"]  # of run_checks' rows, in the files


def checks_markdown(rows: list[dict], about: str) -> str:
    return "\n".join(["# Gradient-masking checks", "", about, "", "## Summary", "",
                      *summary(rows), "",
                      to_markdown(COLUMNS, [[r[h] for h in COLUMNS] for r in rows],
                                  "## Every model")])


def checks_csv(rows: list[dict]) -> str:
    return to_csv(COLUMNS, [[r[h] for h in COLUMNS] for r in rows])
