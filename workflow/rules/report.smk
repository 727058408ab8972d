# Aggregation: every table and plot from the eval JSONs (never from checkpoints).
# Seconds of CPU each, so they run on the submit host instead of waiting in a cluster queue.


localrules:
    accuracy_table,
    embedding_table,
    plot,
    curves,


rule accuracy_table:
    input:
        lambda w: grid.table_inputs(config, int(w.table)),
    output:
        md=result("table", ext="md"),
        csv=report(
            result("table", ext="csv"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "Table {table}"},
        ),
        tex=result("table", ext="tex"),
    log:
        os.path.join(LOGS, "report/table{table}.log"),
    wildcard_constraints:
        table="|".join(map(str, ACCURACY_TABLES)),
    params:
        caption=table_caption,
        compare_with_paper=config["report"]["compare_with_paper"],
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule embedding_table:
    output:
        md=result("table", table=grid.EMBEDDING_TABLE, ext="md"),
        csv=report(
            result("table", table=grid.EMBEDDING_TABLE, ext="csv"),
            caption="../report/table3.rst",
            category="Tables",
            labels={"table": f"Table {grid.EMBEDDING_TABLE}"},
        ),
        tex=result("table", table=grid.EMBEDDING_TABLE, ext="tex"),
    log:
        os.path.join(LOGS, "report/table3.log"),
    params:
        datasets=list(config["data"]["datasets"]),
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule plot:
    input:
        lambda w: grid.table_inputs(config, grid.PLOTS[w.plot]),
    output:
        png=report(
            result("plot", ext="png"),
            caption="../report/plot.rst",
            category="Plots",
            labels={"plot": "{plot}"},
        ),
        pdf=result("plot", ext="pdf"),
    log:
        os.path.join(LOGS, "report/plot-{plot}.log"),
    wildcard_constraints:
        plot="|".join(grid.PLOTS),
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule curves:
    input:
        lambda w: grid.curve_inputs(config, int(w.table)),
    output:
        png=report(
            result("curves", ext="png"),
            caption="../report/curves.rst",
            category="Training curves",
            labels={"table": "Table {table}"},
        ),
        pdf=result("curves", ext="pdf"),
    log:
        os.path.join(LOGS, "report/curves-table{table}.log"),
    wildcard_constraints:
        table="|".join(map(str, ACCURACY_TABLES)),
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


# ---- paper against reproduction (docs/fidelity.md) ----


localrules:
    comparison,
    ledger,
    provenance,
    protocols,


rule comparison:
    input:
        **AUDIT_REPORTS,
        tables=[result("table", table=n, ext="csv") for n in ACCURACY_TABLES],
    output:
        md=result("summary", name="comparison", ext="md"),
        csv=report(
            result("summary", name="comparison", ext="csv"),
            caption="../report/comparison.rst",
            category="Paper against reproduction",
            labels={"file": "comparison"},
        ),
    log:
        os.path.join(LOGS, "report/comparison.log"),
    params:
        tables=ACCURACY_TABLES,
        datasets=config["data"]["datasets"],
        seeds=config["grid"]["seeds"],
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule ledger:
    input:
        doc=os.path.join(workflow.basedir, "docs", "fidelity.md"),
        paper=os.path.join(workflow.basedir, "config.yaml"),
        standard=os.path.join(workflow.basedir, "config", "standard.yaml"),
    output:
        md=result("summary", name="ledger", ext="md"),
        csv=report(
            result("summary", name="ledger", ext="csv"),
            caption="../report/ledger.rst",
            category="Paper against reproduction",
            labels={"file": "ledger"},
        ),
    log:
        os.path.join(LOGS, "report/ledger.log"),
    params:
        values=LEDGER_VALUES,
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule protocols:
    input:
        unpack(protocol_tables),
    output:
        md=result("summary", name="protocols", ext="md"),
        csv=result("summary", name="protocols", ext="csv"),
    log:
        os.path.join(LOGS, "report/protocols.log"),
    params:
        tables=ACCURACY_TABLES,
        folders=lambda w: config["report"]["protocols"],
        datasets=config["data"]["datasets"],
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule provenance:
    input:
        evals=grid.all_eval_inputs(config),
        lock=os.path.join(workflow.basedir, "requirements.lock"),
    output:
        report(
            result("summary", name="provenance", ext="csv"),
            caption="../report/provenance.rst",
            category="Provenance",
        ),
    log:
        os.path.join(LOGS, "report/provenance.log"),
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)
