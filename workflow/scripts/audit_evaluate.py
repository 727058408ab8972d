"""AutoAttack or the ε curve on one checkpoint (repro.runs.audit), written as its JSON."""
from repro.runs.audit import evaluate_audit

from .jobutil import evaluation, job_log


def main(job):
    with job_log(job) as log:
        result = evaluation(job, log, job.wildcards.audit, evaluate_audit, "audit")
        if result is None:
            return
        if job.wildcards.audit == "epsilon":
            log.info("PGD top1 %s at eps x255 = %s on %d images", result["top1_by_epsilon"],
                     result["epsilons_255"], result["n"])
        else:
            log.info("top1 clean %.2f, PGD %.2f, AutoAttack %.2f on %d images",
                     result["clean_top1"], result["pgd_top1"], result["autoattack_top1"],
                     result["n"])
