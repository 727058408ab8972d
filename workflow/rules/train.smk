# One training job per (dataset, run, seed); `run` is RunSpec.name (defense[-layer-beta]).


rule train:
    input:
        data=data_marker,
    output:
        checkpoint=result("checkpoint"),
        metrics=result("metrics"),
    log:
        os.path.join(LOGS, "train/{dataset}/{run}/seed{seed}.log"),
    benchmark:
        os.path.join(LOGS, "benchmarks/train/{dataset}/{run}/seed{seed}.tsv")
    threads: config["resources"]["train"]["threads"]
    resources:
        **job_resources("train"),
    params:
        record=train_record,
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)
