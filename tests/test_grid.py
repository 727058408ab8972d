"""The experiment grid: nine tables, paper labels and order, shared runs counted once."""
import csv
from pathlib import Path

import pytest

from repro import grid
from repro.config import ConfigError, RunSpec, load_config, validate_config
from repro.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def paper_rows() -> dict[int, list[str]]:
    """Row labels per table, in the paper's order, from the paper's reported numbers."""
    rows: dict[int, list[str]] = {}
    with open(ROOT / "src/repro/report/reported.csv") as handle:
        for rec in csv.DictReader(handle):
            labels = rows.setdefault(int(rec["table"]), [])
            if rec["row_label"] not in labels:
                labels.append(rec["row_label"])
    return rows


def test_nine_tables_with_paper_rows_in_order(paper_config):
    tables = grid.tables(paper_config)
    assert list(tables) == list(range(1, 10))
    for number, labels in paper_rows().items():
        assert [row.label for row in tables[number].rows] == labels, number
    assert tables[3].kind == "embedding" and not tables[3].runs()


def test_tables_name_dataset_metric_and_attacks(paper_config):
    tables = grid.tables(paper_config)
    assert (tables[7].dataset, tables[7].metric) == ("cifar10", "top5")
    assert (tables[8].dataset, tables[8].metric) == ("mnist", "top3")
    assert tables[1].attacks == ("clean", "fgsm", "pgd", "deepfool")


def test_runs_follow_config(paper_config):
    tables = grid.tables(paper_config)
    cl_pgd = [r for r in tables[1].rows if r.defense == "cl-pgd"][0]
    assert (cl_pgd.layer, cl_pgd.beta) == ("embed5", 1.5)  # ledger 8: the code's beta
    assert {run.seed for run in tables[4].runs()} == {0, 1, 2}
    assert len(tables[4].runs()) == 18


def test_shared_runs_once(paper_config):
    runs = grid.all_runs(paper_config)
    assert len(runs) == len(set(runs)) == 24 * 3
    shared = RunSpec("cifar10", "cl-fgsm", 0, "embed5", 6)
    assert sum(shared in t.runs() for t in grid.tables(paper_config).values()) == 5
    assert runs.count(shared) == 1


def test_one_more_beta_adds_exactly_its_runs(paper_config):
    before = set(grid.all_runs(paper_config))
    paper_config["grid"]["beta_ablation"]["betas"].append(2)
    added = set(grid.all_runs(paper_config)) - before
    assert {(r.defense, r.layer, r.beta) for r in added} == {("cl-fgsm", "embed5", 2.0)}
    assert len(added) == 3


def test_paths_are_the_library_contract(paper_config):
    run = RunSpec.parse("cifar10", "cl-fgsm-embed5-beta6", 1)
    assert str(grid.checkpoint_path("results", run)) == \
        "results/runs/cifar10/cl-fgsm-embed5-beta6/seed1/model.pt"
    assert str(grid.eval_path("results", run, "pgd")) == \
        "results/runs/cifar10/cl-fgsm-embed5-beta6/seed1/eval/pgd.json"
    assert str(grid.data_marker(paper_config, "mnist")) == "data/mnist-torchvision.ready.json"
    assert len(grid.table_inputs(paper_config, 4)) == 72
    targets = grid.targets(paper_config)
    # tables, plots, comparison, ledger, provenance; the audit: Table A, ε curve, checks,
    # a RobustBench JSON per audited model (7 defenses x 2 datasets x 3 seeds); the training
    # curves of the 8 accuracy tables (PNG, PDF)
    assert len(targets) == 9 * 3 + 2 * 2 + 2 * 2 + 1 + 3 + 2 + 2 + 42 + 8 * 2
    assert "results/robustbench/mnist/Linf/cl-pgd-embed5-beta1.5_seed2.json" in targets
    assert "results/plots/curves-table4.pdf" in targets
    assert str(grid.metrics_path("results", run)) == \
        "results/runs/cifar10/cl-fgsm-embed5-beta6/seed1/metrics.csv"
    assert {"results/comparison.csv", "results/ledger.md"} <= set(targets)


def test_missing_intermediates_names_deleted_inputs_of_built_outputs(tmp_path, paper_config):
    config = {**paper_config, "results": str(tmp_path)}
    assert grid.missing_intermediates(config) == {}  # nothing built: nothing stale
    (tmp_path / "tableA.md").write_text("built")
    run = grid.audit_runs(config)[0]
    made = grid.eval_path(str(tmp_path), run, "autoattack")
    made.parent.mkdir(parents=True)
    made.write_text("{}")
    missing = grid.missing_intermediates(config)
    assert str(made) not in missing[str(tmp_path / "tableA.md")]  # present: not named
    assert len(missing[str(tmp_path / "tableA.md")]) == len(grid.audit_runs(config)) - 1
    assert missing[str(made)] == [str(grid.checkpoint_path(str(tmp_path), run))]
    (tmp_path / "checks.md").write_text("built")  # made from both kinds of audit JSON
    missing = grid.missing_intermediates(config)
    assert len(missing[str(tmp_path / "checks.md")]) == 2 * len(grid.audit_runs(config)) - 1


def test_selected_tables_narrow_runs_targets_and_audit(paper_config):
    """grid.tables: [2, 8, 9] (config/mnist-real.yaml) plans the MNIST tables' 21 runs only,
    audits Table 2 alone and drops the CIFAR-10 ablation plots; the default is all nine."""
    assert grid.selected(paper_config) == tuple(range(1, 10))
    paper_config["grid"]["tables"] = [9, 2, 8]
    assert grid.selected(paper_config) == (2, 8, 9)
    runs = grid.all_runs(paper_config)
    assert len(runs) == 7 * 3 and {run.dataset for run in runs} == {"mnist"}
    assert [t.number for t in grid.audit_tables(paper_config)] == [2]
    targets = set(grid.targets(paper_config))
    assert {f"results/table{n}.md" for n in (2, 8, 9)} <= targets
    assert not {"results/table1.md", "results/table3.md", "results/plots/beta.png"} & targets
    assert {"results/tableA.md", "results/comparison.md", "results/plots/epsilon.png"} <= targets
    assert len(grid.all_eval_inputs(paper_config)) == 21 * 4
    paper_config["grid"]["tables"] = [4]  # the layer ablation: its plot, no audit
    assert grid.audit_tables(paper_config) == [] and "results/tableA.md" not in \
        grid.targets(paper_config)
    assert "results/plots/layer.png" in grid.targets(paper_config)


def test_selected_tables_are_checked(paper_config):
    """A table number the config does not define (10 exists only with a plugin dataset) is one
    line naming grid.tables and the tables there are (the workflow raises it at start-up)."""
    paper_config["grid"]["tables"] = [2, 10]
    validate_config(paper_config)  # a number is a number: which exist depends on the plugins
    with pytest.raises(UserError, match=r"grid.tables: \[10\] is not a table of this config"):
        grid.selected(paper_config)
    paper_config["grid"]["tables"] = [0]
    with pytest.raises(ConfigError, match="grid.tables.0"):
        validate_config(paper_config)


def test_mnist_real_preset_plans_the_mnist_tables_on_real_digits():
    """config/mnist-real.yaml: valid, 21 trainings (7 defenses x 3 seeds) of Tables 2, 8, 9 on
    the embedded real digits, from scratch (offline), audited on Table 2's models."""
    config = validate_config(load_config(ROOT / "config.yaml", ROOT / "config/mnist-real.yaml"))
    runs = grid.all_runs(config)
    assert len(runs) == 21 and {r.dataset for r in runs} == {"mnist"}
    assert {r.seed for r in runs} == {0, 1, 2}
    assert config["data"]["datasets"]["mnist"]["source"] == "embedded"
    assert config["model"]["pretrained"] == "none"
    assert len(grid.audit_runs(config)) == 21
    assert len(grid.all_eval_inputs(config)) == 84
