"""benchmarks/gpu.sh, the one command a GPU session runs, works through on CPU at tiny sizes.

Timings are not checked (tests never time); the outputs are: every stage writes its file,
the training benchmark's last line is a valid ``repro estimate`` argument list, and the
attack benchmark's agreement checks ran against the reference libraries.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from repro.config import DEFENSES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_runs_every_stage_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "DEVICE": "cpu", "N": "8", "ATTACK_BATCH": "8"}
    subprocess.run(["bash", str(ROOT / "benchmarks/gpu.sh")], check=True, env=env,
                   capture_output=True, text=True)
    files = {path.name: path.read_text() for path in tmp_path.iterdir()}
    assert set(files) == {"machine.txt", "attacks.txt", "train-fp32.txt", "train-bf16.txt",
                          "estimate-fp32.txt", "estimate-bf16.txt"}
    assert "deepfool-step vs torchattacks: success" in files["attacks.txt"]
    assert files["attacks.txt"].splitlines()[-1].startswith("summary: PGD-20")
    for precision in ("fp32", "bf16"):
        train = files[f"train-{precision}.txt"]
        assert f"cpu, {precision}" in train
        rates = train.splitlines()[-1].split()
        assert rates[0] == "--images-per-second"
        assert [rate.split("=")[0] for rate in rates[1:]] == list(DEFENSES)
        estimate = files[f"estimate-{precision}.txt"].splitlines()
        assert estimate[0] == "72 training jobs (20 epochs assumed), 288 evaluation jobs"
        assert estimate[-1].split()[0] == "total"
