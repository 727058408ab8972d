"""The SLURM profile against a real Slurm: a one-node cluster started on this machine.

Opt-in (needs root and ``apt-get install slurm-wlm munge``): ``REPRO_SLURM_TEST=1 pytest
tests/test_slurm.py``; ``.ci/run`` always runs it. One smoke-sized target, Table 4 cut to one
layer, one seed and two attacks, covers the data download (local rule), one training and two
evaluation jobs (Slurm jobs, each asking for one GPU as the paper's config does; the node has
pretend GPUs) and the table (local rule). It is built twice, with the local profile and with
profiles/slurm (edited as its comments tell a user to: the GPU type set), and the two
tables must agree number for number. A third build trains the same run under a one-minute
Slurm time limit that it cannot meet: the resubmitted job must resume and end with the local
build's checkpoint.
"""
import copy
import csv
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import SNAKEMAKE
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


def write_config(folder: Path, resources: dict = RESOURCES) -> Path:
    """The smoke preset, cut down to one Table 4 run, with results and data under ``folder``."""
    config = copy.deepcopy(yaml.safe_load((ROOT / "config/smoke.yaml").read_text()))
    config["results"] = str(folder / "results")
    config["data"]["root"] = str(folder / "data")
    config["grid"] = {"seeds": [0], "layer_ablation": {"layers": ["embed5"]}}
    config["evaluation"]["attacks"] = ATTACKS
    # 4 epochs, no early stop: a job held after its first epoch has 3 left, more than Slurm's
    # 1 s from SIGTERM to SIGKILL (KillWait) in which Snakemake lets a running job go on
    config["training"].update(max_epochs=4, patience=4)
    config["resources"] = resources
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
        [*SNAKEMAKE, target, *args,
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


@pytest.fixture(scope="module")
def local_build(tmp_path_factory) -> Path:
    """The target built without Slurm: what every Slurm build must equal."""
    reason = missing_requirements()
    if reason:
        pytest.fail(f"REPRO_SLURM_TEST=1 but no Slurm can be started here: {reason}")
    folder = tmp_path_factory.mktemp("slurm-reference") / "local"
    snakemake(folder, "--profile", "profiles/local")
    return folder


def test_slurm_profile_submits_each_job_to_slurm(tmp_path, local_build):

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
    assert table_rows(slurm_dir) == table_rows(local_build)

    # Nothing left running: the daemons exited, and no job process remains.
    assert all(process.poll() is not None for process in daemons.values())
    assert processes_mentioning(str(slurm_dir)) == []


RUN_DIR = Path("results/runs/cifar10/cl-fgsm-embed5-beta6/seed0")


def _stop_job_processes(folder: Path, spare: int) -> list[int]:
    """SIGSTOP every process working for ``folder``'s Slurm jobs (all mention its config) but
    the Snakemake process ``spare``: the job then outlives its time limit, as a long job does."""
    stopped = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        pid = int(cmdline.parent.name)
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in command and pid not in (spare, os.getpid()):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
    return stopped


def test_a_training_job_past_its_time_limit_resumes_when_resubmitted(tmp_path, local_build):
    """Slurm ends a job at its time limit (state TIMEOUT: SIGTERM, then SIGKILL); the profile's
    `retries: 1` resubmits it, and the training resumes from its last finished epoch. The first
    attempt is held (SIGSTOP) after its first epoch, so it meets its one-minute limit on any
    machine."""
    folder = tmp_path / "slurm"
    train_only = {**RESOURCES, "train": {**RESOURCES["train"], "runtime": 1}}
    config = write_config(folder, train_only)
    state = folder / RUN_DIR / "model.pt.state"
    with slurm_cluster(gpus=1, gpu_type=GPU_TYPE) as cluster:
        main = subprocess.Popen(
            [*SNAKEMAKE, str(folder / RUN_DIR / "model.pt"),
             "--profile", str(slurm_profile(tmp_path)), "--slurm-status-command", "squeue",
             "--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs",
             "--slurm-logdir", str(folder / "slurm_logs"), "--configfile", str(config)],
            cwd=ROOT, env=cluster.env, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while not state.exists() and main.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert state.exists(), "the training job wrote no state after its first epoch"
            assert _stop_job_processes(folder, main.pid)
            out, _ = main.communicate(timeout=600)
        finally:
            if main.poll() is None:
                main.kill()
        trainings = sorted((job for job in cluster.jobs()
                            if job["comment"].startswith("rule_train")), key=lambda j: int(j["id"]))
    assert main.returncode == 0, out
    assert [job["state"] for job in trainings] == ["TIMEOUT", "COMPLETED"], out
    # It resumed (after the epoch where the hold found it) rather than starting over: the
    # model below equals the reference either way.
    resumed = (folder / "slurm_logs").rglob(f"{trainings[1]['id']}.log")
    assert any(re.search(r"resuming .* after epoch [123]\b", log.read_text())
               for log in resumed), out

    ours = torch.load(folder / RUN_DIR / "model.pt", weights_only=False)
    reference = torch.load(local_build / RUN_DIR / "model.pt", weights_only=False)
    assert ours["model"].keys() == reference["model"].keys()
    assert all(torch.equal(ours["model"][k], reference["model"][k]) for k in ours["model"])
    assert [m["val_loss"] for m in ours["metrics"]] == [m["val_loss"]
                                                        for m in reference["metrics"]]
