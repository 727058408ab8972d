"""A training process killed from outside resumes from its last completed epoch."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from repro.io import load_torch

RUN = ["--dataset", "cifar10", "--defense", "trades-fgsm", "--seed", "3"]


@pytest.fixture
def config(tmp_path, tiny_config):
    tiny_config["training"].update(max_epochs=2, shuffle=True)
    tiny_config["data"]["datasets"]["cifar10"]["subset"]["train"] = 96
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(tiny_config))
    return path


def _train(config, out, **popen):
    command = [sys.executable, "-m", "repro", "train", "--config", str(config), *RUN,
               "--out", str(out), "--no-progress"]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True, **popen)


def _kill_after_first_epoch(config, out, sig):
    process = _train(config, out)
    state = out.with_name(out.name + ".state")
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(sig)
    process.wait(timeout=60)
    assert load_torch(state)["epoch"] == 1, "the kill should land during the second epoch"
    assert not out.exists()
    return process


def test_sigkill_then_restart_equals_uninterrupted_run(config, tmp_path):
    whole, killed = tmp_path / "whole" / "model.pt", tmp_path / "killed" / "model.pt"
    assert _train(config, whole).wait(timeout=300) == 0
    _kill_after_first_epoch(config, killed, signal.SIGKILL)
    restarted = _train(config, killed)
    assert restarted.wait(timeout=300) == 0
    assert "resuming" in restarted.stderr.read()
    first, second = load_torch(whole)["model"], load_torch(killed)["model"]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_sigterm_exits_non_zero_and_keeps_the_last_epoch(config, tmp_path):
    process = _kill_after_first_epoch(config, tmp_path / "model.pt", signal.SIGTERM)
    assert process.returncode != 0
