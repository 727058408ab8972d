# Shared by all rules: config validation, the grid, wildcard constraints, input functions, and
# the one way a rule runs its job (run_job).
import importlib
import importlib.util
import os
import sys
from types import SimpleNamespace

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The library lives in src/; make it importable here, installed or not (and in any process
# Snakemake spawns, through PYTHONPATH).
_SRC = os.path.join(workflow.basedir, "..", "src")
sys.path.insert(0, _SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_SRC, os.environ.get("PYTHONPATH")]))

from repro import estimate, grid, interrupt  # noqa: E402  (needs the path above)
from repro.config import ATTACKS, DATASETS, config_errors  # noqa: E402


SCHEMA = os.path.join(workflow.basedir, "schemas", "config.schema.yaml")


def validate_config():
    """Fail before any job starts, one line per problem, each starting with the key."""
    try:
        validate(config, SCHEMA)  # also fills in the schema's defaults
    except WorkflowError:
        with open(SCHEMA) as handle:
            problems = config_errors(config, yaml.safe_load(handle))
        raise WorkflowError("invalid config (keys as in config.yaml; allowed values in "
                            "workflow/schemas/config.schema.yaml):\n  " + "\n  ".join(problems))


validate_config()

RESULTS = config["results"]
DATA_ROOT = config["data"]["root"]
RUN_DIR = RESULTS + "/runs/{dataset}/{run}/seed{seed}"
# Logs (and per-job wall/CPU/memory benchmarks, to size cluster resources) live under the
# results folder, so smoke, test and real runs never share a file. On a cluster each job is its
# own process; locally jobs are threads of one process, so a benchmark's CPU and memory columns
# cover the whole process (each job log ends with the job's own wall and CPU time).
LOGS = RESULTS + "/logs"


wildcard_constraints:
    dataset="|".join(DATASETS),
    attack="|".join(ATTACKS),
    run=r"[a-z0-9.\-]+",
    seed=r"\d+",
    source=r"[a-z]+",


def job_resources(stage):
    """The config's `resources.<stage>` as a resources dict (SLURM plugin names: gpu, mem_mb, runtime)."""
    return {key: value for key, value in config["resources"][stage].items() if key != "threads"}


def data_marker(wildcards):
    """Training and evaluation wait for their dataset's current source to be prepared."""
    return str(grid.data_marker(config, wildcards.dataset))


def _register_job_package(name="repro_jobs"):
    """Import workflow/scripts/ as the package `repro_jobs`, once, while the workflow is parsed
    (before any job thread): its modules' plain names (train, plot...) then never shadow, or
    get shadowed by, top-level modules of the environment."""
    scripts = os.path.join(workflow.basedir, "scripts")
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(scripts, "__init__.py"), submodule_search_locations=[scripts])
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
    job = SimpleNamespace(rule=rule, input=input, output=output, params=params,
                          wildcards=wildcards, threads=threads, resources=resources, log=log,
                          config=config)
    importlib.import_module(f"{JOB_PACKAGE}.{rule}").main(job)
