"""What made every evaluation of this results folder, one CSV row each."""
from repro import report
from repro.runtime import lock
from repro.runtime.io import write_text

from .jobutil import job_log


def main(job):
    with job_log(job):
        evals = report.load_evals(job.input.evals)
        write_text(job.output[0], report.provenance_csv(evals, lock.read_lock(job.input.lock)))
