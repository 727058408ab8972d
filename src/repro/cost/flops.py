"""The FLOP floor: the matrix work one training image costs, and what a card can do at peak.

A training step is counted by running it once, on two images, under a dispatch mode that
applies torch's own FLOP formulas (``torch.utils.flop_counter.flop_registry``; its
``FlopCounterMode`` cannot be used because its module hooks break the attacks'
``torch.autograd.grad`` on a leaf). The step is the pipeline's own ``training_loss`` and
backward pass, so the attack steps, the extra passes of TRADES and CL, and the partial
passes of CL's clean embedding are all in the count. The counter sees convolutions and
matrix products (forward and backward) only; batch norm, activations and the optimizer are
memory-bound and left out, so ``flops / peak`` is a floor that no implementation can beat,
not a time to expect.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from repro.config import NUM_CLASSES, RunSpec, Settings
from repro.data import SHAPES

# Dense tensor-core peaks in TFLOP/s from NVIDIA's datasheets (the datasheets' larger
# numbers assume 2:4 sparsity). fp32 training runs its convolutions and products as TF32,
# which ``device.select_device`` enables. Longest name first: "H100 PCIe" before "H100".
PEAK_TFLOPS = {
    "H100 PCIe": {"fp32": 378.0, "bf16": 756.0},
    "H100 NVL": {"fp32": 417.5, "bf16": 835.5},
    "H200 NVL": {"fp32": 417.5, "bf16": 835.5},
    "H100": {"fp32": 494.7, "bf16": 989.4},  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    "H200": {"fp32": 494.7, "bf16": 989.4},
    "A100": {"fp32": 156.0, "bf16": 312.0},
}


class _CountFlops(TorchDispatchMode):
    """Adds up the registered FLOP formula of every operator that runs inside it."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def card_peak_tflops(device: torch.device | str, precision: str) -> float | None:
    """The datasheet peak of a CUDA card for ``precision`` (fp32 or bf16); None if unknown."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for card in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if card in name:
            return PEAK_TFLOPS[card][precision]
    return None


def training_flops(settings: Settings, run: RunSpec, size: int | None = None) -> float:
    """FLOPs of one training image of ``run`` (attack, loss and backward), counted on CPU.

    ``size`` overrides the dataset's height and width (the benchmarks time other sizes).
    Weights do not change the count, so the model starts from random ones (no download).
    """
    from repro.defenses import training_loss
    from repro.models.resnet import build_model

    _, height, width = SHAPES[run.dataset]
    shape = (2, 3, size or height, size or width)  # two images: train-mode batch norm
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(shape, generator=generator)
    labels = torch.arange(len(pixels)) % NUM_CLASSES
    model = build_model(replace(settings, pretrained="none"), run.dataset, run.seed).train()
    with _CountFlops() as counter:
        loss, _ = training_loss(model, model.to_input(pixels), labels, run, settings.protocol,
                                generator)
        loss.backward()
    return counter.flops / len(pixels)
