# One evaluation job per (trained run, attack): attacks the checkpoint, writes accuracy JSON.


rule evaluate:
    input:
        data=data_marker,
        checkpoint=RUN_DIR + "/model.pt",
    output:
        RUN_DIR + "/eval/{attack}.json",
    log:
        LOGS + "/evaluate/{dataset}/{run}/seed{seed}/{attack}.log",
    benchmark:
        LOGS + "/benchmarks/evaluate/{dataset}/{run}/seed{seed}/{attack}.tsv"
    threads: config["resources"]["evaluate"]["threads"]
    resources:
        **job_resources("evaluate"),
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)
