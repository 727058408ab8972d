"""One training run: AdamW, early stopping on clean validation loss, best-validation checkpoint.

Resumable: after every epoch the full state (model, optimizer, best weights, early-stopping
counters, metrics, RNG state) is written atomically next to the checkpoint, and a restarted
run continues from its last completed epoch. Shuffling and attack noise draw from streams
seeded by (seed, epoch) alone (repro.runtime.streams) and the weights are initialized from the
seed, so a resumed run on CPU ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import csv
import io as _io
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from repro import data

from repro.runs import artifacts

from repro.runtime import io
from repro.config import RunSpec, Settings
from repro.defenses import step_noise, training_loss
from repro.runtime.device import prepare_model, select_device, to_device
from repro.errors import UserError
from repro.runtime.graphs import StepGraph, graphs_record, graphs_wanted
from repro.runtime.selfcheck import training_check
from repro.records import run_record
from repro.runtime.streams import generator

SYNC_EVERY = 50  # batches between host-device synchronisations (non-finite check, progress)


class NonFiniteLoss(UserError, RuntimeError):
    """The training or validation loss became NaN or infinite; no checkpoint is written (a
    NaN validation loss never improves on the best, so the run would end without weights)."""


def autocast(settings: Settings, device: torch.device):
    """bf16 autocast when ``training.precision`` asks for it; fp32 (the default) otherwise.

    Without autocast's cache of bf16 weights: a CUDA graph cannot capture it (PyTorch's
    rule), and the weights change at every step anyway."""
    if settings.training.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              cache_enabled=False)
    return nullcontext()


def train_run(settings: Settings, run: RunSpec, checkpoint: str | Path, device=None,
              progress: bool | None = None) -> dict:
    """Train ``run`` and write its best-validation checkpoint and ``metrics.csv`` beside it
    (together, at the end: until then the state file beside the checkpoint holds both)."""
    checkpoint = Path(checkpoint)
    device = select_device(device or settings.runtime.device)
    cfg = settings.training
    splits = data.load(settings, run.dataset)
    train_split, val_split = splits.train.to(device), splits.val.to(device)
    batch_size = cfg.batch_size_for(run.dataset)
    record = run_record(settings, run)

    model, optimizer, step = training_setup(settings, run, device, batch_size)
    state_path = checkpoint.with_name(checkpoint.name + ".state")
    metrics_path = checkpoint.with_name("metrics.csv")
    state = {"epoch": 0, "best_val": float("inf"), "best_model": None, "wait": 0,
             "metrics": [], "elapsed": 0.0}
    if state_path.exists():
        saved = io.load_torch(state_path, "delete it to train this run from epoch 1",
                              required=("record", "model", "optimizer", "epoch"))
        if saved["record"] != record:
            raise RuntimeError(f"{state_path} belongs to another run or config; delete it to "
                               f"start this run from scratch")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(capturable_state(saved["optimizer"], step.enabled))
        state = {k: saved[k] for k in state}
        print(f"resuming {run.name} seed {run.seed} after epoch {state['epoch']}",
              file=sys.stderr)

    show = sys.stderr.isatty() if progress is None else progress
    while state["epoch"] < cfg.max_epochs and state["wait"] < cfg.patience:
        epoch = state["epoch"]
        started = time.perf_counter()
        train_loss, train_acc = _train_epoch(settings, model, step, train_split, run,
                                             batch_size, epoch, device, show)
        val_loss, val_acc = evaluate_clean(model, val_split, batch_size)
        if not math.isfinite(val_loss):
            raise NonFiniteLoss(_nonfinite_message(run, f"the validation loss is {val_loss} "
                                                        f"after epoch {epoch + 1}"))
        improved = val_loss < state["best_val"]
        if improved:
            state["best_val"] = val_loss
            state["best_model"] = {k: v.detach().cpu().clone()
                                   for k, v in model.state_dict().items()}
            state["wait"] = 0
        else:
            state["wait"] += 1
        state["elapsed"] += time.perf_counter() - started
        state["metrics"].append({"epoch": epoch + 1, "train_loss": train_loss,
                                 "train_acc": train_acc, "val_loss": val_loss,
                                 "val_acc": val_acc, "best": improved,
                                 "seconds": round(time.perf_counter() - started, 3)})
        state["epoch"] = epoch + 1
        # metrics.csv is written with the checkpoint, not here: a failed rerun of a finished
        # run must leave that run's files as they were (the state file holds the metrics)
        io.save_torch(state_path, {**state, "record": record, "model": model.state_dict(),
                                   "optimizer": optimizer.state_dict()})

    result = {"model": state["best_model"], **record, "metrics": state["metrics"],
              "best_val_loss": state["best_val"], "epochs": state["epoch"],
              "data_source": splits.source,
              "sizes": {"train": len(train_split), "val": len(val_split)},
              "wall_seconds": round(state["elapsed"], 3),
              "cuda_graphs": graphs_record(settings.runtime.cuda_graphs, step),
              "provenance": io.provenance(device)}
    artifacts.save_checkpoint(checkpoint, result,
                              {metrics_path: _metrics_csv(state["metrics"])})
    state_path.unlink(missing_ok=True)
    return result


def training_setup(settings: Settings, run: RunSpec, device, batch_size: int):
    """(model, optimizer, step) of ``run`` on ``device``: the model initialized from the run's
    seed, its AdamW, and the training step, graphed as ``runtime.cuda_graphs`` says (whether
    it is: ``step.enabled``). What a training run and the benchmarks of its loop start from."""
    model = prepare_model(settings, run.dataset, device, run.seed)
    graphs = graphs_wanted(settings.runtime.cuda_graphs, device)
    optimizer = make_optimizer(settings, model, run, graphs)
    return model, optimizer, training_step(settings, model, optimizer, run, device, batch_size,
                                           graphs)


def make_optimizer(settings: Settings, model, run: RunSpec, graphs: bool):
    """AdamW; ``capturable`` (its step counters on the GPU) when the step is a CUDA graph."""
    return torch.optim.AdamW(model.parameters(), lr=settings.training.lr,
                             weight_decay=settings.training.weight_decay_for(run),
                             capturable=graphs)


def capturable_state(optimizer_state: dict, graphs: bool) -> dict:
    """A saved AdamW state made fit for this process: a run resumed with graphs on another
    device (or off) must load with this process's ``capturable``, not the saved one."""
    groups = [{**group, "capturable": graphs} for group in optimizer_state["param_groups"]]
    return {**optimizer_state, "param_groups": groups}


def training_step(settings: Settings, model, optimizer, run: RunSpec, device, batch_size: int,
                  graphs: bool) -> StepGraph:
    """``step(inputs, labels[, noise]) -> (loss, logits)``: loss, backward and optimizer step
    of one batch, as one CUDA graph for full batches when ``graphs`` (see repro.runtime.graphs),
    whose first replay checks itself against the eager step (repro.runtime.selfcheck)."""
    def step(inputs, labels, *noise):
        with autocast(settings, device):
            loss, logits = training_loss(model, inputs, labels, run, settings.protocol,
                                         noise=noise[0] if noise else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach(), logits.detach()
    return StepGraph(step, batch_size, graphs,
                     check=training_check(model, optimizer, settings.training.precision))


def _train_epoch(settings, model, step, split, run, batch_size, epoch, device, show):
    cfg = settings.training
    model.train()
    shuffle = generator(run.seed, epoch, "shuffle") if cfg.shuffle else None
    noise = generator(run.seed, epoch, "train_noise")
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    nonfinite_at = torch.full((), -1, device=device)
    seen = 0
    n_batches = -(-len(split) // batch_size)
    bar = _progress(show, n_batches, f"{run.dataset} {run.name} s{run.seed} e{epoch + 1}")
    for index, (pixels, labels) in enumerate(data.batches(split, batch_size, shuffle)):
        inputs = model.to_input(pixels)
        if device.type == "cuda":
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        draw = step_noise(run, settings.protocol, inputs.shape, noise)
        loss, logits = step(inputs, labels, *([] if draw is None else [to_device(draw, device)]))
        nonfinite_at = torch.where((nonfinite_at < 0) & ~torch.isfinite(loss),
                                   torch.full_like(nonfinite_at, index), nonfinite_at)
        total_loss += loss * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
        if (index + 1) % SYNC_EVERY == 0 or index + 1 == n_batches:
            _check_finite(nonfinite_at, run, epoch)
            if bar is not None:
                bar.update(index + 1 - bar.n)
                bar.set_postfix(loss=f"{total_loss.item() / seen:.4f}",
                                acc=f"{100 * correct.item() / seen:.1f}%")
    if bar is not None:
        bar.close()
    return total_loss.item() / seen, 100 * correct.item() / seen


def _check_finite(nonfinite_at, run, epoch):
    batch = int(nonfinite_at.item())
    if batch >= 0:
        raise NonFiniteLoss(_nonfinite_message(run, f"the loss became NaN or infinite in epoch "
                                                    f"{epoch + 1}, batch {batch + 1}"))


def _nonfinite_message(run: RunSpec, what: str) -> str:
    return (f"{run.dataset} {run.name} seed {run.seed}: {what}; no checkpoint was written (try "
            f"a smaller training.lr, or precision: fp32)")


def evaluate_clean(model, split, batch_size: int) -> tuple[float, float]:
    """Mean clean cross-entropy and accuracy (%) over a split, in eval mode."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for pixels, labels in data.batches(split, batch_size):
            logits = model(model.to_input(pixels))
            total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
    model.train(was_training)
    return total_loss / len(split), 100 * correct / len(split)


def _progress(show: bool, total: int, description: str):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=description, leave=False, file=sys.stderr)


def _metrics_csv(rows: list[dict]) -> str:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
