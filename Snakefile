# repro: reproduce every table and plot of "Can Contrastive Learning in Embedding Space Improve
# Adversarial Robustness?". `snakemake --cores N` from this folder builds everything
# (config.yaml); config/smoke.yaml runs offline in minutes. The rules live in workflow/rules/;
# profiles/default/ (jobs as threads of one process, rerun-incomplete) applies to every run.
from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/audit.smk"


report: "workflow/report/workflow.rst"


onstart:
    check_writable()
    interrupt.relay_sigterm()
    print(estimate.cost_notice(config), file=sys.stderr)


rule all:
    default_target: True
    input:
        grid.targets(config),
