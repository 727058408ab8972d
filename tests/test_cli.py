"""``python -m repro``: the same config checks as the workflow, one-line errors that name the
key or file, and the workflow's thread count, so a run by hand repeats the workflow's numbers."""

import pytest
import torch
import yaml

import repro.data
import repro.runs.train
from repro import cli
from repro.config import load_config

from conftest import BAD_CONFIGS, ROOT
from filesystems import read_only

RUN = ["--dataset", "mnist", "--defense", "standard", "--seed", "0"]


@pytest.fixture(autouse=True)
def _keep_sigterm(monkeypatch):
    """cli.main installs a SIGTERM handler; not in the test process."""
    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)


def _command(tmp_path, command, *extra, overlay=None):
    """``command`` with config.yaml, the smoke preset and ``overlay`` merged over them."""
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay or {}))
    return [command, "--config", str(ROOT / "config.yaml"), "--configfile",
            str(ROOT / "config/smoke.yaml"), "--configfile", str(path), *RUN, *extra]


def _fails(argv) -> list[str]:
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    return str(stopped.value.code).splitlines()


@pytest.mark.parametrize("overrides, key, token", BAD_CONFIGS)
def test_bad_config_stops_the_cli_before_any_work_as_in_the_workflow(tmp_path, overrides, key,
                                                                     token):
    out = tmp_path / "model.pt"
    lines = _fails(_command(tmp_path, "train", "--out", str(out), overlay=overrides))
    assert "invalid config" in lines[0]
    assert lines[1].strip().startswith(f"{key}: ") and token in lines[1]
    assert len(lines) == 2 and not out.parent.joinpath("metrics.csv").exists()


def test_set_values_are_checked_too(tmp_path):
    lines = _fails(_command(tmp_path, "train", "--out", str(tmp_path / "m.pt"), "--set",
                            "protocol.epsilon=-0.5", "--set", "trainig.lr=0.1"))
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["(top level)",
                                                                  "protocol.epsilon"]


def test_numeric_strings_become_numbers(tmp_path):
    """PyYAML reads 1e-3 as a string; the schema wants a number there."""
    args = cli.build_parser().parse_args(_command(
        tmp_path, "train", "--out", "m.pt", "--set", "training.lr=1e-3", "--set",
        "protocol.pgd.steps='7'", overlay={"protocol": {"epsilon": "0.05"}}))
    config = cli._config(args)
    assert (config["training"]["lr"], config["protocol"]["epsilon"]) == (0.001, 0.05)
    assert config["protocol"]["pgd"]["steps"] == 7
    assert isinstance(config["protocol"]["pgd"]["steps"], int)


@pytest.mark.parametrize("key", ["data.root", "results"])
def test_a_folder_key_naming_a_file_is_one_line(tmp_path, key):
    lines = _fails(_command(tmp_path, "train", "--out", str(tmp_path / "m.pt"), "--set",
                            f"{key}={ROOT / 'README.md'}"))
    assert len(lines) == 2 and lines[1].strip().startswith(f"{key}: ")
    assert "is not a folder" in lines[1]


def test_evaluate_names_a_missing_checkpoint_or_a_directory(tmp_path):
    missing = tmp_path / "nowhere" / "model.pt"
    assert _fails(_command(tmp_path, "evaluate", "--checkpoint", str(missing), "--attack",
                           "clean")) == [f"python -m repro evaluate: no such checkpoint: {missing}"]
    [line] = _fails(_command(tmp_path, "evaluate", "--checkpoint", str(tmp_path), "--attack",
                             "clean"))
    assert line == (f"python -m repro evaluate: {tmp_path} is a directory; give the checkpoint "
                    f"file (model.pt) in it")


def test_training_by_hand_uses_the_workflows_thread_count(tmp_path, monkeypatch):
    """The workflow runs a training job with resources.train.threads torch threads (capped by
    --cores); so does the CLI unless --threads says otherwise. Numbers on CPU depend on it."""
    used = []

    def fake_train_run(*args, **kwargs):
        used.append(torch.get_num_threads())
        return {"epochs": 1, "best_val_loss": 1.0, "metrics": [{"val_acc": 10.0}]}

    monkeypatch.setattr(repro.runs.train, "train_run", fake_train_run)
    torch.set_num_threads(2)
    threads = load_config(ROOT / "config.yaml", ROOT / "config/smoke.yaml")["resources"]
    assert threads["train"]["threads"] == 1  # the smoke preset's
    cli.main(_command(tmp_path, "train", "--out", str(tmp_path / "m.pt")))
    cli.main(_command(tmp_path, "train", "--out", str(tmp_path / "m.pt"), "--threads", "3"))
    assert used == [1, 3]


@pytest.mark.parametrize("command, where", [
    ("train", ["--out", "{folder}/runs/model.pt"]),
    ("evaluate", ["--checkpoint", "{tmp}/model.pt", "--attack", "fgsm",
                  "--out", "{folder}/eval/fgsm.json"]),
    ("audit", ["--checkpoint", "{tmp}/model.pt", "--kind", "autoattack",
               "--out", "{folder}/eval/autoattack.json"]),
    ("download", ["--set", "data.root={folder}", "--set",
                  "data.datasets.mnist.source=torchvision"]),
], ids=["train", "evaluate", "audit", "download"])
def test_a_read_only_output_folder_fails_before_any_work(tmp_path, monkeypatch, command, where):
    """Before: `train --out` into a read-only folder trained a whole epoch, then failed."""
    def no_work(*args, **kwargs):
        raise AssertionError("work started although the output cannot be written")
    monkeypatch.setattr(repro.runs.train, "train_run", no_work)
    monkeypatch.setattr(repro.data, "load", no_work)
    with read_only(tmp_path / "ro") as folder:
        extra = [arg.format(folder=folder, tmp=tmp_path) for arg in where]
        argv = _command(tmp_path, command, *extra)
        if command == "download":
            argv = [arg for arg in argv if arg not in RUN] + ["mnist"]
        lines = _fails(argv)
    assert len(lines) == 1 and lines[0].startswith(f"python -m repro {command}: cannot write "
                                                   f"{folder}/"), lines
    assert "read-only" in lines[0] or "permission denied" in lines[0]
