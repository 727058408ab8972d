"""Tables 1 and 2 and the paper's conclusions under each protocol, beside the paper's numbers."""
from repro import report
from repro.report import compare
from repro.runtime.io import write_text

from .jobutil import job_log


def main(job):
    with job_log(job):
        paper = report.reported_numbers()
        protocols = {name: compare.table_numbers(dict(zip(job.params.tables, job.input[name])))
                     for name in job.params.folders}
        about = ("Results folders: " + ", ".join(f"{name} protocol `{folder}`" for name, folder
                                                 in job.params.folders.items())
                 + f" (each with its `ledger.md`). {compare.data_note(job.config)}")
        frame = compare.side_by_side(paper, protocols)
        write_text(job.output.md, compare.protocols_markdown(paper, protocols, frame, about))
        write_text(job.output.csv, frame.to_csv(index=False, float_format="%.4f",
                                                lineterminator="\n"))
