"""``python -m repro calibrate`` (repro.cost.calibrate): a tiny run measures every defense and
attack, writes a rates file naming the device and date, and the estimate and the workflow's
cost notice price with it from then on, and say so. Timings are not checked, only that
they are rates and are used."""
from __future__ import annotations

import pytest
import yaml

from repro.cli import main
from repro import registry
from repro.config import load_config
from repro.cost import calibrate, measured
from repro.cost.estimate import cost_notice, measured_rates

from conftest import ROOT

TINY_RUNS = ["model.pretrained=none", "training.batch_size=4",
             "training.batch_size_by_dataset.mnist=4", "evaluation.chunk_size=4",
             "protocol.pgd.steps=2", "protocol.trades_pgd.steps=2", "protocol.deepfool.steps=2"]


@pytest.fixture(scope="module")
def rates_file(tmp_path_factory):
    """One tiny calibration through the CLI (budget 2 s: every measurement takes its minimum)."""
    path = tmp_path_factory.mktemp("calibrate") / "rates.yaml"
    args = ["calibrate", "--configfile", str(ROOT / "config/smoke.yaml"), "--device", "cpu",
            "--budget", "2", "--no-progress", "--out", str(path)]
    for override in TINY_RUNS:
        args += ["--set", override]
    assert main(args) == 0
    return path


def test_calibrate_measures_every_defense_and_attack_and_names_device_and_date(rates_file):
    rates = yaml.safe_load(rates_file.read_text())
    assert rates["device"] == rates["device_name"] == "cpu"
    assert list(rates["train"]) == list(registry.ids("defense"))
    assert list(rates["attack"]) == ["clean", "fgsm", "pgd", "deepfool"]
    assert all(rate > 0 for part in ("train", "attack") for rate in rates[part].values())
    assert rates["date"][:4].isdigit() and rates["date"] in rates["source"]
    assert "batch 4, chunk 4" in rates["source"] and "checks" not in rates  # CUDA only


def test_estimate_and_cost_notice_price_with_the_calibrated_rates(rates_file, monkeypatch,
                                                                  capsys):
    config = load_config(ROOT / "config.yaml", ROOT / "config/smoke.yaml")
    builtin = cost_notice(config)
    monkeypatch.setenv("REPRO_RATES", str(rates_file))
    kind, name, entry = measured_rates("cpu")
    rates = yaml.safe_load(rates_file.read_text())
    assert entry["train"] == rates["train"] and entry["attack"] == rates["attack"]
    notice = cost_notice(config)
    assert notice != builtin and f"Rates calibrated on one CPU core on {rates['date']}" in notice
    assert main(["estimate", "--configfile", str(ROOT / "config/smoke.yaml"),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"training and attack rates calibrated on one CPU core on "
                          f"{rates['date']}") and str(rates_file) in out.splitlines()[0]


def test_rates_of_another_device_are_not_used_and_a_damaged_file_is_named(rates_file,
                                                                          monkeypatch, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(rates_file.read_text().replace("device_name: cpu",
                                                    "device_name: NVIDIA A100-SXM4-40GB"))
    monkeypatch.setenv("REPRO_RATES", str(other))
    assert measured_rates("cpu")[2] is measured.MEASURED["cpu"]
    other.write_text("device_name: cpu\ntrain: [1, 2]\n")
    with pytest.raises(SystemExit, match=f"^python -m repro estimate: {other} is not a rates "
                                         f"file of python -m repro calibrate"):
        main(["estimate", "--device", "cpu"])


def test_the_default_rates_file_is_in_the_user_s_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("REPRO_RATES")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert measured.rates_path() == tmp_path / "repro" / "rates.yaml"
    monkeypatch.setenv("REPRO_RATES", str(tmp_path / "mine.yaml"))
    assert measured.rates_path() == tmp_path / "mine.yaml"


def test_the_budget_is_shared_out_and_each_measurement_times_one_to_an_epoch():
    assert calibrate.batches_for(10.0, 1.0, most=100) == 5  # half of a share is warm-up
    assert calibrate.batches_for(0.0, 1.0, most=100) == 1
    assert calibrate.batches_for(1000.0, 0.01, most=3) == 3
    assert calibrate.batches_for(1000.0, 0.01, most=100) == calibrate.MAX_BATCHES
    clock = calibrate.Clock(100.0, 4)
    assert 24 < clock.share() <= 25 and clock.items == 3


def test_rates_are_printed_beside_the_built_in_ones(rates_file):
    rates = yaml.safe_load(rates_file.read_text())
    text = calibrate.format_rates(rates)
    line = next(row for row in text.splitlines() if row.startswith("train at-pgd"))
    assert f"{rates['train']['at-pgd']:.1f}" in line and "41.9" in line
    assert measured.MEASURED["cpu"]["source"] in text
