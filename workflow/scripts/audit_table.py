"""Table A: clean, PGD and AutoAttack top-1 of the main-table models (repro.report.audit_report)."""
from repro import grid, report

from repro.report import audit_report

from .jobutil import job_log


def main(job):
    with job_log(job):
        tables = grid.audit_tables(job.config)
        audit_report.write_table_a(tables, report.load_evals(job.input), job.output.md,
                                   job.output.csv, job.output.tex)
