"""``python -m repro calibrate``: this machine's rates, measured in about two minutes, for the
estimate and the workflow's cost notice to price with from then on.

Why: the built-in rates (repro.cost.measured) come from one H100 and one cloud CPU core. Another
card, another CPU, another batch size or a protocol with more attack steps costs something
else, and a user about to start weeks of compute should see the price of *their* machine
first. Calibrating times the pipeline's own loops (repro.cost.timing) on synthetic data of the
grid's main dataset: every defense at the config's training batch, every attack of the
tables at its evaluation chunk, so the rates are those of the jobs the workflow will run. On
CUDA it also runs the correctness checks of repro.runtime.cuda_checks, since the first long
run is the worst time to find that a CUDA graph computes something else.

The rates go to a YAML file (:func:`repro.cost.measured.rates_path`) naming the device and
the date; repro.cost.measured hands them to the estimate for that device from then on.
"""
from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

from repro import grid, registry
from repro.config import Settings
from repro.cost import measured, timing
from repro.cost.estimate import split_sizes
from repro.data import SHAPES
from repro.runtime.device import select_device
from repro.runtime.graphs import graphs_wanted

BUDGET_S = 90.0  # of timing; the CUDA checks and start-up come on top
MAX_BATCHES = 20  # per timed epoch: more adds little precision on a steady GPU
MODEL_STEPS = 8  # Adam steps on prototypes: 84% of them classified right, as a trained model
#                  classifies its test set, so that DeepFool has predictions to break


def main_dataset(config: dict) -> str:
    """The dataset with the most training runs in the grid: the one the rates are for."""
    counts = Counter(run.dataset for run in grid.all_runs(config))
    return counts.most_common(1)[0][0] if counts else "cifar10"


class Clock:
    """The time left of the budget, shared out over the measurements still to make."""

    def __init__(self, budget_s: float, items: int):
        self.deadline, self.items = time.perf_counter() + budget_s, items

    def share(self) -> float:
        left = max(self.deadline - time.perf_counter(), 0.0)
        share = left / max(self.items, 1)
        self.items -= 1
        return share


def batches_for(share_s: float, batch_s: float, most: int) -> int:
    """Timed batches that fit in ``share_s`` beside the warm-up (about the same again): at
    least one, at most ``most`` (a job's whole epoch or test set) and MAX_BATCHES."""
    return int(min(most, MAX_BATCHES, max(1, share_s / 2 / max(batch_s, 1e-6))))


def time_training(settings: Settings, config: dict, dataset: str, device, clock: Clock,
                  tick) -> dict[str, float]:
    """Images/s of each defense's training epoch at the config's batch size."""
    batch, size = settings.training.batch_size_for(dataset), SHAPES[dataset][-1]
    epoch = -(-split_sizes(settings, dataset)["train"] // batch)
    warm = device.type == "cuda"  # a CPU has nothing to tune or capture: time batch 1 as is
    warmup = timing.warmup_batches(graphs_wanted(settings.runtime.cuda_graphs, device)) * warm
    rates = {}
    for defense in registry.ids("defense"):
        tick(f"train {defense}")
        run = grid.main_run(config, defense, dataset)
        share = clock.share()
        started = time.perf_counter()
        one = timing.epoch_seconds(settings, run, timing.synthetic_split(batch, size, device),
                                   batch, device, warmup=warm)
        spent = time.perf_counter() - started
        n = batches_for(share - spent, spent / (warmup + 1), epoch)
        seconds = one if n == 1 else timing.epoch_seconds(
            settings, run, timing.synthetic_split(n * batch, size, device), batch, device,
            warmup=warm)
        rates[defense] = n * batch / seconds
    return rates


def time_attacks(settings: Settings, config: dict, dataset: str, device, clock: Clock,
                 tick) -> dict[str, float]:
    """Images/s of each attack of the tables at the config's evaluation chunk, on a model that
    classifies its inputs (DeepFool's work depends on it)."""
    chunk, size = settings.attack_chunk_size, SHAPES[dataset][-1]
    test = -(-split_sizes(settings, dataset)["test"] // chunk)
    warm = device.type == "cuda"
    tick("model for the attacks")
    model = timing.trained_model(size, MODEL_STEPS, device, settings, dataset)
    rates = {}
    for attack in grid.attacks(config):
        tick(f"attack {attack}")
        share = clock.share()
        started = time.perf_counter()
        one = timing.attack_seconds(settings, model, attack,
                                    timing.prototype_split(chunk, size, 1, device), device, warm)
        spent = time.perf_counter() - started
        n = batches_for(share - spent, spent / (1 + warm), test)
        seconds = one if n == 1 else timing.attack_seconds(
            settings, model, attack, timing.prototype_split(n * chunk, size, 1, device), device,
            warm)
        rates[attack] = n * chunk / seconds
    return rates


def run_checks(config: dict, device, tick) -> dict[str, str]:
    """The CUDA graph and padded DeepFool checks (repro.runtime.cuda_checks): ok or FAIL."""
    from repro.cli import apply_overrides
    from repro.runtime import cuda_checks

    config = apply_overrides(config, ["model.pretrained=none"])
    lines: list[str] = []
    tick("checks: CUDA graphs against eager")
    split = cuda_checks.check_split(64, device)
    with cuda_checks.same_kernels():
        cuda_checks.check_training(config, split, 64, device, lines.append)
        cuda_checks.check_evaluation(config, split, 64, device, lines.append)
    tick("checks: padded against exact DeepFool")
    cuda_checks.check_deepfool(1024, device, lines.append)
    return {line[:34].strip(): line[34:].strip() for line in lines if not line.startswith(" ")}


def calibrate(config: dict, device=None, budget_s: float = BUDGET_S, progress: bool = True,
              checks: bool = True) -> dict:
    """Measure this machine (see the module docstring); returns the rates file's content.
    ``checks``: run the CUDA checks too (on CUDA only)."""
    from repro.cli import apply_overrides

    config = apply_overrides(config, ["model.pretrained=none"])  # weights do not change speed
    settings = Settings.from_config(config)
    device = select_device(device or settings.runtime.device)
    kind, name = measured.device_kind(device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # per core, as the built-in CPU rates and the cost notice
    dataset = main_dataset(config)
    attacks = grid.attacks(config)
    checks = checks and device.type == "cuda"
    bar = _bar(progress, len(registry.ids("defense")) + 1 + len(attacks) + 2 * checks)

    def tick(what: str) -> None:  # the previous step is done, ``what`` begins
        if bar is not None:
            if bar.desc:
                bar.update()
            bar.set_description(what)

    clock = Clock(budget_s, len(registry.ids("defense")) + len(attacks))
    try:
        train = time_training(settings, config, dataset, device, clock, tick)
        attack = time_attacks(settings, config, dataset, device, clock, tick)
        found = run_checks(config, device, tick) if checks else {}
    finally:
        torch.set_num_threads(threads)
        if bar is not None:
            bar.close()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = "one CPU core" if device.type == "cpu" else name
    return {
        "device": kind, "device_name": name, "date": date,
        "source": f"calibrated on {where} on {date} (python -m repro calibrate: {dataset}, "
                  f"batch {settings.training.batch_size_for(dataset)}, chunk "
                  f"{settings.attack_chunk_size}, {settings.training.precision}, CUDA graphs "
                  f"{'on' if graphs_wanted(settings.runtime.cuda_graphs, device) else 'off'})",
        "train": {k: round(v, 1) for k, v in train.items()},
        "attack": {k: round(v, 1) for k, v in attack.items()},
        **({"checks": found} if checks else {}),
    }


def _bar(show: bool, total: int):
    if not show:
        return None
    import sys

    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, leave=False)


def format_rates(rates: dict) -> str:
    """This machine's rates beside the built-in ones of its kind."""
    builtin = measured.MEASURED[rates["device"]]
    lines = [f"{'images/s':<22}{'this machine':>14}{'built-in':>12}{'ratio':>8}"]
    for part in ("train", "attack"):
        for key, value in rates[part].items():
            known = builtin[part].get(key)
            ratio = f"{value / known:7.2f}x" if known else f"{'-':>8}"
            lines.append(f"{part + ' ' + key:<22}{value:14.1f}"
                         f"{known if known else '-':>12}{ratio}")
    lines.append(f"built-in: {builtin['source']}")
    for check, result in rates.get("checks", {}).items():
        lines.append(f"check {check}: {result}")
    return "\n".join(lines)


def write_rates(rates: dict, path: str | Path | None = None) -> Path:
    """Write the rates file (default: where the estimate looks, measured.rates_path())."""
    from repro.runtime import io

    path = Path(path) if path else measured.rates_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_text(path, "# written by python -m repro calibrate; delete it to price with the "
                        "built-in rates again\n" + yaml.safe_dump(rates, sort_keys=False))
    return path
