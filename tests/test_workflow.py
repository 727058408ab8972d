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
from pathlib import Path

import pytest
import yaml

from repro import grid
from repro.config import load_config, merge_config

ROOT = Path(__file__).resolve().parents[1]


def snakemake(*args, check=True) -> subprocess.CompletedProcess:
    """Run Snakemake in the repository root. Targets must come before --configfile (nargs=+)."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=ROOT, text=True,
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
              [grid.checkpoint_path(config["results"], r) for r in grid.all_runs(config)],
              [grid.eval_path(config["results"], r, a) for r in grid.all_runs(config)
               for a in grid.attacks(config)],
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


@pytest.mark.parametrize("overrides, key, token", [
    ({"training": {"lrr": 0.1}}, "training", "'lrr'"),
    ({"data": {"datasets": {"cifar100": {"source": "torchvision", "val_size": 10}}}},
     "data.datasets", "'cifar100'"),
    ({"data": {"datasets": {"cifar10": {"source": "embedded"}}}},
     "data.datasets.cifar10.source", "'embedded'"),
    ({"evaluation": {"attacks": ["clean", "cw"]}}, "evaluation.attacks.1", "'cw'"),
    ({"grid": {"layer_ablation": {"layers": ["embed6"]}}}, "grid.layer_ablation.layers.0",
     "'embed6'"),
    ({"grid": {"seeds": [0, -1]}}, "grid.seeds.1", "minimum of 0"),
    ({"protocol": {"pgd": {"stepz": 3}}}, "protocol.pgd", "'stepz'"),
    ({"resources": {"train": {"gpus": 1}}}, "resources.train", "'gpus'"),
    ({"training": {"lr": -1}}, "training.lr", "minimum of 0"),
    ({"training": {"max_epochs": "ten"}}, "training.max_epochs", "'integer'"),
    ({"training": {"precision": "fp16"}}, "training.precision", "'fp16'"),
    ({"training": {"device": "gpu"}}, "training.device", "'gpu'"),
    ({"protocol": {"attack_space": "pixels"}}, "protocol.attack_space", "'pixels'"),
    ({"protocol": {"epsilon": 8}}, "protocol.epsilon", "maximum of 1"),
    ({"grid": {"beta_ablation": {"betas": []}}}, "grid.beta_ablation.betas", "[]"),
    ({"report": {"protocols": {"Paper!": "results"}}}, "report.protocols", "'Paper!'"),
    ({"audit": {"autoattack": {"apgd_t": {"steps": 100, "targets": 12}}}},
     "audit.autoattack.apgd_t.targets", "maximum of 9"),
])
def test_bad_config_fails_at_startup_naming_it(tmp_path, overrides, key, token):
    proc = snakemake("--dry-run", "--configfile", str(write_config(tmp_path, overrides)),
                     check=False)
    assert proc.returncode != 0
    problems = (proc.stdout + proc.stderr).split("invalid config")[1].splitlines()[1:]
    assert problems[0].strip().startswith(f"{key}: ") and token in problems[0]  # one line
    assert not problems[1].strip().startswith(f"{key}: ")  # and only one
    assert not (tmp_path / "results").exists()  # nothing ran


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


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke preset run end to end under the paper's protocol (2 seeds) and the standard
    one (config/standard.yaml over it; 1 seed to save time), then the protocols table and the
    HTML report. ~250 + ~130 jobs as threads of one process each: several minutes."""
    folder = tmp_path_factory.mktemp("smoke")
    paper = _smoke_config(folder, "paper")
    snakemake("--cores", "2", "--configfile", str(paper))
    standard = _smoke_config(folder, "standard", "config/standard.yaml", grid={"seeds": [0]})
    snakemake("--cores", "2", "--configfile", str(standard))
    snakemake(str(folder / "paper/protocols.md"), "--cores", "1", "--configfile", str(paper))
    snakemake("--report", str(folder / "report.html"), "--configfile", str(paper))
    return folder


def _full_config(seeds) -> dict:
    config = load_config(ROOT / "config.yaml")
    config["grid"]["seeds"] = seeds
    return config


@pytest.mark.slow
@pytest.mark.parametrize("protocol, seeds", [("paper", [0, 1]), ("standard", [0])])
def test_smoke_builds_every_table_and_plot(smoke, protocol, seeds):
    results = smoke / protocol
    config = _full_config(seeds)
    for path in grid.targets({**config, "results": str(results)}):
        assert Path(path).stat().st_size > 0, path
    for table in grid.tables(config).values():
        if table.kind == "accuracy":
            _check_accuracy_table(results, table)
    table3 = (results / "table3.md").read_text()
    assert "Embedding-5" in table3 and "Output" in table3
    assert "stand-in" in (results / "table1.md").read_text()
    assert "mlxtend" in (results / "table2.md").read_text()
    assert (results / "logs/train").is_dir()  # logs stay with the results they describe
    sides = {row["follows"] for row in csv.DictReader(open(results / "ledger.csv"))}
    # "other": the model row, no ImageNet weights offline (neither protocol's value)
    assert sides == {"paper's code" if protocol == "paper" else "standard", "other"}


def _check_accuracy_table(results: Path, table: grid.Table) -> None:
    md = (results / f"table{table.number}.md").read_text()
    seeds = ", ".join(map(str, table.seeds))
    assert "Data:" in md and f"seeds {seeds}." in md
    with open(results / f"table{table.number}.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["row_label"] for r in rows] == [row.label for row in table.rows]
    columns = [f"{a}_mean" for a in ("clean", "fgsm", "pgd", "deepfool")]
    assert [c for c in rows[0] if c.endswith("_mean")] == columns
    for row in rows:
        for column, value in row.items():
            if column.endswith(("_mean", "_std")):
                assert 0.0 <= float(value) <= 100.0, (table.number, row["row_label"], column)
    cells = re.findall(r"\| ([0-9.]+) \(([0-9.]+)\)", md)
    assert len(cells) == len(table.rows) * 4
    assert all(0 <= float(x) <= 100 for cell in cells for x in cell)


@pytest.mark.slow
def test_smoke_comparison_has_every_paper_cell(smoke):
    with open(smoke / "paper/comparison.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 216
    assert {r["verdict"] for r in rows} <= {"agree", "differ", "unreadable in the paper"}
    for row in rows:
        if row["verdict"] in ("agree", "differ"):
            assert abs(float(row["mean_ours"]) - float(row["mean_paper"])
                       - float(row["diff"])) < 1e-3
    text = (smoke / "paper/comparison.md").read_text()
    assert "216 cells of the paper" in text and "Not the paper's data" in text
    verdicts = re.findall(r"^\| .+ \| §5\.\d, Table \d \| holds \| (holds|fails|n/a) \|$",
                          text, re.M)
    assert len(verdicts) == 8 and "n/a" not in verdicts  # every claim evaluated on our numbers
    # the audit: each robustness claim under PGD and AutoAttack, and the checks' summary
    audit = re.findall(r"^\| .+ \| §5\.5, Table \d \| (holds|fails) \(.+\) \| (holds|fails) \(",
                       text, re.M)
    assert len(audit) == 3
    assert "AutoAttack is at least as strong as PGD" in text


@pytest.mark.slow
def test_smoke_protocols_side_by_side(smoke):
    with open(smoke / "paper/protocols.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 7 * 4  # Tables 1 and 2: 7 models x 4 attacks
    for row in rows:
        for name in ("paper", "standard"):
            assert 0 <= float(row[f"{name}_mean"]) <= 100
    assert "ours, standard protocol" in (smoke / "paper/protocols.md").read_text()


@pytest.mark.slow
def test_smoke_report_holds_every_table_plot_comparison_ledger_provenance(smoke):
    text = (smoke / "report.html").read_text()
    shown = ([f"table{n}.csv" for n in grid.TABLE_NUMBERS] + [f"{p}.png" for p in grid.PLOTS]
             + ["comparison.csv", "ledger.csv", "provenance.csv", "tableA.csv", "epsilon.png",
                "checks.csv"])
    assert [name for name in shown if name not in text] == []


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
    command = [sys.executable, "-m", "snakemake", target, "--cores", "2", "--configfile",
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
