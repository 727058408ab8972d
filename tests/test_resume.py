"""A training process killed from outside resumes from its last completed epoch."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from repro.runs.artifacts import load_checkpoint

from conftest import ROOT

RUN = ["--dataset", "cifar10", "--defense", "trades-fgsm", "--seed", "3"]


@pytest.fixture
def config(tmp_path, tiny_config):
    tiny_config["training"].update(max_epochs=2, shuffle=True)
    tiny_config["data"]["datasets"]["cifar10"]["subset"]["train"] = 96
    tiny_config["resources"] = {"train": {"threads": 1}}
    path = tmp_path / "tiny.yaml"  # merged over config.yaml
    path.write_text(json.dumps(tiny_config))
    return path


def _train(config, out, **popen):
    command = [sys.executable, "-m", "repro", "train", "--config", str(ROOT / "config.yaml"),
               "--configfile", str(config), *RUN, "--out", str(out), "--no-progress"]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True, **popen)


def _kill_after_first_epoch(config, out, sig):
    process = _train(config, out)
    state = out.with_name(out.name + ".state")
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(sig)
    process.wait(timeout=60)
    assert torch.load(state, weights_only=False)["epoch"] == 1, \
        "the kill should land during the second epoch"
    assert not out.exists()
    return process


def test_sigkill_then_restart_equals_uninterrupted_run(config, tmp_path):
    whole, killed = tmp_path / "whole" / "model.pt", tmp_path / "killed" / "model.pt"
    assert _train(config, whole).wait(timeout=300) == 0
    _kill_after_first_epoch(config, killed, signal.SIGKILL)
    restarted = _train(config, killed)
    assert restarted.wait(timeout=300) == 0
    assert "resuming" in restarted.stderr.read()
    first = load_checkpoint(whole)["model"]
    second = load_checkpoint(killed)["model"]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_sigterm_exits_non_zero_and_keeps_the_last_epoch(config, tmp_path):
    process = _kill_after_first_epoch(config, tmp_path / "model.pt", signal.SIGTERM)
    assert process.returncode != 0
