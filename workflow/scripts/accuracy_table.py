"""Aggregate one accuracy table (Tables 1, 2, 4-9) from its eval JSONs."""
from repro import grid, report

from .jobutil import job_log


def main(job):
    with job_log(job):
        table = grid.tables(job.config)[int(job.wildcards.table)]
        report.write_accuracy_table(table, report.load_evals(job.input), job.output.md,
                                    job.output.csv, job.output.tex,
                                    job.config["report"]["compare_with_paper"])
