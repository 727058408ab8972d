"""The registries (repro.registry): the built-in members, a user's member in one file of their
own (tests/plugins/, outside the package), and one-line refusals of a wrong plugin."""
import copy

import pytest
import torch
import yaml

from repro import cli, grid, records, registry
from repro.config import ConfigError, RunSpec, Settings, load_config, validate_config
from repro.cost.estimate import estimate, format_estimate
from repro.defenses import training_loss
from repro.models.resnet import build_model
from repro.registry import PluginError

from conftest import ROOT

DEFENSE = "tests/plugins/toy_defense.py"
ATTACK = "tests/plugins/toy_attack.py"
LAYERED = "tests/plugins/toy_layered.py"
DATASET = "tests/plugins/toy_dataset.py"


@pytest.fixture(autouse=True)
def _from_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # plugin paths are relative to the folder one runs from


def with_plugins(*plugins, **grid_values) -> dict:
    config = load_config(ROOT / "config.yaml")
    config["plugins"] = list(plugins)
    config["evaluation"]["attacks"] += ["gaussian"] if ATTACK in plugins else []
    config["grid"].update(grid_values)
    return validate_config(config)


def test_builtin_members_in_the_papers_order_with_its_labels():
    assert registry.ids("defense")[:7] == ("standard", "at-fgsm", "at-pgd", "trades-fgsm",
                                           "trades-pgd", "cl-fgsm", "cl-pgd")
    assert registry.ids("attack")[:4] == ("clean", "fgsm", "pgd", "deepfool")
    assert [registry.attack(a).label for a in ("clean", "deepfool")] == ["Id", "Deepfool"]
    assert [d.id for d in registry.active("defense") if d.layered] == ["cl-fgsm", "cl-pgd"]


def test_job_counts_follow_the_grid_and_a_plugin_adds_its_rows_only_where_named():
    paper = validate_config(load_config(ROOT / "config.yaml"))
    ours = with_plugins(DEFENSE, ATTACK)
    runs, attacks = grid.all_runs(ours), grid.attacks(ours)
    assert attacks == ("clean", "fgsm", "pgd", "deepfool", "gaussian")
    seeds = len(ours["grid"]["seeds"])
    assert len(runs) == len(grid.all_runs(paper)) + 2 * seeds  # one row in Tables 1 and 2
    assert [r.label for r in grid.tables(ours)[1].rows][-1] == "ResNet+Noise"
    result = estimate(ours, {"*": 100.0})
    audited = len(grid.audit_runs(ours))
    assert (result["training_jobs"], result["evaluation_jobs"]) == \
        (len(runs), len(runs) * len(attacks) + audited * len(grid.AUDITS))
    # the paper's config, checked after the plugins were loaded, does not see them
    assert len(grid.all_runs(validate_config(load_config(ROOT / "config.yaml")))) == 72
    chosen = with_plugins(DEFENSE, defenses=["standard", "noise-aug"])
    assert [r.defense for r in grid.tables(chosen)[2].rows] == ["standard", "noise-aug"]


def test_a_plugins_own_settings_have_defaults_and_rerun_exactly_its_jobs():
    config = with_plugins(DEFENSE, ATTACK)
    settings = Settings.from_config(config)
    assert settings.protocol.value("noise_aug") == {"scale": 0.1}  # the declared default
    assert records.training_keys("noise-aug") == ("attack_space", "normalization", "noise_aug")
    toy, standard = RunSpec("mnist", "noise-aug", 0), RunSpec("mnist", "standard", 0)
    changed = copy.deepcopy(config)
    changed["protocol"]["noise_aug"]["scale"] = 0.2
    changed["protocol"]["gaussian"] = {"sigma": 0.1}
    after = Settings.from_config(validate_config(changed))
    assert records.run_record(after, toy) != records.run_record(settings, toy)
    assert records.run_record(after, standard) == records.run_record(settings, standard)
    assert records.evaluation_record(after, standard, "gaussian")["attack"] == \
        {"attack_space": "normalized", "gaussian": {"sigma": 0.1}}
    assert records.evaluation_record(after, standard, "pgd") == \
        records.evaluation_record(settings, standard, "pgd")
    assert settings.protocol.as_record()["gaussian"] == {"sigma": 0.5}


def test_a_plugins_defense_and_attack_train_and_attack(make_settings):
    config = with_plugins(DEFENSE, ATTACK)
    settings = Settings.from_config({**config, "model": {"pretrained": "none"}})
    model = build_model(settings, "mnist", 0).train()
    inputs = torch.rand(4, 3, 28, 28)
    labels = torch.arange(4)
    run = RunSpec("mnist", "noise-aug", 0)
    loss, _ = training_loss(model, inputs, labels, run, settings.protocol,
                            torch.Generator().manual_seed(0))
    again, _ = training_loss(model, inputs, labels, run, settings.protocol,
                             torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss == again  # its draws come from the run's stream
    from repro.attacks import run_attack
    adv, logits = run_attack(model.eval(), "gaussian", inputs, labels, settings.protocol,
                             torch.Generator().manual_seed(0))
    assert logits.shape == (4, 10) and 0.3 < (adv - inputs).std() < 0.7  # σ = 0.5


def test_estimate_prices_a_member_without_rate_or_cost_by_a_stated_rule():
    result = estimate(with_plugins(DEFENSE, ATTACK), {"standard": 400.0})
    assert "declares no cost; priced as a PGD-trained defense" in result["pricing"]["noise-aug"]
    assert "declares no cost; priced as PGD" in result["pricing"]["gaussian"]
    assert "training cl-pgd: no measured rate; priced by its declared cost, 21.6667" in \
        format_estimate(result)


def test_a_layered_plugin_gets_a_layer_beta_and_a_main_beta():
    registry.load_plugins([LAYERED])
    run = RunSpec.parse("cifar10", "act-penalty-embed3-beta0.5", 1)
    assert (run.defense, run.layer, run.beta) == ("act-penalty", "embed3", 0.5)
    with pytest.raises(ConfigError, match="grid.main_beta: 'act-penalty' is a required"):
        with_plugins(LAYERED)
    config = with_plugins(LAYERED, main_beta={"cl-fgsm": 6, "cl-pgd": 1.5, "act-penalty": 2})
    assert grid.main_run(config, "act-penalty").name == "act-penalty-embed5-beta2"
    config["grid"]["layer_ablation"]["defense"] = "act-penalty"
    assert "ResNet+ActPenalty-Embed-1" in [r.label for r in grid.tables(config)[4].rows]


def test_a_plugins_dataset_gets_its_entry_its_table_and_its_data(make_settings):
    from repro import data

    config = with_plugins(DATASET)
    assert config["data"]["datasets"]["stripes"] == {"source": "generated", "val_size": 100}
    table = grid.tables(config)[grid.OWN_TABLES_FROM]
    assert (table.dataset, table.metric, len(table.rows)) == ("stripes", "top1", 7)
    assert f"table{grid.OWN_TABLES_FROM}.md" in " ".join(grid.targets(config))
    assert {run.dataset for run in grid.audit_runs(config)} == {"cifar10", "mnist"}
    splits = data.load(Settings.from_config(config), "stripes")
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [500, 100, 200]
    assert splits.test.images.shape[1:] == (3, 16, 16) and splits.source == "Stripes (generated)"
    assert data.normalization(Settings.from_config(config), "stripes") == ((0.5,) * 3,
                                                                            (0.25,) * 3)
    stand_in = copy.deepcopy(config)
    stand_in["data"]["datasets"]["stripes"] = {"source": "synthetic", "val_size": 10,
                                               "subset": {"train": 20, "test": 5}}
    assert data.load(Settings.from_config(validate_config(stand_in)), "stripes").train \
        .images.shape == (20, 3, 16, 16)
    stand_in["data"]["datasets"]["stripes"]["source"] = "embedded"
    with pytest.raises(ConfigError, match="data.datasets.stripes.source: 'embedded' is not one"):
        validate_config(stand_in)
    result = estimate(config, {"*": 100.0})
    assert result["runs"][("stripes", "standard")] == len(config["grid"]["seeds"])


def _plugin(tmp_path, body: str, name="bad.py") -> str:
    path = tmp_path / name
    path.write_text("from repro.registry import Attack, Defense\n" + body)
    return str(path)


LOSS = "lambda model, inputs, labels, run, protocol, noise: None"
BAD_PLUGINS = [
    ("MEMBERS = [Defense(id='x-def', reads=(), loss=LOSS)]", "label: cannot be loaded"),
    ("MEMBERS = [Defense(id='at-pgd', label='Mine', reads=(), loss=LOSS)]",
     "defense 'at-pgd': id is already declared by builtin"),
    ("MEMBERS = [Defense(id='Bad_Id', label='B', reads=(), loss=LOSS)]", "id: 'Bad_Id'"),
    ("MEMBERS = [Attack(id='a1', label='A', reads=('epsilonn',), run=LOSS)]",
     "attack 'a1': reads: ['epsilonn']"),
    ("MEMBERS = [Attack(id='a2', label='A', reads=(), run=LOSS, settings_key='a2', "
     "schema={'type': 'objekt'}, defaults={})]", "attack 'a2': schema: not a JSON schema"),
    ("MEMBERS = [Attack(id='a3', label='A', reads=(), run=LOSS, settings_key='a3', "
     "schema={'type': 'object', 'properties': {'k': {'type': 'integer'}}}, "
     "defaults={'k': 'one'})]", "attack 'a3': defaults: 'one' is not of type 'integer'"),
    ("MEMBERS = [Attack(id='a4', label='A', reads=(), run='not code')]", "a4': run:"),
    ("DEFENSES = []", "MEMBERS: missing or empty"),
    ("from repro.registry import Dataset\nMEMBERS = [Dataset(id='d1', label='D', shape=(3, 8), "
     "statistics=((0,) * 3, (1,) * 3), sizes=(10, 10), sources={})]", "dataset 'd1': shape:"),
    ("from repro.registry import Dataset\nMEMBERS = [Dataset(id='d2', label='D', "
     "shape=(3, 8, 8), statistics=((0,) * 3, (1,) * 3), sizes=(10, 10), "
     "sources={'synthetic': LOSS})]", "dataset 'd2': sources: 'synthetic' is every"),
]


@pytest.mark.parametrize("body, message", BAD_PLUGINS)
def test_a_wrong_plugin_is_one_line_naming_its_file_and_field(tmp_path, body, message):
    path = _plugin(tmp_path, f"LOSS = {LOSS}\n{body}\n")
    config = load_config(ROOT / "config.yaml")
    config["plugins"] = [path]
    with pytest.raises(PluginError) as refused:
        validate_config(config)
    [line] = str(refused.value).splitlines()
    assert line.startswith(f"{path}: ") and message in line, line


def test_the_cli_refuses_a_wrong_plugin_and_names_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"plugins": ["no/such/plugin.py"]}))
    with pytest.raises(SystemExit) as stopped:
        cli.main(["estimate", "--configfile", str(overlay)])
    assert str(stopped.value.code) == (
        "python -m repro estimate: plugins: no/such/plugin.py is not a .py file; give the "
        "path of a member module, relative to the folder you run from")


def test_audit_kinds_are_not_attacks_on_the_command_line(monkeypatch, capsys):
    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["evaluate", "--dataset", "mnist", "--defense", "standard", "--checkpoint",
                  "m.pt", "--attack", "epsilon"])
    assert "python -m repro audit --kind epsilon" in str(stopped.value.code)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["evaluate", "--dataset", "mnist", "--defense", "mart", "--checkpoint",
                  "m.pt", "--attack", "pgd"])
    assert "unknown defense 'mart'" in str(stopped.value.code)
