"""Top-1/3/5 accuracy (%) of a checkpoint under one attack on the test split, as JSON."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from repro import data

from repro.runs import artifacts

from repro.runtime import io
from repro.attacks import attack_noise, run_attack
from repro import registry
from repro.config import RunSpec, Settings
from repro.runtime.device import prepare_model, select_device, to_device
from repro.errors import UserError
from repro.runtime.graphs import StepGraph, graphs_record, graphs_wanted
from repro.runtime.selfcheck import evaluation_check
from repro.records import attack_parameters, run_record
from repro.runtime.streams import generator

TOPK = (1, 3, 5)
CHECKPOINT_FIELDS = ("run", "protocol", "metrics")


class CheckpointMismatch(UserError, ValueError):
    """The checkpoint was trained for another run or with other config values."""


def load_checkpoint(settings: Settings, run: RunSpec, checkpoint: str | Path, device):
    """The trained classifier of ``run``; refuses a checkpoint made for another run/config."""
    saved = artifacts.load_checkpoint(checkpoint, CHECKPOINT_FIELDS)
    expected = run_record(settings, run)
    mismatched = sorted(key for key in expected if saved.get(key) != expected[key])
    if mismatched:
        raise CheckpointMismatch(
            f"{checkpoint} was trained with other values of {mismatched} than the requested run "
            f"{run.name} (seed {run.seed}) and config; evaluate it with the config that made "
            f"it, or {artifacts.rebuild_hint(checkpoint, 'train')}")
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


def attack_chunk(settings: Settings, model, attack: str, device) -> StepGraph:
    """``chunk(inputs, labels[, noise]) -> logits`` under ``attack``: an attack whose shapes
    never change (declared ``graphs``: FGSM, PGD) runs as CUDA graphs for full chunks
    (``runtime.cuda_graphs``); DeepFool's active set shrinks, so it and the single clean pass
    stay eager. The first replay checks itself against the eager chunk
    (repro.runtime.selfcheck)."""
    def chunk(inputs, labels, *noise):
        return run_attack(model, attack, inputs, labels, settings.protocol,
                          noise=noise[0] if noise else None)[1]
    graphs = registry.attack(attack).graphs and graphs_wanted(
        settings.runtime.cuda_graphs, device)
    return StepGraph(chunk, settings.attack_chunk_size, graphs, check=evaluation_check(model))


def attack_logits(settings: Settings, model, attack: str, test: data.Split, seed: int,
                  device) -> tuple[torch.Tensor, StepGraph]:
    """(logits on the CPU, the chunk runner) of ``model`` at ``attack``'s adversarials of every
    test image, chunk by chunk; random starts from the run's ``eval_noise`` stream."""
    noise_stream = generator(seed, 0, "eval_noise")
    chunk = attack_chunk(settings, model, attack, device)
    logits = []
    for pixels, labels in data.batches(test, settings.attack_chunk_size):
        inputs = model.to_input(pixels)
        noise = attack_noise(attack, settings.protocol, inputs.shape, noise_stream)
        noise = [] if noise is None else [to_device(noise, device)]
        logits.append(chunk(inputs, labels, *noise).float().cpu())
    return torch.cat(logits), chunk


def evaluate_run(settings: Settings, run: RunSpec, checkpoint: str | Path, attack: str,
                 out_json: str | Path | None = None, device=None) -> dict:
    registry.attack(attack)  # an unknown id: ValueError naming the known ones
    device = select_device(device or settings.runtime.device)
    started = time.perf_counter()
    model, saved = load_checkpoint(settings, run, checkpoint, device)
    splits = data.load(settings, run.dataset)
    test = splits.test.to(device)
    logits, chunk = attack_logits(settings, model, attack, test, run.seed, device)
    result = {
        "attack": attack,
        **topk_accuracy(logits, test.labels.cpu(), settings.training.batch_size_for(run.dataset),
                        settings.protocol.topk_average),
        "n": len(test), "attack_parameters": attack_parameters(attack, settings.protocol),
        "cuda_graphs": graphs_record(settings.runtime.cuda_graphs, chunk),
        **made_by(settings, run, saved, checkpoint, splits.source, started, device),
    }
    if out_json is not None:
        io.write_json(out_json, result)
    return result


def made_by(settings: Settings, run: RunSpec, saved: dict, checkpoint, source: str,
            started: float, device) -> dict:
    """What every evaluation JSON records about how it was made (run, data, protocol,
    checkpoint, training, time, versions)."""
    return {
        "run": run.as_dict(), "data_source": source,
        # the whole protocol: the checkpoint's record holds only what its defense's training
        # read, and load_checkpoint checked that part against these settings. Only the keys
        # of records.evaluation_keys are kept current by the workflow (report.caption)
        "protocol": settings.protocol.as_record(), "checkpoint": str(checkpoint),
        "training": {"epochs": saved["epochs"], "best_val_loss": saved["best_val_loss"],
                     "weight_decay": saved["weight_decay"], "batch_size": saved["batch_size"],
                     "wall_seconds": saved["wall_seconds"], "provenance": saved["provenance"],
                     # what the data forced (report.caption states it: e.g. a from-scratch
                     # model on the 5,000 embedded digits needs another lr than the paper's)
                     "lr": saved["lr"], "pretrained": saved["pretrained"],
                     "max_epochs": saved["max_epochs"], "patience": saved["patience"],
                     "sizes": saved.get("sizes"),
                     "cuda_graphs": saved.get("cuda_graphs")},
        "wall_seconds": round(time.perf_counter() - started, 3),
        "provenance": io.provenance(device),
    }
