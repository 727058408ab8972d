import pytest

from repro.config import load_config
from repro.estimate import estimate, parse_rates


def test_full_config_counts_every_job_once():
    result = estimate(load_config("config.yaml"), {"*": 100.0}, epochs=10)
    assert (result["training_jobs"], result["evaluation_jobs"]) == (72, 288)
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
