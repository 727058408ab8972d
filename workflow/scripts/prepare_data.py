"""Download/validate one dataset (local rule) and write its ready-marker JSON."""
from repro.config import Settings
from repro.data import prepare
from repro.runtime.io import write_json

from .jobutil import job_log


def main(job):
    with job_log(job) as log:
        ready = prepare(Settings.from_config(job.config), job.wildcards.dataset)
        write_json(job.output[0], ready)
        log.info("%s: %s, sizes %s", ready["dataset"], ready["source"], ready["sizes"])
