"""The audit in the pipeline: its JSONs on a real (tiny) checkpoint, Table A, the ε curve,
the checks' rendering, the grid's targets and what `snakemake results/tableA.md` schedules."""
import csv
import json

import pytest

from repro import grid

from repro.report import audit_report, compare

from repro.report import masking
from repro.runs.audit import evaluate_audit
from repro.config import RunSpec, Settings
from repro.runs.train import train_run

RUN = RunSpec("mnist", "standard", seed=0)
TINY_AUDIT = {"n_images": 16, "chunk_size": 16, "epsilons": [0, 8, 64],
              "autoattack": {"apgd_ce": {"steps": 2}, "apgd_t": {"steps": 2, "targets": 1},
                             "fab_t": {"steps": 2, "targets": 1}, "square": {"queries": 5}}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny ResNet-18 checkpoint (paper protocol: normalized tensors, no box)."""
    from conftest import TINY

    config = {**TINY, "training": {**TINY["training"], "lr": 1e-3, "max_epochs": 1},
              "audit": TINY_AUDIT}
    path = tmp_path_factory.mktemp("run") / "model.pt"
    train_run(Settings.from_config(config), RUN, path, progress=False)
    return config, path


def test_autoattack_json_records_budget_threat_model_and_images(trained, tmp_path):
    config, path = trained
    out = tmp_path / "autoattack.json"
    result = evaluate_audit(Settings.from_config(config), RUN, path, "autoattack", out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["n"] == 16 and result["chunk_size"] == 16
    assert result["budget"] == {"apgd_ce_steps": 2, "apgd_t_steps": 2, "apgd_t_targets": 1,
                                "fab_t_steps": 2, "fab_t_targets": 1, "square_queries": 5}
    assert result["original_budget"] is False
    threat = result["threat_model"]
    assert threat["space"] == "normalized" and "no box" in threat["text"]
    assert threat["box"][0] < -1  # normalized values far below 0 stay reachable
    assert 0 <= result["autoattack_top1"] <= result["clean_top1"] <= 100
    assert sum(result["fooled_first_by"].values()) <= 16
    # the same JSON as a RobustBench entry, and the run's training curves read back
    from test_robustbench import assert_robustbench_entry

    from repro.report import curves, reported, robustbench
    assert_robustbench_entry(robustbench.model_info(result, reported(), "none"), result)
    epochs = curves.read_metrics(path.with_name("metrics.csv"))
    assert len(epochs) == config["training"]["max_epochs"] and epochs[0]["best"]


def test_audit_numbers_do_not_follow_evaluation_chunk_size(trained):
    config, path = trained
    results = [evaluate_audit(Settings.from_config(
        {**config, "evaluation": {"chunk_size": chunk}}), RUN, path, kind)
        for kind in ("autoattack", "epsilon") for chunk in (4, 64)]
    keys = ("clean_top1", "fgsm_top1", "pgd_top1", "autoattack_top1", "fooled_first_by",
            "pgd_fooled_autoattack_not")
    assert [results[0][k] for k in keys] == [results[1][k] for k in keys]
    assert results[2]["top1_by_epsilon"] == results[3]["top1_by_epsilon"]


def fake_audits(config, drop=5.0):
    """autoattack and epsilon JSONs of every main-table run, with known numbers."""
    autoattack, curves = [], []
    for run in grid.audit_runs(config):
        base = {"run": run.as_dict(), "n": 100,
                "data_source": f"stand-in for {run.dataset}"}
        pgd = 40.0 + run.seed
        autoattack.append({
            **base, "clean_top1": 90.0, "fgsm_top1": 50.0, "pgd_top1": pgd,
            "autoattack_top1": pgd - drop, "fooled_first_by": {c: 0 for c in
                                                               ("apgd-ce", "apgd-t", "fab-t",
                                                                "square")},
            "pgd_fooled_autoattack_not": [], "original_budget": True,
            "budget": {"apgd_ce_steps": 100, "apgd_t_steps": 100, "apgd_t_targets": 9,
                       "fab_t_steps": 100, "fab_t_targets": 9, "square_queries": 5000},
            "threat_model": {"text": "L∞ ε = 0.031 on normalized tensors, no box"},
            "pgd_parameters": {"steps": 20, "step_size": 0.008, "random_start": False}})
        curves.append({**base, "epsilons_255": [0, 8, 64], "top1_by_epsilon": [90.0, pgd, 0.0],
                       "table_epsilon": 0.031, "clip": False})
    return autoattack, curves


def test_table_a_rows_columns_and_caption(paper_config, tmp_path):
    paper_config["grid"]["seeds"] = [0, 1]
    tables = grid.audit_tables(paper_config)
    autoattack, curves = fake_audits(paper_config)
    files = [tmp_path / f"tableA.{ext}" for ext in ("md", "csv", "tex")]
    audit_report.write_table_a(tables, autoattack, *files)
    rows = list(csv.DictReader(open(files[1])))
    assert len(rows) == 14 and [r["dataset"] for r in rows] == ["cifar10"] * 7 + ["mnist"] * 7
    assert rows[0]["row_label"] == "ResNet" and rows[-1]["row_label"] == "ResNet+CL-PGD"
    assert float(rows[0]["pgd_mean"]) == pytest.approx(40.5)
    assert float(rows[0]["drop_mean"]) == pytest.approx(5.0)
    assert float(rows[0]["autoattack_std"]) == pytest.approx(0.7071, abs=1e-3)
    md = files[0].read_text()
    assert "first 100 test images" in md and "no box" in md and "original AutoAttack" in md
    assert "seeds 0, 1" in md and "stand-in for mnist" in md
    audit_report.plot_epsilon(tables, curves, [tmp_path / "e.png", tmp_path / "e.pdf"])
    assert (tmp_path / "e.png").stat().st_size > 1000


def test_table_a_refuses_a_missing_seed(paper_config, tmp_path):
    tables = grid.audit_tables(paper_config)  # seeds 0, 1, 2
    autoattack, _ = fake_audits({**paper_config, "grid": {**paper_config["grid"],
                                                          "seeds": [0, 1]}})
    with pytest.raises(ValueError, match="seed"):
        audit_report.write_table_a(tables, autoattack, *(tmp_path / f"t.{e}"
                                                         for e in ("md", "csv", "tex")))


def test_checks_name_the_failing_model_and_the_reduced_budget_is_inconclusive(paper_config):
    paper_config["grid"]["seeds"] = [0]
    autoattack, curves = fake_audits(paper_config, drop=-3.0)  # AutoAttack weaker than PGD
    autoattack[1]["original_budget"] = False
    rows = masking.run_checks(autoattack, curves, tolerance=1.0, near_zero=10.0)
    failed = {r["model"]: r for r in rows if r["check"] == "aa<=pgd"}
    assert failed["cifar10 standard seed 0"]["verdict"] == masking.FAILS
    assert "AutoAttack 43.00% vs PGD 40.00%" in failed["cifar10 standard seed 0"]["numbers"]
    assert failed["cifar10 at-fgsm seed 0"]["verdict"] == masking.INCONCLUSIVE
    text = "\n".join(masking.summary(rows))
    assert "cifar10 standard seed 0: AutoAttack 43.00%" in text
    assert "14 holds" in text  # PGD <= FGSM everywhere


def test_grid_audits_every_main_table_run_once(paper_config):
    runs = grid.audit_runs(paper_config)
    assert len(runs) == len(set(runs)) == 7 * 2 * 3
    assert {f"{paper_config['results']}/tableA.md", f"{paper_config['results']}/checks.md",
            f"{paper_config['results']}/plots/epsilon.png"} <= set(grid.targets(paper_config))


def test_table_a_schedules_one_autoattack_per_main_table_run():
    from test_workflow import job_counts

    assert job_counts("results/tableA.md") == {"prepare_data": 2, "train": 42,
                                               "audit_evaluate": 42, "audit_table": 1}
    counts = job_counts()
    assert counts["audit_evaluate"] == 2 * 42  # autoattack and epsilon per main-table run
    assert counts["masking_checks"] == counts["epsilon_plot"] == counts["comparison"] == 1


def test_audit_of_the_mnist_tables_alone(paper_config, tmp_path):
    """grid.tables: [2, 8, 9] (config/mnist-real.yaml): Table A, its caption, the ε plot and
    the comparison's audit section cover Table 2's models only."""
    paper_config["grid"].update(seeds=[0, 1], tables=[2, 8, 9])
    tables = grid.audit_tables(paper_config)
    autoattack, curves = fake_audits(paper_config)
    files = [tmp_path / f"tableA.{ext}" for ext in ("md", "csv", "tex")]
    audit_report.write_table_a(tables, autoattack, *files)
    rows = list(csv.DictReader(open(files[1])))
    assert [r["dataset"] for r in rows] == ["mnist"] * 7
    assert "models of Table 2:" in files[0].read_text()
    audit_report.plot_epsilon(tables, curves, [tmp_path / "e.png", tmp_path / "e.pdf"])
    assert (tmp_path / "e.png").stat().st_size > 1000
    section = compare.audit_markdown(compare.table_a_numbers(files[1]), [])
    assert "the models of Table 2 with AutoAttack" in section
    assert "On MNIST, CL-PGD is more robust than AT-PGD" in section
