# Aggregation: every table and plot from the eval JSONs (never from checkpoints).
# Seconds of CPU each, so they run on the submit host instead of waiting in a cluster queue.


localrules:
    accuracy_table,
    embedding_table,
    plot,


ACCURACY_TABLES = [n for n, t in grid.tables(config).items() if t.kind == "accuracy"]


def table_caption(wildcards):
    """Short caption for the HTML report; the .md/.tex files carry the full one."""
    table = grid.tables(config)[int(wildcards.table)]
    source = config["data"]["datasets"][table.dataset]["source"] if table.dataset else "model"
    return f"{table.title}. Data source: {source}. Seeds: {list(table.seeds)}."


rule accuracy_table:
    input:
        lambda w: grid.table_inputs(config, int(w.table)),
    output:
        md=RESULTS + "/table{table}.md",
        csv=report(RESULTS + "/table{table}.csv", caption="../report/table.rst",
                   category="Tables", labels={"table": "Table {table}"}),
        tex=RESULTS + "/table{table}.tex",
    params:
        caption=table_caption,
    wildcard_constraints:
        table="|".join(map(str, ACCURACY_TABLES)),
    log:
        LOGS + "/report/table{table}.log",
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule embedding_table:
    output:
        md=RESULTS + f"/table{grid.EMBEDDING_TABLE}.md",
        csv=report(RESULTS + f"/table{grid.EMBEDDING_TABLE}.csv", caption="../report/table3.rst",
                   category="Tables", labels={"table": f"Table {grid.EMBEDDING_TABLE}"}),
        tex=RESULTS + f"/table{grid.EMBEDDING_TABLE}.tex",
    log:
        LOGS + "/report/table3.log",
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule plot:
    input:
        lambda w: grid.table_inputs(config, grid.PLOTS[w.plot]),
    output:
        png=report(RESULTS + "/plots/{plot}.png", caption="../report/plot.rst",
                   category="Plots", labels={"plot": "{plot}"}),
        pdf=RESULTS + "/plots/{plot}.pdf",
    wildcard_constraints:
        plot="|".join(grid.PLOTS),
    log:
        LOGS + "/report/plot-{plot}.log",
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
        tables=[RESULTS + f"/table{n}.csv" for n in ACCURACY_TABLES],
        table_a=os.path.join(RESULTS, "tableA.csv"),
        checks=os.path.join(RESULTS, "checks.csv"),
    output:
        md=RESULTS + "/comparison.md",
        csv=report(RESULTS + "/comparison.csv", caption="../report/comparison.rst",
                   category="Paper against reproduction", labels={"file": "comparison"}),
    params:
        tables=ACCURACY_TABLES,
    log:
        LOGS + "/report/comparison.log",
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule ledger:
    input:
        doc=os.path.join(workflow.basedir, "..", "docs", "fidelity.md"),
        paper=os.path.join(workflow.basedir, "..", "config.yaml"),
        standard=os.path.join(workflow.basedir, "..", "config", "standard.yaml"),
    output:
        md=RESULTS + "/ledger.md",
        csv=report(RESULTS + "/ledger.csv", caption="../report/ledger.rst",
                   category="Paper against reproduction", labels={"file": "ledger"}),
    log:
        LOGS + "/report/ledger.log",
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


def protocol_tables(wildcards):
    """Each protocol's table CSVs (report.protocols: name -> results folder). Another folder's
    tables come from its own Snakemake run, so a missing one is an error saying which run."""
    inputs = {}
    for name, folder in config["report"]["protocols"].items():
        files = [f"{folder}/table{n}.csv" for n in ACCURACY_TABLES]
        missing = [f for f in files if not os.path.exists(f)]
        if os.path.normpath(folder) != os.path.normpath(RESULTS) and missing:
            raise ValueError(
                f"report.protocols: {name} results are missing ({missing[0]}); build that "
                f"protocol's tables first with its own config (e.g. snakemake --cores N "
                f"--configfile config/standard.yaml), then ask for protocols.md again")
        inputs[name] = files
    return inputs


rule protocols:
    input:
        unpack(protocol_tables),
    output:
        md=RESULTS + "/protocols.md",
        csv=RESULTS + "/protocols.csv",
    params:
        tables=ACCURACY_TABLES,
        folders=lambda w: config["report"]["protocols"],
    log:
        LOGS + "/report/protocols.log",
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule provenance:
    input:
        grid.all_eval_inputs(config),
    output:
        report(RESULTS + "/provenance.csv", caption="../report/provenance.rst",
               category="Provenance"),
    log:
        LOGS + "/report/provenance.log",
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)
