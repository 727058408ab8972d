"""Shared fixtures: tiny offline settings (synthetic CIFAR-10 stand-in, embedded MNIST)."""
import copy
import os
import sys
from pathlib import Path

import pytest
import torch

from repro import registry
from repro.cli import apply_overrides
from repro.config import Settings, load_config

ROOT = Path(__file__).resolve().parents[1]
# Snakemake run from the repository root. Tests run several at once (pytest-xdist), each on its
# own results folder, so they skip Snakemake's lock: all instances in one folder share
# .snakemake/locks, and one's unlock deletes that folder while another writes its lock there.
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--nolock"]

TINY = {
    "data": {"root": "unused-offline", "split_seed": 42, "datasets": {
        "cifar10": {"source": "synthetic", "val_size": 64, "subset": {"train": 128, "test": 64}},
        "mnist": {"source": "embedded", "val_size": 100, "subset": {"train": 128, "test": 64}},
    }},
    "model": {"pretrained": "none"},
    "training": {"max_epochs": 2, "batch_size": 32, "batch_size_by_dataset": {}, "patience": 3},
    "evaluation": {"chunk_size": 64},
}

# Invalid config overlays, each with the one key its error must start with and a token of the
# message; the workflow (test_workflow) and the CLI (test_cli) must refuse each the same way.
BAD_CONFIGS = [
    ({"training": {"lrr": 0.1}}, "training", "'lrr'"),
    ({"trainig": {"lr": 0.1}}, "(top level)", "'trainig'"),
    ({"data": {"datasets": {"cifar100": {"source": "torchvision", "val_size": 10}}}},
     "data.datasets", "'cifar100'"),
    ({"data": {"datasets": {"cifar10": {"source": "embedded"}}}},
     "data.datasets.cifar10.source", "'embedded'"),
    ({"evaluation": {"attacks": ["clean", "cw"]}}, "evaluation.attacks.1", "'cw'"),
    ({"grid": {"layer_ablation": {"layers": ["embed6"]}}}, "grid.layer_ablation.layers.0",
     "'embed6'"),
    ({"grid": {"seeds": [0, -1]}}, "grid.seeds.1", "minimum of 0"),
    ({"protocol": {"pgd": {"stepz": 3}}}, "protocol.pgd", "'stepz'"),
    ({"resources": {"train": {"gpus": 1}}}, "resources.train", "'gpus'"),
    ({"training": {"lr": -1}}, "training.lr", "minimum of 0"),
    ({"training": {"max_epochs": "ten"}}, "training.max_epochs", "'integer'"),
    ({"training": {"precision": "fp16"}}, "training.precision", "'fp16'"),
    ({"runtime": {"device": "gpu"}}, "runtime.device", "'gpu'"),
    ({"training": {"device": "cpu"}}, "training.device", "moved to runtime.device"),
    ({"protocol": {"attack_space": "pixels"}}, "protocol.attack_space", "'pixels'"),
    ({"protocol": {"epsilon": 8}}, "protocol.epsilon", "maximum of 1"),
    ({"protocol": {"epsilon": -0.5}}, "protocol.epsilon", "minimum of 0"),
    ({"grid": {"beta_ablation": {"betas": []}}}, "grid.beta_ablation.betas", "[]"),
    ({"report": {"protocols": {"Paper!": "results"}}}, "report.protocols", "'Paper!'"),
    ({"audit": {"autoattack": {"apgd_t": {"steps": 100, "targets": 12}}}},
     "audit.autoattack.apgd_t.targets", "maximum of 9"),
]


# Files whose tests take minutes (end-to-end runs), longest first: run first, so that
# pytest-xdist (.ci/run, --dist loadfile) starts them at once on separate workers.
LONGEST_FIRST = ("test_smoke.py", "test_benchmarks.py", "test_workflow.py", "test_slurm.py",
                 "test_plugin_workflow.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept


@pytest.fixture(autouse=True)
def _threads():
    """Two torch threads, or this worker's share of the cores under pytest-xdist (.ci/run runs
    one worker per core): more threads than cores make OpenMP's workers wait on each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))


@pytest.fixture(autouse=True)
def _builtin_members_only():
    """Each test starts from the built-in members: the registry keeps a plugin for the rest of
    the process (as a workflow run should), so one test's plugins would show in the next
    test's grids, estimates and calibrations on the same pytest-xdist worker."""
    registry.ids("defense")  # the built-ins, loaded
    members = {kind: dict(found) for kind, found in registry._MEMBERS.items()}
    plugins = dict(registry._PLUGINS)
    yield
    for kind, found in members.items():
        registry._MEMBERS[kind].clear()
        registry._MEMBERS[kind].update(found)
    registry._PLUGINS.clear()
    registry._PLUGINS.update(plugins)


@pytest.fixture(autouse=True)
def _no_calibrated_rates(monkeypatch):
    """Estimates price with the built-in rates, whatever `python -m repro calibrate` wrote
    into this machine's cache (tests/test_calibrate.py points REPRO_RATES at its own file)."""
    monkeypatch.setenv("REPRO_RATES", str(ROOT / "tests" / "no-such-rates.yaml"))


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
