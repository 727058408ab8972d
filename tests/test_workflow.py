"""The Snakemake workflow: targeted scheduling, incremental grids, config validation, smoke run.

Dry runs use the full paper config (nothing is trained); the end-to-end test runs the smoke
preset into a temporary folder and checks every table and plot the paper has.
"""
import csv
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from repro import grid
from repro.runs.artifacts import load_checkpoint, read_eval
from repro.config import load_config, merge_config

from conftest import BAD_CONFIGS, SNAKEMAKE
from filesystems import read_only

ROOT = Path(__file__).resolve().parents[1]


def snakemake(*args, check=True) -> subprocess.CompletedProcess:
    """Run Snakemake in the repository root. Targets must come before --configfile (nargs=+)."""
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=ROOT, text=True,
                          capture_output=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def job_counts(*args) -> dict[str, int]:
    """Jobs per rule that a dry run would execute (parsed from Snakemake's 'Job stats')."""
    out = snakemake(*args, "--dry-run", "--quiet", "rules").stdout
    if "Job stats:" not in out:  # nothing to be done
        return {}
    stats = out.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)
            if m[1] != "total"}


def write_config(tmp_path: Path, overrides: dict, name="config.yaml") -> Path:
    """A config file merged by Snakemake over config.yaml, with results and data in tmp_path."""
    overrides = {"results": str(tmp_path / "results"), **overrides}
    overrides.setdefault("data", {})["root"] = str(tmp_path / "data")
    path = tmp_path / name
    path.write_text(yaml.safe_dump(overrides))
    return path


def test_one_table_schedules_only_its_runs():
    counts = job_counts("results/table4.md")
    assert counts == {"prepare_data": 1, "train": 18, "evaluate": 72, "accuracy_table": 1}


def test_full_grid_trains_each_run_once():
    counts = job_counts()
    assert counts["train"] == 24 * 3 and counts["evaluate"] == 24 * 3 * 4
    assert counts["accuracy_table"] == 8 and counts["embedding_table"] == 1
    assert counts["plot"] == 2


def _pretend_built(config: dict, config_path: Path, targets: list[str]) -> None:
    """Make `targets` and everything upstream exist, with Snakemake metadata, without running.

    Files are created oldest stage first, then ``--touch`` records the provenance metadata a
    real run would leave (Snakemake's input-set rerun trigger needs it).
    """
    stages = [[grid.data_marker(config, d) for d in config["data"]["datasets"]],
              [path for r in grid.all_runs(config) for path in (
                  grid.checkpoint_path(config["results"], r),
                  grid.metrics_path(config["results"], r))],
              [grid.eval_path(config["results"], r, a) for r in grid.all_runs(config)
               for a in grid.attacks(config)]
              + [Path(p) for kind in grid.AUDITS for p in grid.audit_inputs(config, kind)],
              [Path(p) for p in grid.targets(config)]]
    now = time.time()
    for age, paths in zip((40, 30, 20, 10), stages):
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            os.utime(path, (now - age, now - age))
    snakemake(*targets, "--touch", "--forceall", "--cores", "1", "--configfile", str(config_path))


def test_adding_a_beta_adds_exactly_its_runs(tmp_path, paper_config):
    base = write_config(tmp_path, {}, "base.yaml")
    config = {**paper_config, **yaml.safe_load(base.read_text())}
    config["data"] = {**paper_config["data"], "root": str(tmp_path / "data")}
    targets = [str(tmp_path / "results/table5.md"), str(tmp_path / "results/plots/beta.png")]
    _pretend_built(config, base, targets)
    assert job_counts(*targets, "--configfile", str(base)) == {}  # up to date

    betas = paper_config["grid"]["beta_ablation"]["betas"] + [2]
    bigger = write_config(tmp_path, {"grid": {"beta_ablation": {"betas": betas}}}, "more.yaml")
    counts = job_counts(*targets, "--configfile", str(bigger))
    assert counts == {"train": 3, "evaluate": 12, "accuracy_table": 1, "plot": 1}


TABLE4_ALL = {"train": 18, "evaluate": 72, "accuracy_table": 1}
TABLEA_CIFAR10 = {"audit_evaluate": 21, "audit_table": 1}  # Table A's CIFAR-10 half


EPSILON_PLOT = "plots/epsilon.png"


@pytest.mark.parametrize("target, change, expected", [
    ("table4.md", {"protocol": {"epsilon": 0.05}}, TABLE4_ALL),  # cl-fgsm trains, is attacked
    ("table4.md", {"training": {"lr": 1e-4}}, TABLE4_ALL),
    ("table4.md", {"model": {"pretrained": "none"}}, TABLE4_ALL),
    ("table4.md", {"data": {"split_seed": 7}}, TABLE4_ALL),
    ("table4.md", {"protocol": {"cl": {"distance": "euclidean"}}}, TABLE4_ALL),
    ("table4.md", {"protocol": {"pgd": {"steps": 10}}}, {"evaluate": 18, "accuracy_table": 1}),
    ("table4.md", {"protocol": {"deepfool": {"steps": 5}}}, {"evaluate": 18, "accuracy_table": 1}),
    ("table4.md", {"data": {"datasets": {"cifar10": {"subset": {"test": 500}}}}},
     {"evaluate": 72, "accuracy_table": 1}),  # the test set: evaluations only
    ("table4.md", {"protocol": {"topk_average": "sample"}}, {"evaluate": 72, "accuracy_table": 1}),
    ("table4.md", {"report": {"compare_with_paper": True}}, {"accuracy_table": 1}),
    ("table4.md", {"protocol": {"trades": {"beta": 2.0}}}, {}),  # Table 4 has no TRADES run
    ("table4.md", {"data": {"datasets": {"mnist": {"val_size": 1000}}}}, {}),  # nor MNIST
    ("table4.md", {"resources": {"train": {"mem_mb": 1000, "threads": 1}}}, {}),
    # the audit reads the table's threat model and PGD, its images and its own budget
    ("tableA.md", {"protocol": {"pgd": {"steps": 10}}},  # and the PGD-trained runs retrain
     {"train": 12, "audit_evaluate": 42, "audit_table": 1}),
    ("tableA.md", {"data": {"datasets": {"cifar10": {"subset": {"test": 500}}}}},
     TABLEA_CIFAR10),
    ("tableA.md", {"audit": {"n_images": 100}}, {**TABLEA_CIFAR10, "audit_evaluate": 42}),
    ("tableA.md", {"audit": {"autoattack": {"square": {"queries": 100}}}},
     {**TABLEA_CIFAR10, "audit_evaluate": 42}),
    ("tableA.md", {"protocol": {"deepfool": {"steps": 5}}}, {}),  # no audit reads DeepFool
    ("tableA.md", {"audit": {"epsilons": [0, 8]}}, {}),  # the ε curve's, not Table A's
    ("tableA.md", {"audit": {"tolerance": 2.0}}, {}),  # the masking checks' (report only)
    # the ε curve reads the table's ε (its step-to-ε ratio) and its own ε grid
    (EPSILON_PLOT, {"protocol": {"epsilon": 0.05}},  # and every run that trains on ε retrains
     {"train": 30, "audit_evaluate": 42, "epsilon_plot": 1}),
    (EPSILON_PLOT, {"audit": {"epsilons": [0, 8]}}, {"audit_evaluate": 42, "epsilon_plot": 1}),
    (EPSILON_PLOT, {"audit": {"autoattack": {"square": {"queries": 100}}}}, {}),
])
def test_a_changed_value_reruns_exactly_the_jobs_that_read_it(built_tables, target, change,
                                                              expected):
    """Rules pass what their output depends on as params:, so Snakemake's params trigger reruns
    them (and what depends on them), and nothing else."""
    folder, base = built_tables
    changed = write_config(folder, change, f"changed-{uuid.uuid4().hex}.yaml")
    target = str(folder / "results" / target)
    assert job_counts(target, "--configfile", str(base), str(changed)) == expected


@pytest.mark.parametrize("deleted, expected", [
    ("runs/cifar10/cl-fgsm-embed3-beta6/seed1/eval/pgd.json", {"evaluate": 1, "accuracy_table": 1}),
    ("runs/cifar10/cl-fgsm-embed3-beta6/seed1/model.pt",
     {"train": 1, "evaluate": 4, "accuracy_table": 1}),
])
def test_a_deleted_intermediate_is_named_with_the_command_that_rebuilds_it(tmp_path, deleted,
                                                                            expected):
    base = write_config(tmp_path, {}, "base.yaml")
    target = str(tmp_path / "results/table4.md")
    _pretend_built(load_config(ROOT / "config.yaml", base), base, [target])
    (tmp_path / "results" / deleted).unlink()
    proc = snakemake(target, "--dry-run", "--configfile", str(base))
    assert "Nothing to be done" in proc.stdout  # Snakemake alone would leave it missing
    hint = re.search(r"--forcerun (.*)", proc.stderr)
    assert hint and hint.group(1).split() == [str(tmp_path / "results" / deleted)], proc.stderr
    assert job_counts(target, "--configfile", str(base), "--forcerun",
                      *hint.group(1).split()) == expected


@pytest.fixture(scope="module")
def built_tables(tmp_path_factory):
    """Tables 4 and A and the ε curve of config.yaml and all they need, pretend-built once (dry
    runs change nothing)."""
    folder = tmp_path_factory.mktemp("tables")
    base = write_config(folder, {}, "base.yaml")
    config = load_config(ROOT / "config.yaml", base)
    targets = [str(folder / "results" / name) for name in ("table4.md", "tableA.md",
                                                           EPSILON_PLOT)]
    _pretend_built(config, base, targets)
    assert job_counts(*targets, "--configfile", str(base)) == {}  # up to date
    return folder, base


@pytest.mark.parametrize("overrides, key, token", BAD_CONFIGS)
def test_bad_config_fails_at_startup_naming_it(tmp_path, overrides, key, token):
    proc = snakemake("--dry-run", "--configfile", str(write_config(tmp_path, overrides)),
                     check=False)
    assert proc.returncode != 0
    problems = (proc.stdout + proc.stderr).split("invalid config")[1].splitlines()[1:]
    assert problems[0].strip().startswith(f"{key}: ") and token in problems[0]  # one line
    assert not problems[1].strip().startswith(f"{key}: ")  # and only one
    assert not (tmp_path / "results").exists()  # nothing ran


def test_numeric_strings_from_yaml_and_the_command_line_are_numbers(tmp_path):
    """PyYAML reads `1e-3` as a string, and Snakemake passes nested --config values as strings:
    both are what the user meant, so the schema's numbers accept them."""
    config = write_config(tmp_path, {})
    config.write_text(config.read_text() + "training: {lr: 1e-3}\n")
    assert yaml.safe_load(config.read_text())["training"]["lr"] == "1e-3"
    snakemake("--dry-run", "--configfile", str(config), "--config", "protocol={epsilon: 0.05}")


def test_data_root_naming_a_file_is_one_line_naming_the_key(tmp_path):
    config = write_config(tmp_path, {})
    config.write_text(config.read_text().replace(str(tmp_path / "data"), str(config)))
    proc = snakemake("--dry-run", "--configfile", str(config), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    problems = (proc.stdout + proc.stderr).split("invalid config")[1].splitlines()[1:]
    assert problems[0].strip() == f"data.root: {str(config)!r} is not a folder; give a folder path"


# ---- end to end: both protocols on the smoke data ----

def _smoke_config(folder: Path, name: str, *presets: str, **changes) -> Path:
    """config/smoke.yaml, then ``presets``, then ``changes`` (top-level sections, merged key by
    key), in one file that writes under ``folder``."""
    config = load_config(ROOT / "config/smoke.yaml", *(ROOT / p for p in presets))
    merge_config(config, changes)
    config["results"] = str(folder / name)
    config["data"]["root"] = str(folder / "data")
    config["report"]["protocols"] = {"paper": str(folder / "paper"),
                                     "standard": str(folder / "standard")}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_protocols_needs_the_other_protocols_tables(tmp_path):
    config = write_config(tmp_path, {"report": {"protocols": {
        "paper": str(tmp_path / "results"), "standard": str(tmp_path / "nowhere")}}})
    proc = snakemake(str(tmp_path / "results/protocols.md"), "--dry-run", "--configfile",
                     str(config), check=False)
    assert proc.returncode != 0
    assert "config/standard.yaml" in proc.stdout + proc.stderr


def _table4_config(folder: Path, name: str) -> Path:
    """Table 4 of the smoke preset cut to two layers, one seed and two attacks."""
    return _smoke_config(folder, name, evaluation={"attacks": ["clean", "fgsm"]},
                         grid={"seeds": [0], "layer_ablation": {"layers": ["embed5", "output"]}})


@pytest.mark.slow
def test_an_interrupted_run_resumes_without_redoing_finished_jobs(tmp_path):
    """SIGTERM (a scheduler's or Ctrl-C's stop) once the first training has finished; the rerun
    keeps that checkpoint, builds the rest, and the table equals an uninterrupted run's."""
    whole = _table4_config(tmp_path, "whole")
    snakemake(str(tmp_path / "whole/table4.md"), "--cores", "2", "--configfile", str(whole))

    parts = _table4_config(tmp_path, "parts")
    target = str(tmp_path / "parts/table4.md")
    command = [*SNAKEMAKE, target, "--cores", "2", "--configfile",
               str(parts)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    runs = tmp_path / "parts/runs"
    deadline = time.time() + 300
    while not list(runs.rglob("model.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.terminate()
    assert proc.wait(timeout=300) != 0  # stopped before the table: it reports the failure
    assert not Path(target).exists()
    finished = {path: path.stat().st_mtime_ns for path in runs.rglob("*")
                if path.suffix in (".pt", ".json")}
    assert finished  # at least the first checkpoint

    snakemake(target, "--cores", "2", "--configfile", str(parts))
    assert {path: path.stat().st_mtime_ns for path in finished} == finished  # not redone
    assert (tmp_path / "parts/table4.csv").read_text() == \
        (tmp_path / "whole/table4.csv").read_text()


def _one_run_config(folder: Path) -> Path:
    """Table 4 of the smoke preset cut to one run (output layer, seed 0) and one attack."""
    return _smoke_config(folder, "one", evaluation={"attacks": ["clean"]},
                         grid={"seeds": [0], "layer_ablation": {"layers": ["output"]}})


@pytest.mark.slow
def test_a_damaged_file_is_rebuilt_by_the_command_its_error_gives(tmp_path):
    """A garbage evaluation JSON, then a truncated checkpoint: the job that reads it fails naming
    the file and what to add to the command; the command with that added rebuilds the file and
    what was made from it. Also: a training by hand repeats the workflow's numbers (~60 s)."""
    config = _one_run_config(tmp_path)
    command = [str(tmp_path / "one/table4.md"), "--cores", "1", "--configfile", str(config)]
    snakemake(*command)
    run_dir = tmp_path / "one/runs/cifar10/cl-fgsm-output-beta6/seed0"
    checkpoint, evaluation = run_dir / "model.pt", run_dir / "eval/clean.json"

    evaluation.write_text("garbage\n")
    _rebuild(command, evaluation, "evaluation JSON")
    assert read_eval(evaluation)["n"] > 0 and (tmp_path / "one/table4.md").exists()

    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    _rebuild(command, checkpoint, "checkpoint")
    assert load_checkpoint(checkpoint)["epochs"] == 2 and (tmp_path / "one/table4.md").exists()

    assert _metrics(_train_by_hand(config, tmp_path / "by-hand/model.pt")) == \
        _metrics(checkpoint)


def _train_by_hand(config: Path, out: Path, *options: str) -> Path:
    """The one run of ``_one_run_config`` trained with ``python -m repro train``."""
    subprocess.run([sys.executable, "-m", "repro", "train", "--config", str(ROOT / "config.yaml"),
                    "--configfile", str(config), "--dataset", "cifar10", "--defense", "cl-fgsm",
                    "--layer", "output", "--beta", "6", "--out", str(out), "--no-progress",
                    *options], check=True, cwd=ROOT, capture_output=True)
    return out


@pytest.mark.slow
def test_local_jobs_that_may_use_cuda_run_as_processes_on_slot_cards(tmp_path, monkeypatch):
    """runtime.device auto with a (pretend) visible card: training, evaluation and the audit
    each run `python -m repro` as a child on its slot's card (repro.runtime.gpus), here on the CPU,
    and the child's training equals the in-process one."""
    # card 99: handed out like a real one, but no torch sees it, so the child runs on the
    # CPU here and on a GPU machine alike
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "99")
    config = _one_run_config(tmp_path)
    config.write_text(config.read_text().replace("device: cpu", "device: auto"))
    run_dir = tmp_path / "one/runs/cifar10/cl-fgsm-output-beta6/seed0"
    snakemake(str(run_dir / "eval/clean.json"), str(run_dir / "eval/epsilon.json"), "--cores",
              "2", "--configfile", str(config))
    logs = [log for stage in ("train", "evaluate", "audit")
            for log in (tmp_path / "one/logs" / stage).rglob("*.log")]
    assert len(logs) == 3
    for log in logs:
        assert "on CUDA_VISIBLE_DEVICES=99: " in log.read_text(), log
    assert read_eval(run_dir / "eval/clean.json")["provenance"]["device"] == "cpu"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    in_place = _train_by_hand(config, tmp_path / "in-place/model.pt", "--device", "cpu")
    assert _metrics(in_place) == _metrics(run_dir / "model.pt")


@pytest.mark.slow
def test_a_changed_attack_setting_rebuilds_its_evaluations_and_the_table(tmp_path):
    """The rerun of a DeepFool change leaves the other JSONs with the old value, which they
    never read: the table is built, and its caption gives the new value."""
    config = _smoke_config(tmp_path, "one", evaluation={"attacks": ["fgsm", "deepfool"]},
                           grid={"seeds": [0], "layer_ablation": {"layers": ["output"]}})
    target = str(tmp_path / "one/table4.md")
    snakemake(target, "--cores", "2", "--configfile", str(config))
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump({"protocol": {"deepfool": {"steps": 3}}}))
    arguments = (target, "--configfile", str(config), str(changed))
    assert job_counts(*arguments) == {"evaluate": 1, "accuracy_table": 1}
    snakemake(*arguments, "--cores", "2")
    assert "deepfool.steps=3" in Path(target).read_text()


def _rebuild(command: list[str], damaged: Path, what: str) -> None:
    failed = snakemake(*command, check=False)
    assert failed.returncode != 0, what
    fix = re.search(rf"`(--forcerun {re.escape(str(damaged))})` added at its end",
                    failed.stdout + failed.stderr)
    assert fix, f"the error for a damaged {what} gives no command:\n{failed.stderr}"
    snakemake(*command, *fix[1].split())


def _metrics(checkpoint: Path) -> list[dict]:
    """Training metrics without the wall-clock column."""
    with open(checkpoint.with_name("metrics.csv")) as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("folder", ["results", "data"])
def test_a_read_only_results_folder_or_data_root_fails_at_start_naming_it(tmp_path, folder):
    """Before: the jobs ran (a download, hours of training) and the first write failed."""
    with read_only(tmp_path / "ro") as locked:
        config = write_config(tmp_path, {folder: str(locked)} if folder == "results"
                              else {"data": {"root": str(locked)}})
        if folder == "data":
            config.write_text(config.read_text().replace(str(tmp_path / "data"), str(locked)))
        start = time.monotonic()
        proc = snakemake(str(tmp_path / "results" / "table3.md") if folder == "data"
                         else str(locked / "table3.md"), "--cores", "1",
                         "--configfile", str(config), check=False)
        assert proc.returncode != 0 and time.monotonic() - start < 120
        output = proc.stdout + proc.stderr
        assert "Traceback" not in output and f"cannot write {locked}/" in output, output
        assert "read-only" in output or "permission denied" in output
        assert not any(locked.iterdir())
    assert not (tmp_path / "results" / "table3.md").exists()
