"""The SLURM profile against a real Slurm: a one-node cluster started on this machine.

Opt-in (needs root and ``apt-get install slurm-wlm munge``): ``REPRO_SLURM_TEST=1 pytest
tests/test_slurm.py``; ``.ci/run`` always runs it. One smoke-sized target, Table 4 cut to one
layer, one seed and two attacks, covers the data download (local rule), one training and two
evaluation jobs (Slurm jobs, each asking for one GPU as the paper's config does; the node has
pretend GPUs) and the table (local rule). It is built twice, with the local profile and with
profiles/slurm (edited as its comments tell a user to: the GPU type set), and the two
tables must agree number for number.
"""
import copy
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slurm_cluster import missing_requirements, slurm_cluster

ROOT = Path(__file__).resolve().parents[1]
TABLE = 4
ATTACKS = ["clean", "fgsm"]
GPU_TYPE = "pretend"
# Distinct per stage, to see them arrive in sbatch: mem_mb -> --mem, runtime -> -t (minutes).
RESOURCES = {"train": {"threads": 1, "mem_mb": 1500, "runtime": 7, "gpu": 1},
             "evaluate": {"threads": 1, "mem_mb": 1200, "runtime": 9, "gpu": 1}}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("REPRO_SLURM_TEST") != "1",
                       reason="starts a Slurm cluster: opt in with REPRO_SLURM_TEST=1 "
                              "(root; apt-get install slurm-wlm munge)"),
]


def write_config(folder: Path) -> Path:
    """The smoke preset, cut down to one Table 4 run, with results and data under ``folder``."""
    config = copy.deepcopy(yaml.safe_load((ROOT / "config/smoke.yaml").read_text()))
    config["results"] = str(folder / "results")
    config["data"]["root"] = str(folder / "data")
    config["grid"] = {"seeds": [0], "layer_ablation": {"layers": ["embed5"]}}
    config["evaluation"]["attacks"] = ATTACKS
    config["resources"] = RESOURCES
    path = folder / "config.yaml"
    folder.mkdir(parents=True)
    path.write_text(yaml.safe_dump(config))
    return path


def slurm_profile(folder: Path) -> Path:
    """profiles/slurm with the GPU type set, the one edit its comments suggest."""
    text = (ROOT / "profiles/slurm/config.yaml").read_text()
    edited = text.replace('# gpu_model: "a100"', f'gpu_model: "{GPU_TYPE}"')
    assert edited != text, "the slurm profile no longer offers gpu_model"
    (folder / "profile").mkdir(parents=True)
    (folder / "profile" / "config.yaml").write_text(edited)
    return folder / "profile"


def snakemake(folder: Path, *args: str, env=None) -> str:
    """Build ``folder``'s Table 4 from the repository root; return Snakemake's output."""
    target = str(folder / "results" / f"table{TABLE}.csv")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", target, *args,
         "--configfile", str(write_config(folder))],
        cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=600)
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p} ---\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(folder.rglob("*.log")))
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout}\n{logs}")
    return proc.stdout


def table_rows(folder: Path) -> list[dict]:
    with open(folder / "results" / f"table{TABLE}.csv") as handle:
        return list(csv.DictReader(handle))


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (a job's config path, say)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


def test_slurm_profile_submits_each_job_to_slurm(tmp_path):
    reason = missing_requirements()
    if reason:
        pytest.fail(f"REPRO_SLURM_TEST=1 but no Slurm can be started here: {reason}")

    snakemake(tmp_path / "local", "--profile", "profiles/local")

    slurm_dir = tmp_path / "slurm"
    with slurm_cluster(gpus=1, gpu_type=GPU_TYPE) as cluster:
        out = snakemake(
            slurm_dir, "--profile", str(slurm_profile(tmp_path)),
            # No accounting database on this cluster, so no sacct: poll squeue, and often.
            "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
            "--slurm-logdir", str(slurm_dir / "slurm_logs"), "--retries", "0",
            env=cluster.env)
        jobs = cluster.jobs()
        details = {job["id"]: cluster.job(job["id"]) for job in jobs}
    daemons = cluster.processes

    # Job records: one Slurm job per training / evaluation job, none for the local rules.
    run_id = re.search(r"SLURM run ID: (\S+)", out)[1]
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out)
    assert sorted(submitted) == sorted(job["id"] for job in jobs), out
    wildcards = "cifar10_cl-fgsm-embed5-beta6_0"
    assert sorted(job["comment"] for job in jobs) == sorted(
        [f"rule_train_wildcards_{wildcards}"]
        + [f"rule_evaluate_wildcards_{wildcards}_{attack}" for attack in ATTACKS])
    assert {job["name"] for job in jobs} == {run_id}
    assert {job["state"] for job in jobs} == {"COMPLETED"}
    # Each asked for what the config's resources section says, GPU included.
    for job in jobs:
        stage = RESOURCES["train" if job["comment"].startswith("rule_train") else "evaluate"]
        asked = details[job["id"]]
        assert asked["MinMemoryNode"] == f"{stage['mem_mb']}M", asked
        assert asked["TimeLimit"] == f"00:{stage['runtime']:02d}:00", asked
        assert asked["TresPerJob"] == f"gres:gpu:{GPU_TYPE}:1", asked  # sbatch --gpus=TYPE:1
    # The download and the table ran in this process, as local rules (no Slurm job above).
    assert "localrule prepare_data" in out and "localrule accuracy_table" in out

    # The same numbers as a local run.
    assert table_rows(slurm_dir) == table_rows(tmp_path / "local")

    # Nothing left running: the daemons exited, and no job process remains.
    assert all(process.poll() is not None for process in daemons.values())
    assert processes_mentioning(str(slurm_dir)) == []
