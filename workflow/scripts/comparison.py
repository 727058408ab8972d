"""Every cell of the paper beside ours, with verdicts and the paper's conclusions as checks;
then the audit: the robustness claims under AutoAttack and the gradient-masking checks."""
import csv

from repro import report

from repro.report import compare

from repro.report import masking
from repro.runtime.io import write_text

from .jobutil import job_log


def main(job):
    with job_log(job):
        paper = report.reported_numbers()
        ours = compare.table_numbers(dict(zip(job.params.tables, job.input.tables)))
        # the cells of the selected tables (grid.tables); the claims still see all the paper's
        cells = compare.compare(paper[paper.table.isin(job.params.tables)], ours)
        about = (f"Ours: `{job.config['results']}`, seeds {job.config['grid']['seeds']}. "
                 f"{compare.data_note(job.config)} The "
                 "protocol values of this run are in `ledger.md` beside this file.")
        claims = compare.claims_grid({"paper's numbers": compare.Numbers(paper),
                                      "ours": compare.Numbers(ours)})
        audit = ""
        if "checks" in job.input.keys():  # no audit without Table 1 or 2 (grid.audit_tables)
            with open(job.input.checks) as handle:
                checks = masking.summary(list(csv.DictReader(handle)))
            audit = compare.audit_markdown(compare.table_a_numbers(job.input.table_a), checks)
        write_text(job.output.md, compare.comparison_markdown(cells, claims, about) + "\n" + audit)
        write_text(job.output.csv, compare.comparison_csv(cells))
