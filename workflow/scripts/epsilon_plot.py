"""PGD top-1 against ε for the main-table models of each dataset, PNG and PDF."""
from repro import audit_report, grid, report

from .jobutil import job_log


def main(job):
    with job_log(job):
        tables = [grid.tables(job.config)[n] for n in grid.AUDIT_TABLES]
        audit_report.plot_epsilon(tables, report.load_evals(job.input),
                                  [job.output.png, job.output.pdf])
