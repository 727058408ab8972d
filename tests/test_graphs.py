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
from repro.config import RunSpec, Settings, config_errors, load_config, load_schema
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
    monkeypatch.setattr(graphs.StepGraph.__init__, "__defaults__",
                        (1, Emulated, None))  # 1 warm-up
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
    assert dict(graph.calls) == {"warmup": 2, "captured": 1, "graph": 3, "eager": 1}
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
    """112 images at batch 32, one epoch: a full batch to warm up, one captured (run eagerly),
    one replayed and checked, and an odd one of 16 (eager); same losses, weights and batch-norm
    statistics as with graphs off, to float tolerance (the emulated replay recomputes the
    same kernels, so any difference is a wrong input, not rounding)."""
    common = ("training.lr=0.001", "data.datasets.cifar10.subset.train=112",
              "training.max_epochs=1", "training.shuffle=true", *overrides)
    run = RunSpec("cifar10", defense, 1)
    graphed = train_run(make_settings(*common), run, tmp_path / "g" / "m.pt", progress=False)
    assert emulated.captures == 1
    record = graphed["cuda_graphs"]
    assert {k: record[k] for k in ("setting", "used", "batches", "self_check")} == {
        "setting": "auto", "used": True, "self_check": "passed",
        "batches": {"warmup": 1, "captured": 1, "graph": 1, "self_check": 1, "eager": 1}}
    assert record["self_check_difference"] == 0  # the emulated replay is the eager step
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
    """Chunks of 16 over 64 test images: one warm-up, one captured, two replays (the first
    checked against the eager chunk); random starts are drawn
    outside the graph in the same order, so the verdicts equal the eager ones."""
    settings = make_settings("protocol.pgd.random_start=true", "protocol.pgd.steps=2",
                             "evaluation.chunk_size=16", "training.max_epochs=1")
    run = RunSpec("cifar10", "standard", 0)
    checkpoint = tmp_path / "m.pt"
    train_run(settings, run, checkpoint, progress=False)
    graphed = evaluate_module.evaluate_run(settings, run, checkpoint, "pgd")
    assert graphed["cuda_graphs"]["batches"] == {"warmup": 1, "captured": 1, "graph": 2,
                                                 "self_check": 1}
    assert graphed["cuda_graphs"]["self_check"] == "passed"
    off = replace(settings, runtime=replace(settings.runtime, cuda_graphs="off"))
    eager = evaluate_module.evaluate_run(off, run, checkpoint, "pgd")
    assert eager["cuda_graphs"] == {"setting": "off", "used": False, "batches": {"eager": 4}}
    assert graphed["top1"] == eager["top1"] and graphed["top5"] == eager["top5"]
    model = torch.nn.Identity()
    assert [evaluate_module.attack_chunk(settings, model, attack, "cpu").enabled
            for attack in ("clean", "fgsm", "pgd", "deepfool")] == [False, True, True, False]


def test_the_gpu_run_s_check_passes_correct_graphs_and_fails_stale_ones(emulated, monkeypatch):
    """repro.runtime.cuda_checks (gpu.sh's first stage, and calibrate's on CUDA) through the
    emulated capture: graphed and eager training and evaluation agree and the graphs' self-check
    passed; a graph whose replays return the captured batch's outputs (as an empty or mis-fed
    graph would) is caught, though the self-check made the job's numbers right."""
    from repro.runtime import cuda_checks

    config = cuda_checks.apply_overrides(load_config(ROOT / "config.yaml"), [
        "model.pretrained=none", "protocol.pgd.steps=2", "protocol.trades_pgd.steps=2"])
    device, batch = torch.device("cpu"), 4
    split = cuda_checks.check_split(batch, device)
    lines = []
    assert cuda_checks.check_training(config, split, batch, device, lines.append,
                                      defenses=("standard", "trades-pgd"))
    assert cuda_checks.check_evaluation(config, split, batch, device, lines.append)
    assert lines == [f"{name:<34}ok" for name in ("training standard", "training trades-pgd",
                                                  "evaluation fgsm", "evaluation pgd")]

    class Stale(Emulated):
        @classmethod
        def capture(cls, fn, inputs):
            outputs = fn(*inputs)
            return lambda: outputs
    monkeypatch.setattr(graphs.StepGraph.__init__, "__defaults__", (1, Stale, None))
    lines.clear()
    assert not cuda_checks.check_evaluation(config, split, batch, device, lines.append)
    assert all("self-check failed" in line for line in lines)


# --- the self-check of the first replay (repro.runtime.selfcheck) --------------------------

class Stale(Emulated):
    """A graph that replays the batch it recorded, not its buffers' current contents (what a
    graph does that reads inputs the caller never copied into its buffers)."""
    @classmethod
    def capture(cls, fn, inputs):
        cls.captures += 1
        recorded = [tensor.clone() for tensor in inputs]
        return lambda: fn(*recorded)


class Empty(Emulated):
    """A graph that replays nothing (captured on another card's stream): its outputs keep
    whatever they held, here the last warm-up step's, and the state does not move."""
    @classmethod
    def warmup(cls, fn, inputs):
        cls.last = fn(*inputs)
        return cls.last

    @classmethod
    def capture(cls, fn, inputs):
        cls.captures += 1
        return lambda: cls.last


def toy_step(weight):
    """A step with state (``weight``) and a draw from the global CPU stream."""
    def step(x):
        weight.mul_(0.5).add_(x.mean() + torch.rand(()))
        return weight.sum().clone(), x * weight[0]
    return step


def run_toy(backend, check: bool, nudge: float = 0.0):
    """Six full batches and an odd one through a toy step graphed with ``backend``."""
    torch.manual_seed(0)
    weight = torch.zeros(3)
    step = toy_step(weight)
    if nudge:  # a replay that differs from the eager step by rounding: it must be kept
        replay_of = backend.capture

        class Nudged(backend):
            @classmethod
            def capture(cls, fn, inputs):
                replay = replay_of(fn, inputs)
                return lambda: (replay(), weight.add_(nudge))[0]
        backend = Nudged
    checker = graphs.selfcheck.Check(lambda: {"weight": weight}, ("sum", "scaled"),
                                     lambda inputs: 1e-3) if check else None
    graph = graphs.StepGraph(step, batch_size=4, enabled=True, warmup=1, backend=backend,
                             check=checker)
    batches = [torch.arange(4.) * i for i in range(6)] + [torch.ones(2)]
    outputs = [[t.clone() for t in graph(x)] for x in batches]
    return outputs, weight, torch.rand(()), graph


def test_a_passing_self_check_changes_nothing_the_run_computes():
    """Same outputs, same state and the same next random draw as without the check, and the
    replay's result (not the eager step's) is what goes on, even where they differ by rounding."""
    for nudge in (0.0, 1e-6):
        plain = run_toy(Emulated, check=False, nudge=nudge)
        checked = run_toy(Emulated, check=True, nudge=nudge)
        for a, b in zip(plain[0], checked[0]):
            assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert torch.equal(plain[1], checked[1]) and torch.equal(plain[2], checked[2])
        graph = checked[3]
        assert dict(graph.calls) == {"warmup": 1, "captured": 1, "graph": 4, "self_check": 1,
                                     "eager": 1}
        assert graph.checked["self_check"] == "passed" and graph.enabled
        assert 0 < graph.checked["self_check_difference"] < 1e-3 if nudge else \
            graph.checked["self_check_difference"] == 0


@pytest.mark.parametrize("backend", [Stale, Empty])
def test_a_stale_or_empty_graph_is_caught_on_its_first_replay(backend, capsys):
    """The job goes on eagerly from the eager step: the run equals an eager one."""
    torch.manual_seed(0)  # the reference: the same toy with graphs off
    weight = torch.zeros(3)
    off = graphs.StepGraph(toy_step(weight), batch_size=4, enabled=False)
    eager = [[t.clone() for t in off(x)] for x in
             [torch.arange(4.) * i for i in range(6)] + [torch.ones(2)]], weight, torch.rand(())
    outputs, state, draw, graph = run_toy(backend, check=True)
    for a, b in zip(eager[0], outputs):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(eager[1], state) and torch.equal(eager[2], draw)
    record = graphs.graphs_record("auto", graph)
    assert record["self_check"] == "failed" and record["used"] is False
    assert record["self_check_difference"] > 1e-3 and record["self_check_tolerance"] == 1e-3
    assert record["batches"] == {"warmup": 1, "captured": 1, "self_check": 1, "eager": 5}
    assert capsys.readouterr().err.count("CUDA graph self-check failed") == 1


def test_the_tolerance_counts_the_longest_sum_of_the_step():
    from repro.runtime import selfcheck

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 2))
    assert selfcheck.longest_sum(model, (16, 3, 32, 32), training=False) == 27  # 3 x 3 x 3
    assert selfcheck.longest_sum(model, (16, 3, 32, 32), training=True) == 16 * 32 * 32
    fp32 = selfcheck.tolerance(1000)
    assert fp32 == pytest.approx(1001 * selfcheck.EPS32)
    assert selfcheck.tolerance(1000, "bf16") > fp32 + selfcheck.EPSBF16 / 2


@pytest.mark.parametrize("backend", [Stale, Empty])
def test_a_wrong_training_graph_is_caught_and_the_run_equals_an_eager_one(
        make_settings, tmp_path, emulated, monkeypatch, backend, capsys):
    """Training through the emulated capture with a stale or empty graph: the checkpoint
    says ``self_check: failed`` and holds the weights, statistics and metrics of graphs off."""
    monkeypatch.setattr(graphs.StepGraph.__init__, "__defaults__", (1, backend, None))
    common = ("training.lr=0.001", "data.datasets.cifar10.subset.train=144",
              "training.max_epochs=1", "training.shuffle=true")
    run = RunSpec("cifar10", "at-fgsm", 1)
    graphed = train_run(make_settings(*common), run, tmp_path / "g" / "m.pt", progress=False)
    eager = train_run(make_settings(*common, "runtime.cuda_graphs=off"), run,
                      tmp_path / "e" / "m.pt", progress=False)
    record = graphed["cuda_graphs"]
    assert record["self_check"] == "failed" and record["used"] is False
    assert record["self_check_difference"] > 100 * record["self_check_tolerance"]
    assert record["batches"] == {"warmup": 1, "captured": 1, "self_check": 1, "eager": 3}
    assert graphed["metrics"] == [{**m, "seconds": g["seconds"]}
                                  for m, g in zip(eager["metrics"], graphed["metrics"])]
    for name, tensor in eager["model"].items():
        assert torch.equal(graphed["model"][name], tensor), name
    assert "CUDA graph self-check failed" in capsys.readouterr().err


def test_a_stale_evaluation_graph_is_caught_and_the_json_equals_an_eager_one(
        make_settings, tmp_path, emulated, monkeypatch):
    settings = make_settings("protocol.pgd.random_start=true", "protocol.pgd.steps=2",
                             "evaluation.chunk_size=16", "training.max_epochs=1")
    run = RunSpec("cifar10", "standard", 0)
    checkpoint = tmp_path / "m.pt"
    train_run(settings, run, checkpoint, progress=False)
    monkeypatch.setattr(graphs.StepGraph.__init__, "__defaults__", (1, Stale, None))
    out = tmp_path / "pgd.json"
    graphed = evaluate_module.evaluate_run(settings, run, checkpoint, "pgd", out)
    off = replace(settings, runtime=replace(settings.runtime, cuda_graphs="off"))
    eager = evaluate_module.evaluate_run(off, run, checkpoint, "pgd")
    assert [graphed[k] for k in ("top1", "top3", "top5")] == [eager[k] for k in
                                                              ("top1", "top3", "top5")]
    assert '"self_check": "failed"' in out.read_text()
    assert graphed["cuda_graphs"]["batches"] == {"warmup": 1, "captured": 1, "self_check": 1,
                                                 "eager": 2}
