import shutil
import uuid

import pytest
import torch

import repro.runs.train as train_module
from repro import records
from repro.config import RunSpec
from repro.runs.artifacts import load_checkpoint
from repro.runs.train import NonFiniteLoss, train_run
from filesystems import small_filesystem
from repro.runtime.io import OutputUnwritable
from tolerance import EPSBF16

RUN = RunSpec("cifar10", "at-fgsm", seed=1)


def _same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_identical_checkpoints(make_settings, tmp_path):
    settings = make_settings("training.shuffle=true", "data.datasets.cifar10.subset.train=64")
    first = train_run(settings, RUN, tmp_path / "a" / "model.pt", progress=False)
    second = train_run(settings, RUN, tmp_path / "b" / "model.pt", progress=False)
    assert _same_weights(first["model"], second["model"])
    assert (tmp_path / "a" / "metrics.csv").read_text().startswith("epoch,train_loss")
    assert not (tmp_path / "a" / "model.pt.state").exists()
    saved = load_checkpoint(tmp_path / "a" / "model.pt")
    assert saved["run"] == RUN.as_dict() and saved["data_source"].startswith("synthetic")
    assert saved["provenance"]["torch"] == torch.__version__


def test_a_few_epochs_on_synthetic_data_raise_accuracy(make_settings, tmp_path):
    settings = make_settings("training.lr=0.001", "training.max_epochs=3",
                             "data.datasets.cifar10.subset.train=256")
    result = train_run(settings, RunSpec("cifar10", "standard", 0), tmp_path / "m.pt",
                       progress=False)
    accuracies = [row["val_acc"] for row in result["metrics"]]
    assert accuracies[-1] > max(40.0, accuracies[0])


def test_resumed_run_equals_uninterrupted_run(make_settings, tmp_path, monkeypatch):
    settings = make_settings("training.shuffle=true", "data.datasets.cifar10.subset.train=64")
    run = RunSpec("cifar10", "trades-fgsm", seed=2)
    whole = train_run(settings, run, tmp_path / "whole" / "model.pt", progress=False)

    original = train_module._train_epoch

    def dies_in_second_epoch(*args, **kwargs):
        if args[6] == 1:  # epoch index
            raise KeyboardInterrupt("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "_train_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_run(settings, run, tmp_path / "resumed" / "model.pt", progress=False)
    assert (tmp_path / "resumed" / "model.pt.state").exists()
    assert not (tmp_path / "resumed" / "model.pt").exists()
    # kill -9 while the state was being written leaves its temporary; the resumed run removes it
    orphan = tmp_path / "resumed" / f".model.pt.state.{uuid.uuid4().hex}.tmp"
    orphan.write_bytes(b"half a state")
    monkeypatch.setattr(train_module, "_train_epoch", original)
    resumed = train_run(settings, run, tmp_path / "resumed" / "model.pt", progress=False)
    assert _same_weights(whole["model"], resumed["model"])
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == ["metrics.csv", "model.pt"]
    assert [m["val_loss"] for m in whole["metrics"]] == [m["val_loss"] for m in resumed["metrics"]]


def test_nan_loss_stops_with_epoch_and_batch_and_no_checkpoint(make_settings, tmp_path,
                                                                monkeypatch):
    def nan_loss(model, inputs, *args, **kwargs):
        logits = model(inputs)
        return logits.sum() * float("nan"), logits

    monkeypatch.setattr(train_module, "training_loss", nan_loss)
    with pytest.raises(NonFiniteLoss, match="epoch 1, batch 1"):
        train_run(make_settings(), RunSpec("cifar10", "standard", 0), tmp_path / "m.pt",
                  progress=False)
    assert not (tmp_path / "m.pt").exists()


def test_nan_validation_loss_from_the_first_epoch_fails_without_a_checkpoint(make_settings,
                                                                           tmp_path):
    """lr 1e6: the training loss of epoch 1 is finite, the validation loss NaN; such a run
    used to succeed with a checkpoint that held no weights."""
    settings = make_settings("training.lr=1000000.0", "data.datasets.cifar10.subset.train=64",
                             "training.max_epochs=1")
    with pytest.raises(NonFiniteLoss, match="validation loss is nan after epoch 1; no checkpoint"):
        train_run(settings, RunSpec("cifar10", "standard", 0), tmp_path / "run" / "model.pt",
                  progress=False)
    assert not (tmp_path / "run" / "model.pt").exists()
    assert not (tmp_path / "run" / "model.pt.state").exists()


def test_early_stopping_waits_patience_epochs(make_settings, tmp_path):
    settings = make_settings("training.lr=0", "training.max_epochs=10", "training.patience=2")
    result = train_run(settings, RunSpec("mnist", "standard", 0), tmp_path / "m.pt",
                       progress=False)
    assert result["epochs"] == 3  # one best epoch, then two without improvement
    assert [m["best"] for m in result["metrics"]] == [True, False, False]


def test_weight_decay_and_batch_size_follow_the_ledger(make_settings):
    settings = make_settings("training.weight_decay_by_beta={'0.5': 0.5}",
                             "training.batch_size_by_dataset={mnist: 32}")
    record = records.run_record(settings, RunSpec("mnist", "cl-fgsm", 0, "embed5", 0.5))
    assert (record["weight_decay"], record["batch_size"]) == (0.5, 32)
    record = records.run_record(settings, RunSpec("cifar10", "cl-fgsm", 0, "embed5", 6))
    assert (record["weight_decay"], record["batch_size"]) == (0.1, 32)


def test_bf16_training_agrees_with_fp32_on_a_tiny_run(make_settings, tmp_path):
    results = {}
    for precision in ("fp32", "bf16"):
        settings = make_settings("training.lr=0.001", f"training.precision={precision}",
                                 "data.datasets.cifar10.subset.train=64", "training.max_epochs=1")
        results[precision] = train_run(settings, RunSpec("cifar10", "at-fgsm", 0),
                                       tmp_path / precision / "model.pt", progress=False)
    fp32, bf16 = (results[p]["metrics"][0] for p in ("fp32", "bf16"))
    # bf16 keeps 8 bits of mantissa: a loss averaged over bf16 logits may be off by a few bf16
    # roundings (8 x 2^-7 = 6%), while fp32 noise is 1e5 times smaller.
    assert bf16["train_loss"] == pytest.approx(fp32["train_loss"], rel=8 * EPSBF16)
    assert bf16["val_loss"] == pytest.approx(fp32["val_loss"], rel=8 * EPSBF16)
    assert results["bf16"]["precision"] == "bf16"


def test_a_rerun_that_fills_the_disk_leaves_the_finished_run_as_it_was(make_settings, tmp_path):
    """A finished run on a disk with room for its files but not for a second run's training
    state (model, best weights and AdamW's moments: about four checkpoints). Before, the rerun
    replaced the finished run's metrics.csv after its first epoch, then died in a 28-line
    traceback (`unexpected pos`) that named neither the file nor the cause."""
    settings = make_settings("training.max_epochs=1", "data.datasets.cifar10.subset.train=32")
    run = RunSpec("cifar10", "standard", 0)
    train_run(settings, run, tmp_path / "done" / "model.pt", progress=False)
    with small_filesystem(tmp_path / "disk", 80) as disk:
        for name in ("model.pt", "metrics.csv"):
            shutil.copy(tmp_path / "done" / name, disk / name)
        finished = {path.name: path.read_bytes() for path in disk.iterdir()}
        changed = make_settings("training.max_epochs=1", "data.datasets.cifar10.subset.train=32",
                                "training.lr=0.001")
        with pytest.raises(OutputUnwritable) as caught:
            train_run(changed, run, disk / "model.pt", progress=False)
        assert str(caught.value).startswith(f"cannot write {disk / 'model.pt.state'}: no space "
                                            f"left on the device (ENOSPC)")
        assert {path.name: path.read_bytes() for path in disk.iterdir()} == finished
