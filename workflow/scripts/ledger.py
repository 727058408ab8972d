"""The fidelity ledger (docs/fidelity.md) with the values this results folder was built with."""
from pathlib import Path

from repro import report

from repro.report import ledger
from repro.config import load_config
from repro.runtime.io import write_text

from .jobutil import job_log


def main(job):
    with job_log(job):
        header, rows = ledger.render(Path(job.input.doc).read_text(), job.config,
                                     load_config(job.input.paper),
                                     load_config(job.input.paper, job.input.standard))
        title = (f"Fidelity ledger for `{job.config['results']}`: where the paper's code, its "
                 "text and standard practice differ (docs/fidelity.md), with the value each "
                 "switch had in this run")
        write_text(job.output.md, report.to_markdown(header, rows, title))
        write_text(job.output.csv, report.to_csv(header, rows))
