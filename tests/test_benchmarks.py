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

from repro import registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_runs_every_stage_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "DEVICE": "cpu", "N": "8", "BATCH": "4",
           "BOUND_BATCH": "8", "N_CONCURRENT": "8", "ATTACK_BATCH": "8", "CONCURRENT": "1 2",
           "DEEPFOOL_N": "8", "SELFCHECK_N": "8",
           "CALIBRATE_BUDGET": "1", "CALIBRATE_ARGS": "--configfile config/smoke.yaml --set "
                             "training.batch_size=4 --set evaluation.chunk_size=4 --set "
                             "protocol.pgd.steps=2 --set protocol.trades_pgd.steps=2 --set "
                             "protocol.deepfool.steps=2"}
    subprocess.run(["bash", str(ROOT / "benchmarks/gpu.sh")], check=True, env=env,
                   capture_output=True, text=True)
    files = {path.name: path.read_text() for path in tmp_path.iterdir() if path.is_file()}
    assert set(files) == {"machine.txt", "check.txt", "selfcheck.txt", "calibrate.txt",
                          "rates.yaml", "attacks.txt", "train-fp32.txt", "concurrent.txt",
                          "train-eager.txt", "train-bf16.txt", "estimate.txt"}
    selfcheck = files["selfcheck.txt"].splitlines()[-3:]  # after the train and evaluate lines
    assert [line.split()[0] for line in selfcheck] == ["training", "evaluation", "self-check"]
    assert selfcheck[-1] == "self-check ok" and '"used": false' in selfcheck[0]
    calibrated = files["calibrate.txt"]
    assert "train at-pgd" in calibrated and "written to " + str(tmp_path / "rates.yaml") in \
        calibrated
    assert "training and attack rates calibrated on one CPU core" in calibrated
    assert calibrated.splitlines()[-1].split()[0] == "total"
    assert "skipped: no CUDA graphs" in files["check.txt"]
    last = files["check.txt"].splitlines()[-1]
    assert last.startswith("deepfool padded = exact") and last.endswith("ok")
    attacks = files["attacks.txt"].splitlines()
    assert "deepfool-step vs torchattacks: success" in files["attacks.txt"]
    assert attacks[-1].startswith("summary: PGD-20") and "x bound" in attacks[-1]
    assert any(line.startswith("--attack-images-per-second fgsm=") for line in attacks)
    train = files["train-fp32.txt"]
    assert "cpu, fp32, CUDA graphs off" in train and "vs bound" in train
    rates = train.splitlines()[-1].split()
    assert rates[0] == "--images-per-second"
    assert [rate.split("=")[0] for rate in rates[1:]] == list(registry.ids("defense"))
    for name, precision in (("train-eager", "fp32"), ("train-bf16", "bf16")):
        assert files[f"{name}.txt"].splitlines()[-1].split()[1].startswith("standard=")
        assert f"cpu, {precision}" in files[f"{name}.txt"]
    concurrent = files["concurrent.txt"].splitlines()
    assert [line.split(",")[1].split()[0] for line in concurrent] == ["1", "2"]
    assert all(float(line.split(": ")[1].split()[0]) > 0 for line in concurrent)
    estimate = files["estimate.txt"].splitlines()
    assert estimate[0].startswith("72 training jobs (20 epochs assumed), 372 evaluation jobs")
    # the table ends in its total; lines on how unmeasured members were priced may follow
    assert "total" in [line.split()[0] for line in estimate if line.strip()]
