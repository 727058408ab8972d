import pytest

from repro.cli import main
from repro.config import load_config
from repro.estimate import estimate, floor_rates, format_estimate, parse_rates
from repro.grid import all_runs


def test_full_config_counts_every_job_once():
    result = estimate(load_config("config.yaml"), {"*": 100.0}, epochs=10)
    assert (result["training_jobs"], result["evaluation_jobs"]) == (72, 288 + 2 * 42)
    assert result["eval_jobs"]["autoattack"] == result["eval_jobs"]["epsilon"] == 42
    assert result["runs"][("cifar10", "cl-fgsm")] == 33  # 11 distinct (layer, beta) x 3 seeds


def test_hours_scale_with_epochs_and_throughput():
    config = load_config("config.yaml")
    base = estimate(config, {"*": 100.0}, epochs=10)
    assert estimate(config, {"*": 100.0}, epochs=20)["total_hours"] > base["total_hours"]
    faster = estimate(config, {"*": 200.0}, epochs=10)
    assert faster["total_hours"] == pytest.approx(base["total_hours"] / 2)
    assert base["eval_hours"]["pgd"] > base["eval_hours"]["fgsm"] > base["eval_hours"]["clean"]


def test_rates_per_defense_are_required_for_every_defense():
    assert parse_rates(["standard=400", "at-pgd=20"]) == {"standard": 400.0, "at-pgd": 20.0}
    assert parse_rates(["50"]) == {"*": 50.0}
    with pytest.raises(ValueError, match="at-fgsm"):
        estimate(load_config("config.yaml"), parse_rates(["standard=400", "at-pgd=20"]))


def test_flop_floor_prices_every_run_kind_and_scales_with_the_peak():
    config = load_config("config.yaml", "config/smoke.yaml")
    rates = floor_rates(config, peak_tflops=100.0)
    kinds = {(run.dataset, run.defense, run.layer) for run in all_runs(config)}
    assert kinds <= set(rates)
    # the contrastive clean pass stops at its layer: earlier layers cost less
    cl = {layer: rate for (dataset, defense, layer), rate in rates.items()
          if (dataset, defense) == ("cifar10", "cl-fgsm")}
    assert len(cl) > 1 and cl[min(cl)] > cl["embed5"]
    floor = estimate(config, rates, epochs=5)
    faster = estimate(config, {key: 2 * rate for key, rate in rates.items()}, epochs=5)
    assert faster["total_hours"] == pytest.approx(floor["total_hours"] / 2)
    measured = estimate(config, {"*": 100.0}, epochs=5)
    table = format_estimate(measured, floor)
    assert "vs floor" in table.splitlines()[2]
    ratio = measured["total_hours"] / floor["total_hours"]
    assert table.splitlines()[-1].split()[-1] == f"{ratio:.1f}x"


def test_estimate_needs_a_throughput_or_a_peak(capsys):
    with pytest.raises(SystemExit, match="--peak-tflops"):
        main(["estimate", "--configfile", "config/smoke.yaml"])


def test_autoattack_is_priced_by_its_budget_and_the_robust_share():
    config = load_config("config.yaml")
    base = estimate(config, {"*": 100.0}, epochs=10)
    hours = base["eval_hours"]
    # the original budget on 1,000 images outweighs PGD-20 on 10,000
    assert hours["autoattack"] > 5 * hours["pgd"]
    robust = estimate(config, {"*": 100.0}, epochs=10, robust_fraction=1.0)["eval_hours"]
    assert robust["autoattack"] > hours["autoattack"] and robust["pgd"] == hours["pgd"]
    config["audit"]["autoattack"]["square"]["queries"] = 50
    cheaper = estimate(config, {"*": 100.0}, epochs=10)["eval_hours"]
    assert cheaper["autoattack"] < hours["autoattack"]
