import pytest
import torch

from repro.cost import estimate as estimate_module
from repro.cli import main
from repro.config import load_config
from repro.errors import UserError
from repro.cost.estimate import cost_notice, estimate, floor_rates, format_estimate, parse_rates
from repro.grid import AUDITS, all_runs, attacks, audit_runs, checkpoint_path, eval_path
from repro.cost.measured import MEASURED, device_kind


def total_line(lines: list[str]) -> str:
    return next(line for line in lines if line.startswith("total"))


def test_full_config_counts_every_job_once():
    config = load_config("config.yaml")
    result = estimate(config, {"*": 100.0}, epochs=10)
    runs, audited = all_runs(config), audit_runs(config)
    assert (result["training_jobs"], result["evaluation_jobs"]) == \
        (len(runs), len(runs) * len(attacks(config)) + len(AUDITS) * len(audited))
    assert (len(runs), result["evaluation_jobs"]) == (72, 372)  # the paper's grid
    assert result["eval_jobs"]["autoattack"] == result["eval_jobs"]["epsilon"] == len(audited)
    assert result["runs"][("cifar10", "cl-fgsm")] == 33  # 11 distinct (layer, beta) x 3 seeds


def test_hours_scale_with_epochs_and_throughput():
    config = load_config("config.yaml")
    base = estimate(config, {"*": 100.0}, epochs=10)
    assert estimate(config, {"*": 100.0}, epochs=20)["total_hours"] > base["total_hours"]
    faster = estimate(config, {"*": 200.0}, epochs=10)
    assert faster["total_hours"] == pytest.approx(base["total_hours"] / 2)
    assert base["eval_hours"]["pgd"] > base["eval_hours"]["fgsm"] > base["eval_hours"]["clean"]


def test_a_defense_without_a_rate_is_priced_by_its_declared_cost_and_says_so():
    assert parse_rates(["standard=400", "at-pgd=20"]) == {"standard": 400.0, "at-pgd": 20.0}
    assert parse_rates(["50"]) == {"*": 50.0}
    config, rates = load_config("config.yaml"), parse_rates(["standard=400", "at-pgd=20"])
    result = estimate(config, rates)
    # at-fgsm declares 2 standard-training images per image (a training pass and one step)
    given = estimate(config, {**rates, "at-fgsm": 200.0})
    assert result["train_hours"][("mnist", "at-fgsm")] == \
        pytest.approx(given["train_hours"][("mnist", "at-fgsm")])
    assert "declared cost, 2 standard-training images" in result["pricing"]["at-fgsm"]
    assert "at-pgd" not in result["pricing"] and "at-fgsm" not in given["pricing"]
    assert "at-fgsm: no measured rate" in format_estimate(result)
    with pytest.raises(UserError, match="standard=N"):  # standard prices the unmeasured
        estimate(config, {"at-pgd": 20.0})


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
    assert total_line(table.splitlines()).split()[-1] == f"{ratio:.1f}x"


def test_estimate_defaults_to_the_rates_measured_on_this_kind_of_device(capsys):
    main(["estimate", "--device", "cpu", "--attack-images-per-second", "deepfool=10"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("training rates measured on cpu (")
    config = load_config("config.yaml")
    expected = estimate(config, MEASURED["cpu"]["train"],
                        attack_rates={"deepfool": 10})  # the flag replaces every attack rate
    assert total_line(out).split() == ["total", f"{expected['total_hours']:.1f}"]
    # what was priced without a rate, and how: PGD-20 from its declared step count
    assert "  attack pgd: no measured rate; priced by its declared cost, 20.3333 " \
        "standard-training images per image" in out


def test_measured_attack_rates_price_evaluation_not_the_pass_counts():
    config = load_config("config.yaml")
    counted = estimate(config, {"*": 100.0})
    measured = estimate(config, {"*": 100.0}, attack_rates={"deepfool": 50.0})
    jobs = counted["eval_jobs"]["deepfool"]
    assert measured["eval_hours"]["deepfool"] == pytest.approx(jobs * 10_000 / 50.0 / 3600)
    assert measured["eval_hours"]["pgd"] == counted["eval_hours"]["pgd"]


def test_pending_only_leaves_out_outputs_already_made(tmp_path):
    config = load_config("config.yaml")
    config["results"] = str(tmp_path)
    run = all_runs(config)[0]
    for path in (checkpoint_path(str(tmp_path), run), eval_path(str(tmp_path), run, "pgd")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    everything = estimate(config, {"*": 100.0}, pending_only=False)
    pending = estimate(config, {"*": 100.0}, pending_only=True)
    assert pending["training_jobs"] == everything["training_jobs"] - 1 == 71
    assert pending["evaluation_jobs"] == everything["evaluation_jobs"] - 1
    assert pending["eval_jobs"]["pgd"] == everything["eval_jobs"]["pgd"] - 1
    assert pending["total_hours"] < everything["total_hours"]


def _notice(monkeypatch, *overlays, kind=("cpu", "cpu"), device="cpu"):
    monkeypatch.setattr(estimate_module, "device_kind", lambda device: kind)
    monkeypatch.setattr(estimate_module.os, "cpu_count", lambda: 4)
    config = load_config("config.yaml", *overlays)
    config["runtime"]["device"] = device
    return cost_notice(config)


def test_cost_notice_above_a_day_says_so_and_names_the_cheaper_ways(monkeypatch):
    notice = _notice(monkeypatch)
    hours = estimate(load_config("config.yaml"), MEASURED["cpu"]["train"],
                     attack_rates=MEASURED["cpu"]["attack"])["total_hours"]
    assert "72 training and 372 evaluation jobs" in notice  # 288 + 84 audit evaluations
    assert f"at best {estimate_module._hours(hours / 4)} hours on its 4 cores" in notice
    assert "more than a day" in notice and "Nothing is stopped" in notice
    for way in ("--configfile config/smoke.yaml", "GPU-hours on an H100",
                "--profile profiles/slurm"):
        assert way in notice


def test_cost_notice_below_a_day_is_one_sentence(monkeypatch):
    smoke = _notice(monkeypatch, "config/smoke.yaml")
    assert "at 2 epochs per training" in smoke and "Cheaper" not in smoke
    gpu = _notice(monkeypatch, kind=("H100", "NVIDIA A40"), device="cuda")
    assert "GPU-hours on NVIDIA A40 (priced with the H100's rates" in gpu
    assert "more than a day" not in gpu


def test_device_kind_names_the_card_or_falls_back(monkeypatch):
    assert device_kind("cpu") == ("cpu", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100 80GB HBM3")
    assert device_kind("cuda:0") == ("H100", "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA A40")
    assert device_kind("auto") == ("H100", "NVIDIA A40")


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
