"""Shared fixtures: tiny offline settings (synthetic CIFAR-10 stand-in, embedded MNIST)."""
import copy
from pathlib import Path

import pytest
import torch

from repro.cli import apply_overrides
from repro.config import Settings, load_config

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "data": {"root": "unused-offline", "split_seed": 42, "datasets": {
        "cifar10": {"source": "synthetic", "val_size": 64, "subset": {"train": 128, "test": 64}},
        "mnist": {"source": "embedded", "val_size": 100, "subset": {"train": 128, "test": 64}},
    }},
    "model": {"pretrained": "none"},
    "training": {"max_epochs": 2, "batch_size": 32, "batch_size_by_dataset": {}, "patience": 3},
    "evaluation": {"chunk_size": 64},
}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture
def tiny_config():
    """A fresh copy of the tiny config dict, to modify freely."""
    return copy.deepcopy(TINY)


@pytest.fixture
def make_settings(tiny_config):
    """``make_settings("protocol.attack_space=pixel", ...)``: tiny settings with overrides."""
    def make(*overrides: str) -> Settings:
        return Settings.from_config(apply_overrides(copy.deepcopy(tiny_config), list(overrides)))
    return make


@pytest.fixture
def paper_config() -> dict:
    """A fresh copy of the full reproduction config (tests may edit it)."""
    return load_config(ROOT / "config.yaml")
