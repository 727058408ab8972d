"""Job modules of the workflow, one per rule: ``main(job)`` reads the job's files and settings
(the attributes of Snakemake's ``snakemake`` object), calls src/repro and writes the outputs.

Imported as the package ``repro_jobs`` by workflow/rules/common.smk, whose ``run_job`` calls
them; with force-use-threads they run as threads of the Snakemake process.
"""
