"""Top-1/3/5 accuracy (%) of a checkpoint under one attack on the test split, as JSON."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from . import data, io
from .attacks import attack_parameters, run_attack
from .config import ATTACKS, RunSpec, Settings
from .train import epoch_generator, prepare_model, run_record, select_device

TOPK = (1, 3, 5)
CHECKPOINT_FIELDS = ("model", "run", "protocol", "metrics")


def load_checkpoint(settings: Settings, run: RunSpec, checkpoint: str | Path, device):
    """The trained classifier of ``run``; refuses a checkpoint made for another run/config."""
    saved = io.load_torch(checkpoint, required=CHECKPOINT_FIELDS)
    expected = run_record(settings, run)
    mismatched = sorted(key for key in expected if saved.get(key) != expected[key])
    if mismatched:
        raise ValueError(f"{checkpoint} was trained with other values of {mismatched} than the "
                         f"requested run {run.name} (seed {run.seed}) and config; retrain it "
                         f"(delete the file) or evaluate it with the config that made it")
    model = prepare_model(settings, run.dataset, device)
    model.load_state_dict(saved["model"])
    return model.eval(), saved


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, batch_size: int,
                  average: str) -> dict:
    """Top-k accuracy in %: the mean of per-batch accuracies ("batch", ledger 12: what the
    paper's code logged) or the mean over samples ("sample")."""
    ranked = logits.topk(max(TOPK), dim=1).indices
    hits = {k: (ranked[:, :k] == labels.unsqueeze(1)).any(1).float() for k in TOPK}
    if average == "sample":
        return {f"top{k}": 100 * hit.mean().item() for k, hit in hits.items()}
    return {f"top{k}": 100 * torch.stack([b.mean() for b in hit.split(batch_size)]).mean().item()
            for k, hit in hits.items()}


def evaluate_run(settings: Settings, run: RunSpec, checkpoint: str | Path, attack: str,
                 out_json: str | Path | None = None, device=None) -> dict:
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose from {list(ATTACKS)}")
    device = select_device(device or settings.training.device)
    started = time.perf_counter()
    model, saved = load_checkpoint(settings, run, checkpoint, device)
    splits = data.load(settings, run.dataset)
    test = splits.test.to(device)
    generator = epoch_generator(run.seed, 0, salt=2)
    logits = []
    for pixels, labels in data.batches(test, settings.attack_chunk_size):
        inputs = model.to_input(pixels)
        logits.append(run_attack(model, attack, inputs, labels, settings.protocol,
                                 generator)[1].float().cpu())
    logits = torch.cat(logits)
    result = {
        "attack": attack,
        **topk_accuracy(logits, test.labels.cpu(), settings.training.batch_size_for(run.dataset),
                        settings.protocol.topk_average),
        "n": len(test), "attack_parameters": attack_parameters(attack, settings.protocol),
        **made_by(run, saved, checkpoint, splits.source, started, device),
    }
    if out_json is not None:
        io.write_json(out_json, result)
    return result


def made_by(run: RunSpec, saved: dict, checkpoint, source: str, started: float, device) -> dict:
    """What every evaluation JSON records about how it was made (run, data, checkpoint,
    training, time, versions)."""
    return {
        "run": run.as_dict(), "data_source": source,
        "protocol": saved["protocol"], "checkpoint": str(checkpoint),
        "training": {"epochs": saved["epochs"], "best_val_loss": saved["best_val_loss"],
                     "weight_decay": saved["weight_decay"], "batch_size": saved["batch_size"],
                     "wall_seconds": saved["wall_seconds"]},
        "wall_seconds": round(time.perf_counter() - started, 3),
        "provenance": io.provenance(device),
    }
