"""ResNet-18 (torchvision) with fc → 10 classes and the embedding taps of the paper's Table 3.

The classifier takes inputs in *attack space*: normalized tensors in the paper's protocol
(the data were normalized before the model, so attacks perturbed normalized values), or
[0, 1] pixels in the standard protocol (normalization is the model's first layer). Either way
:meth:`Classifier.to_input` maps pixels into that space, so attacks and losses never ask which
protocol is running (ledger 2).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from repro.config import LAYERS, NUM_CLASSES, Settings
from repro.data import SHAPES, normalization

# Table 3: which torchvision ResNet-18 components produce each representation.
STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool",
          "fc")
TAP_AFTER = {"embed1": "maxpool", "embed2": "layer1", "embed3": "layer2", "embed4": "layer3",
             "embed5": "avgpool", "output": "fc"}
TAP_NAMES = {"embed1": "Embedding-1", "embed2": "Embedding-2", "embed3": "Embedding-3",
             "embed4": "Embedding-4", "embed5": "Embedding-5", "output": "Output"}


_INIT_LOCK = threading.Lock()


class WeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but cannot be downloaded or read."""


class Classifier(nn.Module):
    def __init__(self, resnet: nn.Module, mean, std, input_space: str):
        super().__init__()
        self.resnet = resnet
        self.input_space = input_space
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def to_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """Map [0, 1] pixels into the space the model (and every attack) works in."""
        if self.input_space == "pixel":
            return pixels
        return (pixels - self.mean) / self.std

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.forward_taps(inputs)[0]

    def forward_taps(self, inputs: torch.Tensor, layers=(), logits: bool = True):
        """One pass returning (logits, {layer: representation}).

        With ``logits=False`` the pass stops after the deepest requested tap (and returns
        None for the logits): the paper's code computed clean embeddings with such partial
        passes, which matters for the batch-norm statistics they update.
        """
        wanted = {TAP_AFTER[layer]: layer for layer in layers}
        last = "fc" if logits or "output" in layers else max(
            (TAP_AFTER[layer] for layer in layers), key=STAGES.index)
        out = inputs if self.input_space == "normalized" else (inputs - self.mean) / self.std
        taps = {}
        for stage in STAGES:
            if stage == "fc":
                out = torch.flatten(out, 1)
            out = getattr(self.resnet, stage)(out)
            if stage in wanted:
                taps[wanted[stage]] = out
            if stage == last:
                break
        return (out if last == "fc" else None), taps


def build_model(settings: Settings, dataset: str, seed: int = 0) -> Classifier:
    """ResNet-18 with the configured initial weights and a fresh fc, initialized from ``seed``.

    Initialization draws from torch's global RNG; a lock and a forked RNG make it depend on
    ``seed`` alone, even when jobs run in threads of one process (Snakemake with
    ``--force-use-threads``), and leave the caller's RNG state untouched.
    """
    with _seeded_init(seed):
        return _build(settings, dataset)


@contextmanager
def _seeded_init(seed: int) -> Iterator[None]:
    """torch's global RNG seeded with ``seed`` for this thread's model construction alone: every
    construction in the package runs under it, so one job's draws never move another's."""
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _build(settings: Settings, dataset: str) -> Classifier:
    from torchvision.models import ResNet18_Weights, resnet18

    pretrained = settings.pretrained
    if pretrained == "imagenet":
        try:
            resnet = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            raise WeightsUnavailable(
                f"ImageNet weights for ResNet-18 could not be loaded ({error}). Either run once "
                f"with network, or copy resnet18-f37072fd.pth into "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'}, or set model.pretrained to the "
                f"path of that file, or to 'none' (random init; an explicit change of the "
                f"experiment)") from error
    else:
        resnet = resnet18(weights=None)
        if pretrained != "none":
            path = Path(pretrained)
            if not path.is_file():
                raise WeightsUnavailable(f"model.pretrained: {path} is not a file; give the "
                                         f"path of a torchvision ResNet-18 state_dict, "
                                         f"'imagenet' or 'none'")
            resnet.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    resnet.fc = nn.Linear(resnet.fc.in_features, NUM_CLASSES)
    mean, std = normalization(settings, dataset)
    return Classifier(resnet, mean, std, settings.protocol.attack_space)


def embedding_table(dataset: str) -> list[dict]:
    """Table 3, derived from the model: components and output shape of each representation."""
    from torchvision.models import resnet18

    # Its weights are random and unused, but drawing them from the global RNG beside a training
    # job's build_model (a thread of the same process) changed that run's initial weights.
    with _seeded_init(0):
        resnet = resnet18(weights=None)
        resnet.fc = nn.Linear(resnet.fc.in_features, NUM_CLASSES)
    model = Classifier(resnet, (0.0,) * 3, (1.0,) * 3, "normalized").eval()
    with torch.no_grad():
        _, taps = model.forward_taps(torch.zeros(1, 3, *SHAPES[dataset][1:]), LAYERS)
    rows = []
    for layer in LAYERS:
        stages = STAGES[:STAGES.index(TAP_AFTER[layer]) + 1]
        shape = list(taps[layer].shape[1:])
        rows.append({"layer": layer, "name": TAP_NAMES[layer],
                     "components": " + ".join(stages), "shape": shape,
                     "dim": int(torch.tensor(shape).prod())})
    return rows
