"""How fast this machine runs the pipeline's own loops: the pieces that ``python -m repro
calibrate`` (repro.cost.calibrate), the GPU checks (repro.runtime.cuda_checks) and the
benchmark scripts (benchmarks/train.py, benchmarks/attacks.py) share.

Timings use synthetic data of the real shapes: training and FGSM/PGD do the same work
whatever the pixels are. DeepFool does not (a sample stops once its prediction flips), so
attacks are timed on a model briefly trained on seeded class prototypes, which it classifies
correctly before the attack, as a trained model classifies its test set.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from repro.config import NUM_CLASSES, RunSpec, Settings
from repro.data import Split
from repro.runtime.device import prepare_model
from repro.runtime.graphs import WARMUP


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_split(n: int, size: int, device, labels: torch.Tensor | None = None) -> Split:
    """``n`` random uint8 images of ``size`` x ``size`` with random (or the given) labels."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    if labels is None:
        labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    return Split(images, labels.cpu()).to(device)


def prototypes(n: int, size: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random class prototypes plus noise: learnable in a few steps, in [0, 1]."""
    protos = F.interpolate(torch.rand(NUM_CLASSES, 3, 4, 4,
                                      generator=torch.Generator().manual_seed(7)),
                           size=(size, size), mode="bilinear", align_corners=False)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    pixels = 0.6 * protos[labels] + 0.4 * torch.rand(n, 3, size, size, generator=generator)
    return pixels.to(device), labels.to(device)


def prototype_split(n: int, size: int, seed: int, device) -> Split:
    """:func:`prototypes` as a split of uint8 images (what evaluation reads)."""
    pixels, labels = prototypes(n, size, seed, device)
    return Split(pixels.mul(255).round().to(torch.uint8), labels)


def trained_model(size: int, steps: int, device, settings: Settings | None = None,
                  dataset: str = "cifar10"):
    """The pipeline's model (random init; by default on [0, 1] pixels) after ``steps`` Adam
    steps on :func:`prototypes`, in eval mode."""
    settings = settings or Settings.from_config({"protocol": {"attack_space": "pixel"},
                                                 "model": {"pretrained": "none"}})
    torch.manual_seed(0)
    model = prepare_model(settings, dataset, device)  # channels-last on a GPU, as in the pipeline
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps):
        pixels, labels = prototypes(32, size, 100 + step, device)
        loss = F.cross_entropy(model(model.to_input(pixels)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


def warmup_batches(graphed: bool) -> int:
    """Batches before a step runs as it will for the rest of the job: one (cuDNN autotuning,
    the allocator) or, with CUDA graphs, the eager ones, the captured one and the checked
    first replay (repro.runtime.graphs)."""
    return WARMUP + 2 if graphed else 1


def epoch_seconds(settings: Settings, run: RunSpec, split: Split, batch: int, device,
                  before_timing=None, warmup: bool = True) -> float:
    """One timed epoch of the pipeline's own training loop over ``split``, after
    :func:`warmup_batches` batches (``warmup``); ``before_timing()`` runs just before the
    clock starts."""
    from repro.runs import train

    torch.manual_seed(0)
    model, _, step = train.training_setup(settings, run, device, batch)
    first = Split(split.images[:batch], split.labels[:batch])
    for _ in range(warmup_batches(step.enabled) if warmup else 0):
        train._train_epoch(settings, model, step, first, run, batch, 0, device, False)
    synchronize(device)
    if before_timing is not None:
        before_timing()
    started = time.perf_counter()
    train._train_epoch(settings, model, step, split, run, batch, 1, device, False)
    synchronize(device)
    return time.perf_counter() - started


def attack_seconds(settings: Settings, model, attack: str, split: Split, device,
                   warmup: bool = True) -> float:
    """Seconds the pipeline's evaluation loop (repro.runs.evaluate.attack_logits) takes to
    attack ``split``, after one warm-up chunk (``warmup``: cuDNN autotuning, the allocator).
    Like an evaluation job, the timed loop warms up, captures and checks its CUDA graph
    itself."""
    from repro.runs.evaluate import attack_logits

    chunk = settings.attack_chunk_size
    if warmup:
        attack_logits(settings, model, attack, Split(split.images[:chunk], split.labels[:chunk]),
                      0, device)
    synchronize(device)
    started = time.perf_counter()
    attack_logits(settings, model, attack, split, 0, device)
    synchronize(device)
    return time.perf_counter() - started
