"""Gradient-masking checks of every main-table model (repro.report.masking)."""
from repro import report
from repro.report import masking
from repro.runtime.io import write_text

from .jobutil import job_log


def main(job):
    with job_log(job):
        rows = masking.run_checks(report.load_evals(job.input.autoattack),
                                  report.load_evals(job.input.epsilon), job.params.tolerance,
                                  job.params.near_zero)
        about = (f"Per model of Tables 1 and 2, on the audit's first "
                 f"{job.config['audit']['n_images']} test images, at the tables' threat model; "
                 f"tolerance {job.params.tolerance:g} percentage points, near zero "
                 f"{job.params.near_zero:g}%. Numbers: `tableA.md` and `plots/epsilon.png`.")
        write_text(job.output.md, masking.checks_markdown(rows, about))
        write_text(job.output.csv, masking.checks_csv(rows))
