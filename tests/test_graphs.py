"""CUDA-graph dispatch (repro.runtime.graphs) on CPU: which batches are graphed, the switch, the run
record, and the graphed training and evaluation paths with the capture emulated.

A CPU cannot capture a CUDA graph. ``Emulated`` stands in for ``CudaCapture`` with the same
contract: capture records nothing, and a replay recomputes the step from the static input
buffers only (never from the caller's tensors), so a step that read anything but its inputs,
or a caller that skipped the copy into the buffers, gives other numbers than eager. What it
cannot catch is what only a real capture shows (host syncs inside the step, CPU draws): the
CUDA path itself runs on a GPU only (benchmarks/gpu.sh).
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import yaml

from repro.runs import evaluate as evaluate_module
from repro.runtime import graphs
from repro.runs import train as train_module
from repro.config import RunSpec, Settings, config_errors, load_schema
from repro.records import run_record
from repro.runs.train import train_run

from conftest import ROOT


class Emulated:
    captures = 0

    @staticmethod
    def warmup(fn, inputs):
        return fn(*inputs)

    @classmethod
    def capture(cls, fn, inputs):
        cls.captures += 1
        return lambda: fn(*inputs)


@pytest.fixture
def emulated(monkeypatch):
    """Graphs 'on' on CPU: the pipeline's graph switch says yes, capture is emulated, and
    AdamW is not made capturable (torch allows that on GPUs only)."""
    Emulated.captures = 0
    monkeypatch.setattr(graphs.StepGraph.__init__, "__defaults__", (1, Emulated))  # 1 warm-up
    for module in (train_module, evaluate_module):
        monkeypatch.setattr(module, "graphs_wanted", lambda setting, device: setting == "auto")
    make_optimizer = train_module.make_optimizer
    monkeypatch.setattr(train_module, "make_optimizer",
                        lambda settings, model, run, graphs: make_optimizer(settings, model, run,
                                                                            False))
    return Emulated


def test_auto_means_cuda_only():
    assert graphs.graphs_wanted("auto", "cuda")
    assert graphs.graphs_wanted("auto", torch.device("cuda", 1))
    assert not graphs.graphs_wanted("auto", "cpu")
    assert not graphs.graphs_wanted("off", "cuda")


def test_switch_is_validated_and_reads_a_bare_yaml_off(make_settings):
    config = {"runtime": yaml.safe_load("cuda_graphs: off")}
    assert Settings.from_config(config).runtime.cuda_graphs == "off"
    # not part of the run's identity: a checkpoint is evaluated whatever the switch
    assert "cuda_graphs" not in run_record(make_settings(), RunSpec("mnist", "at-pgd", 0))
    schema = load_schema()  # with the registries filled in
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    for value, ok in (("auto", True), ("off", True), (False, True), ("on", False)):
        base["runtime"]["cuda_graphs"] = value
        errors = [e for e in config_errors(base, schema) if "cuda_graphs" in e]
        assert (not errors) == ok, (value, errors)


def test_full_batches_warm_up_then_replay_and_odd_batches_run_eagerly():
    seen = []

    def step(x, y):
        seen.append(x.clone())
        return x.sum() + y.sum()

    graph = graphs.StepGraph(step, batch_size=4, enabled=True, warmup=2, backend=Emulated)
    Emulated.captures = 0
    batches = [torch.full((4,), float(i)) for i in range(5)] + [torch.ones(3), torch.full((4,), 9.)]
    results = [graph(x, torch.zeros(len(x))).item() for x in batches]
    assert results == [0, 4, 8, 12, 16, 3, 36]  # every batch's own data, graphed or not
    assert dict(graph.calls) == {"warmup": 2, "graph": 4, "eager": 1}
    assert Emulated.captures == 1
    assert seen[-1] is not batches[-1] and seen[-2] is not batches[-1]  # replays read buffers
    off = graphs.StepGraph(step, batch_size=4, enabled=False, backend=Emulated)
    assert [off(x, torch.zeros(len(x))).item() for x in batches[:2]] == [0, 4]
    assert dict(off.calls) == {"eager": 2}


class Uncapturable(Emulated):
    @classmethod
    def capture(cls, fn, inputs):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")


def test_a_failed_capture_runs_that_batch_and_the_rest_eagerly_and_says_so(capsys):
    graph = graphs.StepGraph(lambda x: x.sum(), batch_size=2, enabled=True, warmup=1,
                             backend=Uncapturable)
    assert [graph(torch.full((2,), float(i))).item() for i in range(4)] == [0, 2, 4, 6]
    assert dict(graph.calls) == {"warmup": 1, "eager": 3}
    reason = "RuntimeError: operation not permitted when stream is capturing"
    assert graphs.graphs_record("auto", graph) == {
        "setting": "auto", "used": False, "batches": {"warmup": 1, "eager": 3},
        "capture_failed": reason}
    assert capsys.readouterr().err.count(reason) == 1  # said once, not per batch


def test_a_resumed_optimizer_takes_this_process_s_capturable():
    """A run begun eagerly (or on another device) resumes with graphs, and the reverse."""
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], capturable=False)
    param.grad = torch.ones(3)
    optimizer.step()
    saved = optimizer.state_dict()
    for capturable in (True, False):
        state = train_module.capturable_state(saved, capturable)
        assert [group["capturable"] for group in state["param_groups"]] == [capturable]
        assert state["state"] is saved["state"]
    assert saved["param_groups"][0]["capturable"] is False  # the saved dict is left alone
    resumed = torch.optim.AdamW([param], capturable=False)
    resumed.load_state_dict(train_module.capturable_state(saved, False))
    assert resumed.state_dict()["state"][0]["step"] == saved["state"][0]["step"]


@pytest.mark.parametrize("defense,overrides", [
    ("trades-fgsm", ()),  # its N(0, 1) start is a graph input
    ("at-pgd", ("protocol.attack_space=pixel", "protocol.pgd.random_start=true",
                "protocol.pgd.steps=2")),  # its uniform start too
])
def test_graphed_training_equals_eager(make_settings, tmp_path, emulated, defense, overrides):
    """80 images at batch 32, one epoch: a full batch to warm up, one graphed, and an odd one
    of 16 (eager); same losses, weights and batch-norm
    statistics as with graphs off, to float tolerance (the emulated replay recomputes the
    same kernels, so any difference is a wrong input, not rounding)."""
    common = ("training.lr=0.001", "data.datasets.cifar10.subset.train=80", "training.max_epochs=1",
              "training.shuffle=true", *overrides)
    run = RunSpec("cifar10", defense, 1)
    graphed = train_run(make_settings(*common), run, tmp_path / "g" / "m.pt", progress=False)
    assert emulated.captures == 1
    assert graphed["cuda_graphs"] == {"setting": "auto", "used": True,
                                      "batches": {"warmup": 1, "graph": 1, "eager": 1}}
    eager = train_run(make_settings(*common, "runtime.cuda_graphs=off"), run,
                      tmp_path / "e" / "m.pt", progress=False)
    assert eager["cuda_graphs"]["used"] is False and emulated.captures == 1
    for key in ("train_loss", "val_loss", "train_acc"):
        assert [m[key] for m in graphed["metrics"]] == pytest.approx(
            [m[key] for m in eager["metrics"]], rel=1e-5, abs=1e-6)
    for name, tensor in eager["model"].items():  # weights and running statistics
        torch.testing.assert_close(graphed["model"][name], tensor, rtol=1e-4, atol=1e-6,
                                   msg=name)


def test_graphed_pgd_evaluation_equals_eager(make_settings, tmp_path, emulated):
    """Chunks of 16 over 64 test images: one warm-up, three replays; random starts are drawn
    outside the graph in the same order, so the verdicts equal the eager ones."""
    settings = make_settings("protocol.pgd.random_start=true", "protocol.pgd.steps=2",
                             "evaluation.chunk_size=16", "training.max_epochs=1")
    run = RunSpec("cifar10", "standard", 0)
    checkpoint = tmp_path / "m.pt"
    train_run(settings, run, checkpoint, progress=False)
    graphed = evaluate_module.evaluate_run(settings, run, checkpoint, "pgd")
    assert graphed["cuda_graphs"]["batches"] == {"warmup": 1, "graph": 3}
    off = replace(settings, runtime=replace(settings.runtime, cuda_graphs="off"))
    eager = evaluate_module.evaluate_run(off, run, checkpoint, "pgd")
    assert eager["cuda_graphs"] == {"setting": "off", "used": False, "batches": {"eager": 4}}
    assert graphed["top1"] == eager["top1"] and graphed["top5"] == eager["top5"]
    model = torch.nn.Identity()
    assert [evaluate_module.attack_chunk(settings, model, attack, "cpu").enabled
            for attack in ("clean", "fgsm", "pgd", "deepfool")] == [False, True, True, False]


def test_the_gpu_run_s_check_passes_correct_graphs_and_fails_stale_ones(emulated, monkeypatch):
    """benchmarks/cuda_check.py (gpu.sh's first stage) through the emulated capture: graphed
    and eager training and evaluation agree; a graph whose replays return the captured
    batch's outputs (as an empty or mis-fed graph would) is caught."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cuda_check",
                                                  ROOT / "benchmarks" / "cuda_check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    config = check.apply_overrides(check.load_config(ROOT / "config.yaml"), [
        "model.pretrained=none", "protocol.pgd.steps=2", "protocol.trades_pgd.steps=2"])
    device, batch = torch.device("cpu"), 4
    split = check._benchmark("train").synthetic_split(
        (graphs.WARMUP + 3) * batch + batch // 2, 32, device)
    assert check.check_training(config, split, batch, device)
    assert check.check_evaluation(config, split, batch, device)

    class Stale(Emulated):
        @classmethod
        def capture(cls, fn, inputs):
            outputs = fn(*inputs)
            return lambda: outputs
    monkeypatch.setattr(graphs.StepGraph.__init__, "__defaults__", (1, Stale))
    assert not check.check_evaluation(config, split, batch, device)
