"""Table 3 from the model's embedding taps, with shapes for each configured dataset."""
from repro import grid, report
from repro.models.resnet import embedding_table

from .jobutil import job_log


def main(job):
    with job_log(job):
        rows = {dataset: embedding_table(dataset) for dataset in job.config["data"]["datasets"]}
        report.write_embedding_table(grid.tables(job.config)[grid.EMBEDDING_TABLE], rows,
                                     job.output.md, job.output.csv, job.output.tex)
