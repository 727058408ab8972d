# Shared by all rules: config validation, the grid, wildcard constraints, input functions, and
# the one way a rule runs its job (run_job).
import importlib
import importlib.util
import os
import sys
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError

# The library lives in src/: import this checkout's copy, installed or not. Jobs run in this
# process (`run:`), and a cluster job's own Snakemake parses this file again, so that is enough.
sys.path.insert(0, os.path.join(workflow.basedir, "src"))

from repro import grid, records  # noqa: E402  (needs the path above)

from repro.cost import estimate  # noqa: E402  (needs the path above)

from repro.runtime import interrupt  # noqa: E402  (needs the path above)
import repro.config  # noqa: E402
from repro.errors import UserError  # noqa: E402
from repro.config import RunSpec, Settings  # noqa: E402


def validate_config():
    """Fail before any job starts, one line per problem, each starting with the key.
    In place, numeric strings become numbers and the schema's defaults fill in."""
    try:
        repro.config.validate_config(config)
        grid.selected(config)  # which tables exist depends on the plugins the config names
    except UserError as error:
        raise WorkflowError(str(error))


validate_config()

SETTINGS = Settings.from_config(config)
RESULTS = config["results"]
DATA_ROOT = config["data"]["root"]
# Logs (and per-job wall/CPU/memory benchmarks, to size cluster resources) live under the
# results folder, so smoke, test and real runs never share a file. On a cluster each job is its
# own process; locally jobs are threads of one process, so a benchmark's CPU and memory columns
# cover the whole process (each job log ends with the job's own wall and CPU time).
LOGS = os.path.join(RESULTS, "logs")


def result(kind, **fields):
    """The output ``kind`` of grid.PATHS under the results folder, ``fields`` filled in, the
    others left as wildcards: the grid computes the same paths, so they are written once."""
    return grid.path_pattern(kind, RESULTS, **fields)


wildcard_constraints:
    dataset="|".join(config["data"]["datasets"]),
    attack="|".join(grid.attacks(config)),
    run=r"[a-z0-9.\-]+",
    seed=r"\d+",
    source=r"[a-z]+",


def job_resources(stage):
    """The config's `resources.<stage>` as a resources dict (SLURM plugin names: gpu, mem_mb, runtime)."""
    return {key: value for key, value in config["resources"][stage].items() if key != "threads"}


def warn_about_missing_intermediates():
    """Name the deleted inputs of finished outputs and the command that rebuilds them. Only in
    the process the user started: a cluster job parses this file again and needs no sweep."""
    if not workflow.is_main_process:
        return
    missing = grid.missing_intermediates(config)
    files = sorted({path for paths in missing.values() for path in paths})
    if files:
        print(  # at parse time Snakemake's logger is not set up yet
            f"WARNING: {len(files)} input(s) of {len(missing)} finished output(s) are missing, e.g. "
            f"{files[0]} (needed by {next(iter(missing))}); Snakemake does not rebuild them by "
            f"itself. Rebuild them and what was made from them by running your snakemake "
            f"command again with this added at its end:\n  --forcerun {' '.join(files)}",
            file=sys.stderr,
        )


warn_about_missing_intermediates()


def _run(wildcards):
    return RunSpec.parse(wildcards.dataset, wildcards.run, wildcards.seed)


def train_record(wildcards):
    """Everything a checkpoint depends on (params: a change of any of it retrains the run)."""
    return records.run_record(SETTINGS, _run(wildcards))


def evaluation_record(wildcards):
    """What an evaluation depends on beyond its checkpoint (params: a change reruns it)."""
    return records.evaluation_record(SETTINGS, _run(wildcards), wildcards.attack)


def audit_record(wildcards):
    """What an audit JSON depends on beyond its checkpoint (params: a change reruns it)."""
    return records.audit_record(SETTINGS, _run(wildcards), wildcards.audit)


def data_marker(wildcards):
    """Training and evaluation wait for their dataset's current source to be prepared."""
    return str(grid.data_marker(config, wildcards.dataset))


def _register_job_package(name="repro_jobs"):
    """Import workflow/scripts/ as the package `repro_jobs`, once, while the workflow is parsed
    (before any job thread): its modules' plain names (train, plot...) then never shadow, or
    get shadowed by, top-level modules of the environment."""
    scripts = os.path.join(workflow.basedir, "workflow", "scripts")
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(scripts, "__init__.py"), submodule_search_locations=[scripts]
    )
    sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[name])
    return name


JOB_PACKAGE = _register_job_package()


def run_job(rule, input, output, params, wildcards, threads, resources, log):
    """Call main(job) of workflow/scripts/<rule>.py with the job's files and settings.

    Rules use `run:` instead of `script:` so that, with force-use-threads (the default profile),
    a job is a thread of this process: torch is imported once, not once per job. `job` has the
    attributes of the `snakemake` object that a `script:` would get.
    """
    # the arguments above, by name; main_process: not a cluster job's own Snakemake
    job = SimpleNamespace(config=config, main_process=workflow.is_main_process, **locals())
    try:
        importlib.import_module(f"{JOB_PACKAGE}.{rule}").main(job)
    except UserError as error:  # the message is the whole story (the job's log has the trace)
        raise WorkflowError(str(error)) from None


def check_writable():
    """At start-up (onstart: not for a dry run), fail at once, naming the folder, when the
    results folder, or the data root while a dataset still has to be prepared there, cannot
    be written: not after the first job has run for hours."""
    from repro.runtime import io

    paths = [os.path.join(RESULTS, "logs", "snakemake")]
    markers = [grid.data_marker(config, name) for name in config["data"]["datasets"]]
    if not all(marker.exists() for marker in markers):
        paths.append(os.path.join(DATA_ROOT, "snakemake"))
    try:
        for path in paths:
            io.check_writable(path)
    except UserError as error:
        raise WorkflowError(str(error)) from None


# ---- report rules (report.smk) ----

# The config sections whose values the ledger shows (docs/fidelity.md names their keys).
LEDGER_VALUES = {k: config[k] for k in ("data", "model", "training", "protocol", "grid")}
ACCURACY_TABLES = [
    n for n, t in grid.tables(config).items() if t.kind == "accuracy" and n in grid.selected(config)
]
# Table A and the masking checks exist only when a table the audit covers is selected.
AUDIT_REPORTS = (
    {
        "table_a": result("summary", name="tableA", ext="csv"),
        "checks": result("summary", name="checks", ext="csv"),
    }
    if grid.audit_tables(config)
    else {}
)


def table_caption(wildcards):
    """Short caption for the HTML report; the .md/.tex files carry the full one."""
    table = grid.tables(config)[int(wildcards.table)]
    source = config["data"]["datasets"][table.dataset]["source"] if table.dataset else "model"
    return f"{table.title}. Data source: {source}. Seeds: {list(table.seeds)}."


def protocol_tables(wildcards):
    """Each protocol's table CSVs (report.protocols: name -> results folder). Another folder's
    tables come from its own Snakemake run, so a missing one is an error saying which run."""
    inputs = {}
    for name, folder in config["report"]["protocols"].items():
        files = [grid.path_pattern("table", folder, table=n, ext="csv") for n in ACCURACY_TABLES]
        missing = [f for f in files if not os.path.exists(f)]
        if os.path.normpath(folder) != os.path.normpath(RESULTS) and missing:
            raise ValueError(
                f"report.protocols: {name} results are missing ({missing[0]}); build that "
                f"protocol's tables first with its own config (e.g. snakemake --cores N "
                f"--configfile config/standard.yaml), then ask for protocols.md again"
            )
        inputs[name] = files
    return inputs
