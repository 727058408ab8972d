# One download/preparation job per dataset. Local (never submitted), so cluster nodes need no
# internet: the head node fetches, compute nodes read from data.root.


localrules:
    prepare_data,


rule prepare_data:
    output:
        grid.path_pattern("data_marker", DATA_ROOT),
    log:
        os.path.join(LOGS, "data/{dataset}-{source}.log"),
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)
