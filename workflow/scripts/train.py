"""Train one run (dataset, defense, layer, beta, seed) into its checkpoint."""
from pathlib import Path

from repro.config import RunSpec, Settings
from repro.runs.train import train_run

from .jobutil import job_log, on_own_card, use_threads


def main(job):
    with job_log(job) as log:
        run = RunSpec.parse(job.wildcards.dataset, job.wildcards.run, job.wildcards.seed)
        if on_own_card(job, log, "train", run, "--out", job.output.checkpoint, "--no-progress"):
            return
        use_threads(job)
        # No progress bars: the console is shared by all jobs of the process.
        result = train_run(Settings.from_config(job.config), run, Path(job.output.checkpoint),
                           progress=False)
        for epoch in result["metrics"]:
            log.info("epoch %s", epoch)
        log.info("best val loss %.4f after %d epochs", result["best_val_loss"], result["epochs"])
