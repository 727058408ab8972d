"""Shared by the job modules: a per-job log file and the job's torch threads.

Jobs run as threads of one Snakemake process, several at a time, so a job must not change
process-wide state that another job uses: no sys.stdout/sys.stderr redirection and no root
logger set-up. Instead each job's records of the ``repro`` logger go to its own log file,
picked out by the job's thread.
"""
import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from repro.runtime import gpus
from repro.cli import run_arguments
from repro.config import RunSpec, Settings

LOGGER = logging.getLogger("repro")
FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


@contextmanager
def job_log(job):
    """Write this thread's ``repro`` log records, the job's timing and any traceback to its log."""
    handler = logging.FileHandler(job.log[0], mode="w")
    handler.setFormatter(logging.Formatter(FORMAT))
    thread = threading.get_ident()
    handler.addFilter(lambda record: record.thread == thread)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False  # job messages belong in job logs, not on the Snakemake console
    LOGGER.addHandler(handler)
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        LOGGER.info("%s %s", job.rule, " ".join(f"{k}={v}" for k, v in job.wildcards.items()))
        yield LOGGER
        # thread_time: this job's own CPU (torch ops run in the calling thread at 1 thread);
        # Snakemake's benchmark file measures the whole process, other jobs included.
        LOGGER.info("done in %.1f s wall, %.1f s CPU (this thread)",
                    time.perf_counter() - wall, time.thread_time() - cpu)
    except BaseException:
        LOGGER.exception("failed")
        raise
    finally:
        LOGGER.removeHandler(handler)
        handler.close()


def use_threads(job) -> None:
    """torch's intra-op threads = the rule's threads. The setting is process-wide: concurrent
    jobs share it, which is harmless while every rule asks for the same number."""
    torch.set_num_threads(job.threads)


def on_own_card(job, log, command: str, run, *arguments: str) -> bool:
    """Run ``python -m repro COMMAND <run> ARGUMENTS`` as a child process on a free GPU slot's
    card when this job may use CUDA in the main Snakemake process (repro.runtime.gpus); False,
    having done nothing, otherwise. The child sees its card alone: ``cuda:N`` becomes ``cuda``."""
    device = job.config["runtime"]["device"]
    if not gpus.own_process(device, job.main_process):
        return False
    device = "cuda" if device.startswith("cuda") else device
    with gpus.pool().card() as card:
        gpus.run_child([command, *run_arguments(run), *arguments, "--device", device],
                       job.config, card, job.threads, log)
    return True


def evaluation(job, log, attack: str, evaluate, command: str = "evaluate"):
    """An evaluation job (an attack's or, with ``command="audit"``, the audit's):
    ``evaluate(settings, run, checkpoint, attack, out)`` in place, returning its result, or the
    CLI's ``evaluate --attack`` (``audit --kind``) as a child on a GPU slot's card, returning
    None (the child logged its result)."""
    run = RunSpec.parse(job.wildcards.dataset, job.wildcards.run, job.wildcards.seed)
    flag = "--kind" if command == "audit" else "--attack"
    if on_own_card(job, log, command, run, "--checkpoint", job.input.checkpoint,
                   flag, attack, "--out", job.output[0]):
        return None
    use_threads(job)
    return evaluate(Settings.from_config(job.config), run, Path(job.input.checkpoint), attack,
                    Path(job.output[0]))
