"""PGD top-1 against ε for the main-table models of each dataset, PNG and PDF."""
from repro import grid, report

from repro.report import audit_report

from .jobutil import job_log


def main(job):
    with job_log(job):
        tables = grid.audit_tables(job.config)
        audit_report.plot_epsilon(tables, report.load_evals(job.input),
                                  [job.output.png, job.output.pdf])
