"""Report rendering on hand-made eval JSONs: aggregation, captions, files, plots."""
import csv
import statistics

import pytest

from repro import grid, report


@pytest.fixture
def tables(paper_config):
    paper_config["grid"]["seeds"] = [0, 1]
    return grid.tables(paper_config)


def fake_evals(table, source="synthetic stand-in for CIFAR-10"):
    """One eval JSON per (run, attack) with a known, seed-dependent accuracy."""
    evals = []
    for run in table.runs():
        for i, attack in enumerate(table.attacks):
            value = 10.0 * i + run.seed
            evals.append({"run": run.as_dict(), "attack": attack, "top1": value,
                          "top3": value + 1, "top5": value + 2, "n": 32,
                          "data_source": source, "protocol": {"epsilon": 0.031}})
    return evals


def test_aggregate_mean_and_sample_std(tables):
    cells = report.aggregate(tables[4], fake_evals(tables[4]))
    mean, std, n = cells[("ResNet+CL-Output-FGSM", "pgd")]
    assert (mean, n) == (20.5, 2)
    assert std == pytest.approx(statistics.stdev([20.0, 21.0]))


def test_missing_seed_is_an_error(tables):
    evals = [e for e in fake_evals(tables[5]) if e["run"]["seed"] == 0]
    with pytest.raises(ValueError, match="seed"):
        report.aggregate(tables[5], evals)


def test_caption_names_source_metric_seeds_protocol(tables):
    text = report.caption(tables[7], fake_evals(tables[7]))
    for part in ("Table 7", "synthetic stand-in for CIFAR-10", "top5", "seeds 0, 1",
                 "epsilon=0.031", "32 test images"):
        assert part in text


def test_caption_takes_each_protocol_value_from_the_evaluations_that_read_it(tables):
    """A changed DeepFool setting reruns only the DeepFool evaluations (params:): the others
    keep recording the old value, which they never read. The caption shows the new one; two
    evaluations that both read a value and disagree on it are an error."""
    evals = fake_evals(tables[4])
    for ev in evals:
        ev["protocol"] = {"epsilon": 0.031, "deepfool": {"steps": 5 if ev["attack"] == "deepfool"
                                                         else 20}}
    text = report.caption(tables[4], evals)
    assert "deepfool.steps=5" in text and "deepfool.steps=20" not in text
    assert "epsilon=0.031" in text
    next(ev for ev in evals if ev["attack"] == "deepfool")["protocol"]["deepfool"]["steps"] = 9
    with pytest.raises(ValueError, match="protocol.deepfool"):
        report.caption(tables[4], evals)


def test_mixed_sources_refused(tables):
    evals = fake_evals(tables[1])
    evals[0]["data_source"] = "real CIFAR-10 (torchvision)"
    with pytest.raises(ValueError, match="data source"):
        report.caption(tables[1], evals)


def test_written_table_files(tables, tmp_path):
    table = tables[5]
    paths = [tmp_path / f"t.{ext}" for ext in ("md", "csv", "tex")]
    report.write_accuracy_table(table, fake_evals(table), *paths, compare_with_paper=True)
    md = paths[0].read_text()
    assert "| Model | Id | FGSM | PGD | Deepfool |" in md
    assert "| ResNet+CL-0.1-FGSM | 0.50 (0.71) [paper 74.92 (0.54)] |" in md
    rows = list(csv.DictReader(paths[1].open()))
    assert [r["row_label"] for r in rows] == [r.label for r in table.rows]
    assert float(rows[0]["fgsm_mean"]) == 10.5 and rows[0]["paper_fgsm_mean"] == "51.17"
    assert r"\caption{Table 5" in paths[2].read_text()


def test_embedding_table(tables, tmp_path):
    row = {"layer": "embed1", "name": "Embedding-1", "components": "conv1 + bn1 + relu + maxpool"}
    rows = {"cifar10": [dict(row, shape=[64, 8, 8], dim=4096)],
            "mnist": [dict(row, shape=[64, 7, 7], dim=3136)]}
    paths = [tmp_path / f"t3.{ext}" for ext in ("md", "csv", "tex")]
    report.write_embedding_table(tables[3], rows, *paths)
    assert "| Embedding-1 | conv1 + bn1 + relu + maxpool | 64×8×8 | 4096 | 64×7×7 | 3136 |" \
        in paths[0].read_text()


@pytest.mark.parametrize("by, number", [("beta", 5), ("layer", 4)])
def test_plots(tables, tmp_path, by, number):
    outputs = [tmp_path / f"{by}.png", tmp_path / f"{by}.pdf"]
    report.plot_table(tables[number], fake_evals(tables[number]), by, outputs)
    assert all(p.stat().st_size > 1000 for p in outputs)


def test_reported_numbers_shipped():
    paper = report.reported()
    assert paper[(1, "ResNet+CL-FGSM", "pgd")] == (46.52, 0.17)
    assert (8, "ResNet+CL-PGD", "clean") not in paper  # the unreadable cell


def test_provenance_has_one_row_per_evaluation(tables):
    evals = fake_evals(tables[4])
    for ev in evals:
        ev.update(provenance={"torch": "2.14.1+cpu", "device": "cpu", "git_commit": "abc"},
                  training={"epochs": 3, "wall_seconds": 12.5,
                            "provenance": {"torch": "2.14.1+cu130"}}, wall_seconds=1.5)
    evals[-1]["training"]["provenance"]["torch"] = "2.15.0"
    evals[0]["cuda_graphs"] = {"setting": "auto", "used": False, "self_check": "failed",
                               "self_check_difference": 1.0, "self_check_tolerance": 0.0156}
    evals[0]["training"]["cuda_graphs"] = {"setting": "auto", "used": True,
                                           "self_check": "passed",
                                           "self_check_difference": 3e-7,
                                           "self_check_tolerance": 0.0156}
    evals[1]["cuda_graphs"] = {"setting": "off", "used": False, "batches": {"eager": 4}}
    rows = list(csv.DictReader(report.provenance_csv(evals, {"torch": "2.14.1"}).splitlines()))
    assert len(rows) == len(evals) == 6 * 2 * 4
    first = rows[0]
    assert (first["dataset"], first["run"], first["seed"], first["attack"]) == \
        ("cifar10", "cl-fgsm-embed1-beta6", "0", "clean")
    assert (first["torch"], first["git_commit"], first["epochs"], first["n"]) == \
        ("2.14.1+cpu", "abc", "3", "32")
    # a build tag is the same release; a training made with another torch is flagged
    assert [row["lock"] for row in rows].count("matches") == len(rows) - 1
    assert "torch 2.15.0 (lock: 2.14.1)" in {row["lock"] for row in rows}
    assert first["host"] == ""  # not recorded: left empty, never invented
    # the CUDA graphs' self-check of training and evaluation (repro.runtime.selfcheck)
    graphs = {(row["train_graphs"], row["eval_graphs"]) for row in rows}
    assert ("self-check passed (3e-07 of 0.016 allowed)",
            "self-check FAILED, ran eagerly (1 of 0.016 allowed)") in graphs
    assert ("", "off") in graphs


def test_caption_states_how_the_models_were_trained(tables):
    """A from-scratch run on few digits says so: sizes, weights, lr and the epochs it ran."""
    evals = fake_evals(tables[2], source="embedded MNIST")
    for i, ev in enumerate(evals):
        ev["training"] = {"epochs": 5 + i % 3, "lr": 1e-3, "pretrained": "none",
                          "max_epochs": 30, "patience": 3, "sizes": {"train": 3900, "val": 100}}
    text = report.caption(tables[2], evals)
    assert ("Training: 3,900 train / 100 validation images; starting weights none; lr 0.001; "
            "5-7 epochs (early stopping on validation loss, patience 3, at most 30") in text
    assert "Training:" not in report.caption(tables[2], fake_evals(tables[2]))
