"""GPU slots of a local run (repro.runtime.gpus), with pretend cards: which card each concurrent job
gets, when a job runs as its own process, and the child command itself (on CPU)."""
from __future__ import annotations

import threading

import pytest

from repro.runtime import gpus
from repro.cli import _run, build_parser, run_arguments
from repro.config import RunSpec


def test_visible_cards_follow_the_parent_s_restriction_or_the_device_count():
    assert gpus.visible_cards({"CUDA_VISIBLE_DEVICES": "2,3"}, device_count=8) == ["2", "3"]
    assert gpus.visible_cards({"CUDA_VISIBLE_DEVICES": ""}, device_count=8) == []
    assert gpus.visible_cards({}, device_count=2) == ["0", "1"]
    assert gpus.visible_cards({}, device_count=0) == []


def test_concurrent_jobs_spread_over_the_cards_and_slots_are_reused():
    pool = gpus.SlotPool(["0", "1"])
    held, release = [], threading.Event()
    started = threading.Barrier(9)

    def job():
        with pool.card() as card:
            held.append(card)
            started.wait()
            release.wait()

    threads = [threading.Thread(target=job) for _ in range(8)]
    for thread in threads:
        thread.start()
    started.wait()
    assert sorted(held) == ["0"] * 4 + ["1"] * 4  # 8 slots on 2 cards: 4 jobs per card
    release.set()
    for thread in threads:
        thread.join()
    assert pool.taken == set()
    with pool.card() as first, pool.card() as second:
        with pool.card() as third:
            assert (first, second, third) == ("0", "1", "0")
        with pool.card() as again:  # slot 2 is free again: card 0
            assert again == "0"


@pytest.mark.parametrize("device,main_process,cards,expected", [
    ("auto", True, ["0"], True),
    ("cuda", True, ["0", "1"], True),
    ("cuda:1", True, ["0", "1"], True),  # the child sees its card alone, as cuda
    ("cpu", True, ["0"], False),         # runtime.device: cpu (the smoke preset)
    ("auto", True, [], False),           # no card visible: a CPU machine
    ("auto", False, ["0"], False),       # a cluster job's own Snakemake: its card is its own
])
def test_a_job_gets_its_own_process_when_it_may_use_cuda_in_the_main_process(
        device, main_process, cards, expected):
    """Whatever `gpu` it asks: CUDA jobs as threads of one process would share the interpreter
    lock and PyTorch's one graph-capture stream."""
    assert gpus.own_process(device, main_process, cards) is expected


def test_visible_cards_are_stripped():
    assert gpus.visible_cards({"CUDA_VISIBLE_DEVICES": "0, 1"}) == ["0", "1"]


@pytest.mark.parametrize("run", [RunSpec("mnist", "at-pgd", 2),
                                 RunSpec("cifar10", "cl-fgsm", 0, "embed3", 1e-05),
                                 RunSpec("cifar10", "cl-pgd", 1, "output", 1.5)])
def test_run_arguments_name_the_same_run(run):
    args = build_parser().parse_args(["train", *run_arguments(run), "--out", "m.pt"])
    assert _run(args) == run


class Log:
    def __init__(self):
        self.lines = []

    def info(self, message, *args):
        self.lines.append(message % args)


def test_child_runs_the_cli_on_its_card_and_reports_failure(paper_config):
    log = Log()
    gpus.run_child(["estimate", "--device", "cpu", "--images-per-second", "100"], paper_config,
                   "3", 1, log)
    assert log.lines[0].startswith("on CUDA_VISIBLE_DEVICES=3: ")
    assert "training jobs" in log.lines[-1]
    with pytest.raises(RuntimeError, match=r"(?s)estimate on card 3 failed .*invalid int"):
        gpus.run_child(["estimate", "--epochs", "many"], paper_config, "3", 1, Log())
    # the child's one-line error stays one line (a full disk, say), naming the card
    unwritable = {**paper_config, "data": {**paper_config["data"], "root": "/proc/repro"}}
    with pytest.raises(gpus.ChildError) as caught:
        gpus.run_child(["download", "mnist"], unwritable, "3", 1, Log())
    assert str(caught.value).startswith("python -m repro download: cannot write /proc/repro/")
    assert str(caught.value).endswith("(on card 3)") and "\n" not in str(caught.value)
