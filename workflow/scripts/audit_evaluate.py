"""AutoAttack or the ε curve on one checkpoint (repro.audit), written as its JSON."""
from pathlib import Path

from repro.audit import evaluate_audit
from repro.config import RunSpec, Settings

from .jobutil import job_log, use_threads


def main(job):
    with job_log(job) as log:
        use_threads(job)
        run = RunSpec.parse(job.wildcards.dataset, job.wildcards.run, job.wildcards.seed)
        result = evaluate_audit(Settings.from_config(job.config), run,
                                Path(job.input.checkpoint), job.wildcards.audit,
                                Path(job.output[0]))
        if job.wildcards.audit == "epsilon":
            log.info("PGD top1 %s at eps x255 = %s on %d images", result["top1_by_epsilon"],
                     result["epsilons_255"], result["n"])
        else:
            log.info("top1 clean %.2f, PGD %.2f, AutoAttack %.2f on %d images",
                     result["clean_top1"], result["pgd_top1"], result["autoattack_top1"],
                     result["n"])
