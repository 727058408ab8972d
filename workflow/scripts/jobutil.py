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

import torch

from repro import gpus
from repro.cli import run_arguments

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
    card when this job asks for a GPU (repro.gpus); False, having done nothing, otherwise."""
    if not gpus.own_process(getattr(job.resources, "gpu", 0), job.config["training"]["device"]):
        return False
    with gpus.pool().card() as card:
        gpus.run_child([command, *run_arguments(run), *arguments], job.config, card,
                       job.threads, log)
    return True
