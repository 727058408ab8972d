"""Throughput measured on real machines, per device kind: what ``repro estimate`` and the
workflow's cost notice price a run with when the user gives no rates.

Each entry names the command and the date that produced it, so a figure can be re-measured
and replaced (benchmarks/README.md). ``train``: images/s of one training epoch per defense
at batch 128 (benchmarks/train.py). ``attack``: images/s of an evaluation attack at the
benchmark's batch (benchmarks/attacks.py, the line ``--attack-images-per-second``); DeepFool's
rate depends on how many steps the model needs before it flips (4 to 9 on that benchmark).

Rates measured on the user's own machine by ``python -m repro calibrate`` (repro.cost.calibrate)
take precedence for the device they were measured on: :func:`calibrated`.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml

MEASURED = {
    "H100": {
        "source": "NVIDIA H100 80GB HBM3, fp32/TF32, eager (no CUDA graphs), DeepFool before its "
                  "active set was padded; eager training and attack timings, 2026-11-26",
        "train": {"standard": 21197.8, "at-fgsm": 9751.8, "at-pgd": 1074.4,
                  "trades-fgsm": 4894.4, "trades-pgd": 1009.4, "cl-fgsm": 5414.4,
                  "cl-pgd": 978.9},
        # attacks.txt there: batch 1,024 in 0.007 s (FGSM), 0.122 s (PGD-20), 3.333 s (DeepFool)
        "attack": {"fgsm": 146286.0, "pgd": 8393.4, "deepfool": 307.2},
    },
    "cpu": {
        "source": "one core of an idle 2-core cloud VM, fp32, torch 2.14: "
                  "benchmarks/train.py --n 256 --batch 128 --threads 1 and "
                  "benchmarks/attacks.py --batch 128 --threads 1 (28x28), 2026-11-27",
        "train": {"standard": 513.7, "at-fgsm": 339.3, "at-pgd": 41.9, "trades-fgsm": 223.0,
                  "trades-pgd": 42.2, "cl-fgsm": 172.9, "cl-pgd": 39.9},
        "attack": {"fgsm": 1144.7, "pgd": 57.7, "deepfool": 57.9},
    },
}
FALLBACK_GPU = "H100"  # a card without figures of its own is priced as this one, and says so


def device_kind(device: str | torch.device | None = None) -> tuple[str, str]:
    """(key of MEASURED, the device's own name) for ``device`` ("auto"/None: what torch
    sees, as ``runtime.device`` does)."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type != "cuda":
        return "cpu", "cpu"
    name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "a CUDA GPU"
    return next((kind for kind in MEASURED if kind in name), FALLBACK_GPU), name


RATES_ENV = "REPRO_RATES"  # another rates file than the default one


def rates_path() -> Path:
    """Where ``python -m repro calibrate`` writes this machine's rates and the estimate reads
    them: ``$REPRO_RATES``, else ``$XDG_CACHE_HOME/repro/rates.yaml`` (~/.cache by default)."""
    if os.environ.get(RATES_ENV):
        return Path(os.environ[RATES_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "repro" / "rates.yaml"


def calibrated(name: str) -> dict | None:
    """The calibrated entry (``source``, ``train``, ``attack``, as in MEASURED) for the device
    named ``name``, or None: no rates file, or one measured on another device (a home folder
    shared by a cluster's nodes may hold another card's)."""
    path = rates_path()
    if not path.is_file():
        return None
    try:
        rates = yaml.safe_load(path.read_text())
        if rates.get("device_name") != name:
            return None
        return {"source": f"{rates['source']}, {path}", "calibrated": True,
                "train": dict(rates["train"]), "attack": dict(rates["attack"])}
    except (yaml.YAMLError, AttributeError, KeyError, TypeError) as error:
        from repro.errors import UserError

        raise UserError(f"{path} is not a rates file of python -m repro calibrate ({error}); "
                        f"run that command again, or delete the file") from error
