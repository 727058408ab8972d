"""A toy dataset as a user would add one (docs/extending.md): 16×16 grey stripes, 10 classes.

Class k is a sine grating at angle k·18° plus noise, drawn from ``data.split_seed``: no files,
no network. It declares its own source, ``generated``, and the config entry it gets when the
config has none (``default``); the pipeline gives it a top-1 table of its own (Table 10).
"""
import math

import torch

from repro.data import Split
from repro.registry import Dataset

SIZES = (600, 200)  # train + val, test


def _make(n: int, seed: int) -> Split:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator)
    angle = labels.float() * math.pi / 10
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    wave = torch.sin((x * angle.cos().view(-1, 1, 1) + y * angle.sin().view(-1, 1, 1)) * 1.2)
    noise = torch.rand(n, 16, 16, generator=generator) - 0.5
    grey = ((0.5 + 0.35 * wave + 0.3 * noise).clamp(0, 1) * 255).round().to(torch.uint8)
    return Split(grey.unsqueeze(1).expand(-1, 3, -1, -1).contiguous(), labels)


def load(settings, dataset, entry):
    """(train, val, test) Splits: uint8 N×3×H×W images, int64 labels."""
    seed, val = settings.data.split_seed, int(entry["val_size"])
    full = _make(SIZES[0], seed)
    train = Split(full.images[val:], full.labels[val:])
    return train, Split(full.images[:val], full.labels[:val]), _make(SIZES[1], seed + 1)


MEMBERS = [Dataset(id="stripes", label="Stripes", shape=(1, 16, 16), sizes=SIZES,
                   statistics=((0.5,) * 3, (0.25,) * 3), sources={"generated": load},
                   default={"source": "generated", "val_size": 100})]
