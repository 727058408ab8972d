"""Checkpoints and evaluation JSONs, checked when written and when read back.

A file that loads is not yet a file to trust: a checkpoint without weights, or a JSON with a
top-1 of 250 or another run's numbers, would flow into a table without a word. So every read
checks what the file must hold, and every error names the file and the one command that makes
it again. That command is the user's own snakemake command with ``--forcerun FILE`` added:
Snakemake then reruns the job that makes FILE and every job downstream of it (a table that
read it included), in the same results folder and config, whatever the state of the other
files. The library cannot spell the whole command: it does not know the user's targets and
config files (and a cluster job's command line is not the user's).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from repro.runtime import io
from repro.errors import UserError
from repro import registry
from repro.config import METRICS, RunSpec
from repro.grid import parse_eval_path


class ArtifactError(UserError, RuntimeError):
    """A checkpoint or evaluation JSON that is missing or not a file."""


def rebuild_hint(path, command: str) -> str:
    """How to make ``path`` again: the workflow's way, and the by-hand ``repro`` way."""
    return (f"rebuild it by running your snakemake command again with `--forcerun {path}` "
            f"added at its end (this reruns what was made from it, too), or, for a file made "
            f"by hand, `python -m repro {command} ... --out {path}`")


def _weights_problem(weights) -> str | None:
    if not isinstance(weights, dict) or not weights:
        return f"holds no weights (model is {type(weights).__name__})"
    if not all(isinstance(value, torch.Tensor) for value in weights.values()):
        return "holds weights that are not all tensors"
    return None


def save_checkpoint(path, checkpoint: dict, texts: dict | None = None) -> None:
    """Write a trained checkpoint atomically, with ``texts`` ({path: text}, its metrics) or
    none of them; one without weights is never written."""
    problem = _weights_problem(checkpoint.get("model"))
    if problem:
        raise ValueError(f"refusing to write {path}: the checkpoint {problem}")
    io.save_torch(path, checkpoint, texts)


def load_checkpoint(path, required=()) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, with its weights and ``required`` keys."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path} is a directory; give the checkpoint file (model.pt) in it")
    if not path.exists():
        raise ArtifactError(f"no such checkpoint: {path}")
    hint = rebuild_hint(path, "train")
    saved = io.load_torch(path, hint, ("model", *required))
    problem = _weights_problem(saved["model"])
    if problem:
        raise io.CorruptFile(f"{path} {problem}; {hint}")
    return saved


def read_eval(path) -> dict:
    """An evaluation JSON, checked against what ``repro.runs.evaluate`` writes: keys and types,
    accuracies in [0, 100] and ordered top1 <= top3 <= top5, n > 0, and the run and attack
    its path (``grid.eval_path``) says it holds."""
    hint = rebuild_hint(path, "evaluate")
    data = io.read_json(path, hint)
    problems = eval_problems(data, *(parse_eval_path(path) or (None, None)))
    if problems:
        raise io.CorruptFile(f"{path} is not a valid evaluation ({'; '.join(problems)}); {hint}")
    return data


# The accuracies (%) each kind of evaluation JSON holds: repro.runs.evaluate's attacks top-1/3/5,
# the audit's AutoAttack JSON every column of Table A (repro.runs.audit), its ε curve one per ε.
AUDIT_ACCURACIES = {
    "autoattack": ("clean_top1", "fgsm_top1", "pgd_top1", "autoattack_top1", "top1"),
    "epsilon": ("top1_by_epsilon",)}


def accuracies(kind) -> tuple[str, ...] | None:
    """The accuracies an evaluation JSON of ``kind`` (an attack or audit) holds; None if
    ``kind`` is neither."""
    if kind in AUDIT_ACCURACIES:
        return AUDIT_ACCURACIES[kind]
    return METRICS if isinstance(kind, str) and kind in registry.ids("attack") else None


def eval_problems(data, run: RunSpec | None = None, attack: str | None = None) -> list[str]:
    """What is wrong with an evaluation's dict; empty if nothing. ``run`` and ``attack``, when
    given, are what it must claim to be."""
    if not isinstance(data, dict):
        return [f"a {type(data).__name__}, not an object"]
    problems = []
    kind = data.get("attack")
    if "attack" in data and accuracies(kind) is None:
        known = [*registry.ids("attack"), *AUDIT_ACCURACIES]
        problems.append(f"attack is {kind!r}, not one of {known}")
    elif attack is not None and data.get("attack", attack) != attack:
        problems.append(f"it holds attack {kind!r}, not {attack!r}")
    metrics = accuracies(kind) or METRICS
    missing = [key for key in ("run", "attack", *metrics, "n") if key not in data]
    if missing:
        problems.append(f"lacks {missing}")
    for metric in metrics:
        values = data.get(metric)
        if metric in data and not all(_is_number(v) and 0 <= v <= 100 for v in
                                      (values if isinstance(values, list) else [values])):
            problems.append(f"{metric} is {values!r}, not an accuracy in [0, 100]")
    if not problems and metrics == METRICS and not data["top1"] <= data["top3"] <= data["top5"]:
        problems.append("accuracies not ordered top1 <= top3 <= top5")
    if "n" in data and not (isinstance(data["n"], int) and not isinstance(data["n"], bool)
                            and data["n"] > 0):
        problems.append(f"n is {data['n']!r}, not a positive count of images")
    if "run" in data:
        try:
            claimed = RunSpec(**data["run"])
        except (TypeError, ValueError) as error:
            problems.append(f"run {data['run']!r} is not a run ({error})")
        else:
            if run is not None and claimed != run:
                problems.append(f"it holds run {claimed.dataset} {claimed.name} seed "
                                f"{claimed.seed}, not {run.dataset} {run.name} seed {run.seed}")
    return problems


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
