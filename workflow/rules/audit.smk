# Evaluation beyond the paper (docs/audit.md): AutoAttack and the ε curve per main-table
# run, then Table A, the curve plot and the gradient-masking checks. Never touches Tables 1-9.


rule audit_evaluate:
    input:
        data=data_marker,
        checkpoint=result("checkpoint"),
    output:
        result("eval", attack="{audit}"),
    log:
        os.path.join(LOGS, "audit", "{dataset}", "{run}", "seed{seed}", "{audit}.log"),
    benchmark:
        os.path.join(
            LOGS,
            "benchmarks",
            "audit",
            "{dataset}",
            "{run}",
            "seed{seed}",
            "{audit}.tsv",
        )
    wildcard_constraints:
        audit="|".join(grid.AUDITS),
    threads: config["resources"]["audit"]["threads"]
    resources:
        **job_resources("audit"),
    params:
        record=audit_record,
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


localrules:
    audit_table,
    epsilon_plot,
    masking_checks,
    robustbench,


rule audit_table:
    input:
        grid.audit_inputs(config, "autoattack"),
    output:
        md=result("summary", name="tableA", ext="md"),
        csv=report(
            result("summary", name="tableA", ext="csv"),
            caption="../report/tableA.rst",
            category="Audit beyond the paper",
            labels={"file": "Table A"},
        ),
        tex=result("summary", name="tableA", ext="tex"),
    log:
        os.path.join(LOGS, "report", "tableA.log"),
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule epsilon_plot:
    input:
        grid.audit_inputs(config, "epsilon"),
    output:
        png=report(
            result("plot", plot="epsilon", ext="png"),
            caption="../report/epsilon.rst",
            category="Audit beyond the paper",
            labels={"file": "ε curve"},
        ),
        pdf=result("plot", plot="epsilon", ext="pdf"),
    log:
        os.path.join(LOGS, "report", "plot-epsilon.log"),
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule masking_checks:
    input:
        autoattack=grid.audit_inputs(config, "autoattack"),
        epsilon=grid.audit_inputs(config, "epsilon"),
    output:
        md=result("summary", name="checks", ext="md"),
        csv=report(
            result("summary", name="checks", ext="csv"),
            caption="../report/checks.rst",
            category="Audit beyond the paper",
            labels={"file": "masking checks"},
        ),
    log:
        os.path.join(LOGS, "report", "checks.log"),
    params:
        tolerance=config["audit"]["tolerance"],
        near_zero=config["audit"]["near_zero"],
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)


rule robustbench:
    input:
        result("eval", attack="autoattack"),
    output:
        result("robustbench"),
    log:
        os.path.join(LOGS, "report", "robustbench", "{dataset}", "{run}_seed{seed}.log"),
    params:
        pretrained=config["model"]["pretrained"],
    run:
        run_job(rule, input, output, params, wildcards, threads, resources, log)
