import json
import subprocess
import sys

import pytest
import torch

from repro.config import RunSpec
from repro.runs.evaluate import evaluate_run, topk_accuracy
from repro.runs.artifacts import load_checkpoint, save_checkpoint
from repro.runtime.io import CorruptFile, save_torch
from repro.runs.train import train_run

from conftest import ROOT

RUN = RunSpec("mnist", "standard", seed=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny trained checkpoint shared by the tests of this module."""
    from conftest import TINY
    from repro.config import Settings

    settings = Settings.from_config({**TINY, "training": {**TINY["training"], "lr": 1e-3}})
    path = tmp_path_factory.mktemp("run") / "model.pt"
    train_run(settings, RUN, path, progress=False)
    return settings, path


def test_topk_batch_mean_differs_from_sample_mean_as_the_ledger_says():
    logits = torch.eye(10)[[0, 1, 2, 3, 4]] * 5
    labels = torch.tensor([0, 1, 2, 9, 9])  # 3 of 5 right; batches of 4 and 1
    assert topk_accuracy(logits, labels, 4, "sample")["top1"] == pytest.approx(60.0)
    assert topk_accuracy(logits, labels, 4, "batch")["top1"] == pytest.approx((75.0 + 0.0) / 2)
    assert topk_accuracy(logits, labels, 4, "sample")["top5"] >= 60.0


def test_evaluation_json_has_accuracies_and_provenance(trained, tmp_path):
    settings, path = trained
    out = tmp_path / "eval" / "pgd.json"
    result = evaluate_run(settings, RUN, path, "pgd", out)
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert 0 <= saved["top1"] <= saved["top3"] <= saved["top5"] <= 100
    assert saved["n"] == 64 and saved["data_source"].startswith("embedded MNIST")
    assert saved["attack_parameters"]["steps"] == 20
    assert {"torch", "device", "repro"} <= set(saved["provenance"])
    # the whole protocol (tables name it in their captions), though the standard run's
    # checkpoint records only the part its training read
    assert saved["protocol"] == settings.protocol.as_record()
    assert "extra" not in saved["protocol"]  # a plugin's section sits under its own key
    assert set(saved["training"]) >= {"epochs", "provenance"}
    clean = evaluate_run(settings, RUN, path, "clean")
    assert clean["top1"] >= saved["top1"]


def test_evaluation_refuses_a_checkpoint_of_another_run(trained):
    settings, path = trained
    with pytest.raises(ValueError, match="run"):
        evaluate_run(settings, RunSpec("mnist", "standard", seed=1), path, "clean")


def test_evaluation_accepts_settings_its_training_did_not_read(trained, make_settings):
    """A DeepFool or PGD setting changes no standard training: the checkpoint stays valid."""
    settings, path = trained
    other = make_settings("training.lr=0.001", "protocol.deepfool.steps=3",
                          "protocol.pgd.steps=2", "protocol.epsilon=0.05")
    assert evaluate_run(other, RUN, path, "clean")["n"] == 64
    with pytest.raises(ValueError, match="lr"):
        evaluate_run(make_settings(), RUN, path, "clean")  # another lr: another training


def test_corrupt_checkpoint_is_named_with_the_command_that_rebuilds_it(trained, tmp_path):
    settings, path = trained
    broken = tmp_path / "model.pt"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptFile, match=f"^{broken} does not load.*--forcerun {broken}`"):
        evaluate_run(settings, RUN, broken, "clean")


def test_a_checkpoint_without_weights_is_refused_naming_it(trained, tmp_path):
    """What a run whose validation loss was NaN from the first epoch used to write."""
    settings, path = trained
    empty = tmp_path / "model.pt"
    save_torch(empty, {**load_checkpoint(path), "model": None})
    with pytest.raises(CorruptFile, match=f"^{empty} holds no weights.*--forcerun {empty}`"):
        evaluate_run(settings, RUN, empty, "clean")
    with pytest.raises(ValueError, match="no weights"):
        save_checkpoint(tmp_path / "other.pt", {**load_checkpoint(path), "model": None})
    assert not (tmp_path / "other.pt").exists()


def test_cli_trains_and_evaluates_one_run(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(json.dumps({"data": {"root": str(tmp_path), "datasets": {
        "mnist": {"source": "embedded", "val_size": 50, "subset": {"train": 64, "test": 32}}}},
        "model": {"pretrained": "none"}}))
    base = [sys.executable, "-m", "repro"]
    run = ["--config", str(ROOT / "config.yaml"), "--configfile", str(overlay), "--dataset",
           "mnist", "--defense", "cl-fgsm", "--layer", "embed5", "--beta", "6", "--set",
           "training.max_epochs=1"]
    subprocess.run(base + ["train"] + run + ["--out", str(tmp_path / "m.pt")], check=True)
    done = subprocess.run(base + ["evaluate"] + run + ["--checkpoint", str(tmp_path / "m.pt"),
                                                        "--attack", "fgsm"],
                          check=True, capture_output=True, text=True)
    assert json.loads(done.stdout)["n"] == 32
    helptext = subprocess.run(base + ["train", "--help"], capture_output=True, text=True).stdout
    assert all(option in helptext
               for option in ("--layer", "--beta", "--set", "--device", "--threads"))
