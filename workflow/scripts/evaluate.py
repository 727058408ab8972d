"""Attack one checkpoint with one attack and write the accuracy JSON."""
from pathlib import Path

from repro.config import RunSpec, Settings
from repro.evaluate import evaluate_run

from .jobutil import job_log, on_own_card, use_threads


def main(job):
    with job_log(job) as log:
        run = RunSpec.parse(job.wildcards.dataset, job.wildcards.run, job.wildcards.seed)
        if on_own_card(job, log, "evaluate", run, "--checkpoint", job.input.checkpoint,
                       "--attack", job.wildcards.attack, "--out", job.output[0]):
            return
        use_threads(job)
        result = evaluate_run(Settings.from_config(job.config), run, Path(job.input.checkpoint),
                              job.wildcards.attack, Path(job.output[0]))
        log.info("%s: top1 %.2f top3 %.2f top5 %.2f on %d images", result["attack"],
                 result["top1"], result["top3"], result["top5"], result["n"])
