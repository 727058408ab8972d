"""Accuracy vs beta (Table 5 runs) or vs layer (Table 4 runs), PNG and PDF."""
from repro import grid, report

from .jobutil import job_log


def main(job):
    with job_log(job):
        table = grid.tables(job.config)[grid.PLOTS[job.wildcards.plot]]
        report.plot_table(table, report.load_evals(job.input), job.wildcards.plot,
                          [job.output.png, job.output.pdf])
