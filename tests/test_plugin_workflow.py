"""A user's own defense, attack and dataset, each one file outside the package (tests/plugins/)
named in the config: the workflow schedules, trains, evaluates and tabulates them in a
smoke-sized run, prices them at its start, reruns exactly their jobs when their settings
change, and the paper comparison and the ledger skip them; ``python -m repro estimate``
prices them and says how."""
import csv
import subprocess
import sys

import pytest
import yaml

from repro import report
from repro.report import compare

from test_workflow import ROOT, job_counts, snakemake

PLUGINS = ["tests/plugins/toy_defense.py", "tests/plugins/toy_attack.py",
           "tests/plugins/toy_dataset.py"]
OVERLAY = {  # over config.yaml and the smoke preset: Tables 1 and 10 (the toy dataset's) of
    "plugins": PLUGINS,  # two rows and three columns, one seed, 1 epoch
    "grid": {"seeds": [0], "defenses": ["standard", "noise-aug"]},
    "evaluation": {"attacks": ["clean", "fgsm", "gaussian"]},
    "training": {"max_epochs": 1},
    "data": {"datasets": {"cifar10": {"subset": {"test": 16}},
                          "stripes": {"source": "generated", "val_size": 32,
                                      "subset": {"train": 64, "test": 16}}}},
}


def _overlay(tmp_path, **protocol):
    config = {**OVERLAY, "results": str(tmp_path / "results"),
              "data": {**OVERLAY["data"], "root": str(tmp_path / "data")}}
    if protocol:
        config["protocol"] = protocol
    path = tmp_path / f"plugins{len(protocol)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["--configfile", "config/smoke.yaml", str(path)]


def test_estimate_prices_the_plugins_and_says_how(tmp_path):
    out = subprocess.run([sys.executable, "-m", "repro", "estimate", "--device", "cpu",
                          "--configfile", "config/smoke.yaml", "--configfile",
                          _overlay(tmp_path)[-1]], cwd=ROOT, text=True, capture_output=True,
                         check=True).stdout
    assert "mnist    noise-aug" in out and "eval gaussian" in out
    assert "training noise-aug: no measured rate; declares no cost; priced as a PGD-trained " \
        "defense: one training pass plus protocol.pgd.steps attack steps = 21" in out
    assert "attack gaussian: no measured rate; declares no cost; priced as PGD" in out


@pytest.mark.slow
def test_the_workflow_trains_evaluates_and_tabulates_a_plugin(tmp_path):
    args = _overlay(tmp_path)
    targets = [str(tmp_path / f"results/table{n}.md") for n in (1, 10)]
    assert job_counts(*targets, *args) == \
        {"prepare_data": 2, "train": 4, "evaluate": 12, "accuracy_table": 2}
    table, ledger = tmp_path / "results/table1.csv", tmp_path / "results/ledger.md"
    run = snakemake(*targets, str(ledger), "--cores", "2", *args)
    notice = next(line for line in run.stderr.splitlines() if "Cost of this run" in line)
    assert "Priced without a measured rate: " in notice and "training noise-aug: no " \
        "measured rate; declares no cost; priced as a PGD-trained defense" in notice
    with open(table) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["row_label"] for r in rows] == ["ResNet", "ResNet+Noise"]
    assert [c for c in rows[0] if c.endswith("_mean")] == ["clean_mean", "fgsm_mean",
                                                           "gaussian_mean"]
    assert all(0 <= float(r["gaussian_mean"]) <= 100 for r in rows)
    assert "Gauss" in (tmp_path / "results/table1.md").read_text()
    own = (tmp_path / "results/table10.md").read_text()  # the toy dataset's table
    assert "on Stripes" in own and "Stripes (generated)" in own and "ResNet+Noise" in own
    assert "Fidelity ledger" in ledger.read_text() and "noise_aug" not in ledger.read_text()

    # the paper comparison: every paper cell, none of the plugins' rows or columns
    ours = compare.table_numbers({1: table, 10: tmp_path / "results/table10.csv"})
    cells = compare.compare(report.reported_numbers(), ours)
    assert 10 not in set(cells.table)
    assert set(cells["row_label"]) >= {"ResNet", "ResNet+AT-PGD"}
    assert "ResNet+Noise" not in set(cells["row_label"]) and "gaussian" not in set(cells.attack)
    assert set(cells.loc[cells.row_label == "ResNet", "verdict"]) <= {"agree", "differ",
                                                                      "missing"}
    claims = compare.claims_grid({"ours": compare.Numbers(compare.table_numbers({1: table}))})
    assert {row[-1] for row in claims[1]} <= {"holds", "fails", "n/a"}

    # a changed setting of the plugin's reruns its jobs only: the defense's, then the attack's
    assert job_counts(str(tmp_path / "results/table1.md"),
                      *_overlay(tmp_path, noise_aug={"scale": 0.2})) == \
        {"train": 1, "evaluate": 3, "accuracy_table": 1}
    assert job_counts(str(tmp_path / "results/table1.md"),
                      *_overlay(tmp_path, gaussian={"sigma": 0.1})) == \
        {"evaluate": 2, "accuracy_table": 1}
