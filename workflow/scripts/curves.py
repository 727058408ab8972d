"""One table's training curves from its runs' metrics.csv (repro.report.curves)."""
from repro import data, grid
from repro.config import Settings
from repro.report import curves

from .jobutil import job_log


def main(job):
    with job_log(job):
        table = grid.tables(job.config)[int(job.wildcards.table)]
        metrics = {run: curves.read_metrics(path)
                   for run, path in zip(table.runs(), job.input)}
        source = data.describe_source(Settings.from_config(job.config), table.dataset)
        curves.plot_curves(table, metrics, source, [job.output.png, job.output.pdf])
