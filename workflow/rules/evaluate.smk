# One evaluation job per (trained run, attack): attacks the checkpoint, writes accuracy JSON.


rule evaluate:
    input:
        data=data_marker,
        checkpoint=result("checkpoint"),
    output:
        result("eval"),
    log:
        os.path.join(LOGS, "evaluate/{dataset}/{run}/seed{seed}/{attack}.log"),
    benchmark:
        os.path.join(LOGS, "benchmarks/evaluate/{dataset}/{run}/seed{seed}/{attack}.tsv")
    threads: config["resources"]["evaluate"]["threads"]
    resources:
        **job_resources("evaluate"),
    params:
        record=evaluation_record,
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)
