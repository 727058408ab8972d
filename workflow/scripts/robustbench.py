"""One audited model as a RobustBench model_info JSON (repro.report.robustbench)."""
from repro import report
from repro.report import robustbench

from .jobutil import job_log


def main(job):
    with job_log(job):
        (audit,) = report.load_evals(job.input)
        robustbench.write(audit, report.reported(), job.params.pretrained, job.output[0])
