"""The ledger of docs/fidelity.md against the presets: every row names real config keys, and
config.yaml / config/standard.yaml sit on the sides the ledger says they do."""
from pathlib import Path

import pytest

from repro.report import ledger
from repro.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs/fidelity.md").read_text()
PAPER = load_config(ROOT / "config.yaml")
STANDARD = load_config(ROOT / "config.yaml", ROOT / "config/standard.yaml")


def follows(config: dict) -> dict[str, str]:
    header, rows = ledger.render(DOC, config, PAPER, STANDARD)
    assert header[-2:] == ["value in this run", "follows"]
    return {row[0]: row[-1] for row in rows}


def test_every_row_of_the_ledger_is_rendered_in_order():
    _, rows = ledger.parse_table(DOC)
    assert [row[0] for row in rows] == [str(i) for i in range(1, len(rows) + 1)]
    assert len(rows) >= 13  # DESIGN.md's rows 1-13, plus what was found since


@pytest.mark.parametrize("config, side", [(PAPER, "paper's code"), (STANDARD, "standard")])
def test_each_preset_is_on_its_side_of_every_switch(config, side):
    sides = follows(config)
    assert set(sides.values()) <= {side, "both (no difference)"}
    assert sides["13"] == "both (no difference)"  # the model: same in both protocols
    assert list(sides.values()).count(side) == len(sides) - 1


def test_the_smoke_preset_keeps_the_papers_protocol():
    sides = follows(load_config(ROOT / "config.yaml", ROOT / "config/smoke.yaml"))
    assert sides.pop("13") == "other"  # no ImageNet weights offline: neither side's value
    assert set(sides.values()) == {"paper's code"}


def test_a_mixed_config_is_shown_as_such():
    mixed = load_config(ROOT / "config.yaml")
    mixed["protocol"]["pgd"]["random_start"] = True  # one of row 3's three keys
    _, rows = ledger.render(DOC, mixed, PAPER, STANDARD)
    row = next(r for r in rows if r[0] == "3")
    assert row[-1] == "standard" and "protocol.pgd.random_start = true" in row[-2]
    mixed["protocol"]["pgd"]["steps"] = 7
    assert follows(mixed)["3"] == "other"


def test_config_keys_expand_braces():
    assert ledger.config_keys("`protocol.pgd.{steps,step_size}` (`step` / `total`)") == \
        ["protocol.pgd.steps", "protocol.pgd.step_size"]


def test_a_key_the_config_lacks_is_an_error():
    broken = DOC.replace("`protocol.epsilon`", "`protocol.epsilonn`")
    with pytest.raises(KeyError, match="protocol.epsilonn"):
        ledger.render(broken, PAPER, PAPER, STANDARD)
