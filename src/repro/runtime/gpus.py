"""Several GPU jobs at once on one workstation: each in its own process, on its own card.

One run at batch 128 keeps a fraction of an H100 busy (four eager at-pgd processes sharing
one card did 3.4x the images/s of one; H100, 2026-11-26), but jobs that are
threads of the Snakemake process (the default profile's force-use-threads) share one
interpreter lock, which launch-bound work cannot afford, and every one of them asked for
``cuda`` and landed on card 0.

So, locally, a job that may use CUDA runs ``python -m repro`` as a child process whose
``CUDA_VISIBLE_DEVICES`` is the card of a free slot. The local profile's
``resources: gpu: N`` is the number of slots, hence of GPU jobs at once; slot i gets card
i mod (cards visible), so N = 4 on a one-GPU machine runs four jobs on it and N = 4 on a
two-GPU one runs two on each. A job asking ``gpu: 0`` runs so too, on a slot that Snakemake
does not count: a CUDA-graph
capture in one thread fails when another thread of the process allocates GPU memory meanwhile.
A cluster job is already a process of its own on its own card (its Snakemake is not the main
process): it runs in place, as does every job when the default profile's force-use-threads is
overridden (each is then a Snakemake subprocess, on the first visible card). ``cuda:N`` names a
card for jobs run in place and by hand; a local run spreads its children over the visible
cards instead (restrict those with ``CUDA_VISIBLE_DEVICES``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

from repro.errors import UserError


def visible_cards(environ: Mapping[str, str] = os.environ,
                  device_count: int | None = None) -> list[str]:
    """The cards this process may hand out: the entries of ``CUDA_VISIBLE_DEVICES`` when set
    (a child sees only what its parent may), else 0 .. device_count - 1."""
    if environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [card.strip() for card in environ["CUDA_VISIBLE_DEVICES"].split(",")
                if card.strip()]
    count = torch.cuda.device_count() if device_count is None else device_count
    return [str(index) for index in range(count)]


class SlotPool:
    """Slots handed to concurrent jobs: the lowest free one, returned when the job ends."""

    def __init__(self, cards: list[str]):
        self.cards = cards
        self.taken: set[int] = set()
        self.lock = threading.Lock()

    @contextmanager
    def card(self) -> Iterator[str]:
        """The ``CUDA_VISIBLE_DEVICES`` value of a free slot, for the duration of a job."""
        with self.lock:
            slot = next(i for i in range(len(self.taken) + 1) if i not in self.taken)
            self.taken.add(slot)
        try:
            yield self.cards[slot % len(self.cards)]
        finally:
            with self.lock:
                self.taken.discard(slot)


_POOL: SlotPool | None = None
_POOL_LOCK = threading.Lock()


def pool() -> SlotPool:
    """This process's pool over its visible cards, made on first use (by one job thread)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = SlotPool(visible_cards())
        return _POOL


def own_process(device: str, main_process: bool, cards: list[str] | None = None) -> bool:
    """Whether a job runs as a child process on a slot's card: its ``runtime.device`` may be
    CUDA, a card is visible, and it runs in the Snakemake process the user started (not in a
    cluster job's own Snakemake, which already has a card to itself)."""
    if device == "cpu" or not main_process:
        return False
    return bool(visible_cards() if cards is None else cards)


def run_child(arguments: list[str], config: dict, card: str, threads: int, log) -> None:
    """``python -m repro ARGUMENTS --config <config as YAML>`` on ``card``
    (``CUDA_VISIBLE_DEVICES``) with ``threads`` CPU threads; its output goes to ``log``, and
    a failure raises with its last lines."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(config, handle)
    try:
        command = [sys.executable, "-m", "repro", *arguments, "--config", handle.name]
        log.info("on CUDA_VISIBLE_DEVICES=%s: %s", card, " ".join(command))
        # the child imports this very repro (the workflow's checkout, installed or not)
        here = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": card, "OMP_NUM_THREADS": str(threads),
               "PYTHONPATH": path}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
    finally:
        os.unlink(handle.name)
    output = (done.stdout + done.stderr).strip()
    if output:
        log.info("%s", output)
    if done.returncode:
        last = output.splitlines()[-1] if output else ""
        if done.returncode == 1 and last.startswith(f"python -m repro {arguments[0]}: "):
            # the child's one-line error (cli.main's UserError: a full disk, damaged data...;
            # argparse's exit 2) is the whole story, as it would be in place
            raise ChildError(f"{last} (on card {card})")
        raise RuntimeError(f"python -m repro {arguments[0]} on card {card} failed "
                           f"(exit {done.returncode}):\n{output[-2000:]}")


class ChildError(UserError, RuntimeError):
    """A child ``python -m repro`` ended with its one-line error (see repro.errors)."""
