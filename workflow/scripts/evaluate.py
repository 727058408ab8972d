"""Attack one checkpoint with one attack and write the accuracy JSON."""
from repro.runs.evaluate import evaluate_run

from .jobutil import evaluation, job_log


def main(job):
    with job_log(job) as log:
        result = evaluation(job, log, job.wildcards.attack, evaluate_run)
        if result is not None:
            log.info("%s: top1 %.2f top3 %.2f top5 %.2f on %d images", result["attack"],
                     result["top1"], result["top3"], result["top5"], result["n"])
