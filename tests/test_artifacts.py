"""Evaluation JSONs are checked when a table reads them; the error names the file and the
command that rebuilds it (tested end to end in test_workflow)."""
import pytest

from repro import grid, report

from repro.runs import artifacts
from repro.config import RunSpec
from repro.runtime.io import CorruptFile, write_json

RUN = RunSpec("cifar10", "cl-fgsm", 1, "embed5", 6)
GOOD = {"run": RUN.as_dict(), "attack": "pgd", "top1": 31.25, "top3": 60.0, "top5": 81.0,
        "n": 64}


@pytest.fixture
def path(tmp_path):
    """Where the workflow keeps the pgd evaluation of RUN."""
    return grid.eval_path(str(tmp_path / "results"), RUN, "pgd")


@pytest.mark.parametrize("change, problem", [
    ({"top1": 250}, "top1 is 250, not an accuracy in [0, 100]"),
    ({"top5": -1.0}, "top5 is -1.0, not an accuracy in [0, 100]"),
    ({"top3": "60"}, "top3 is '60', not an accuracy"),
    ({"top1": 70.0}, "not ordered top1 <= top3 <= top5"),
    ({"n": 0}, "n is 0, not a positive count"),
    ({"n": 64.5}, "n is 64.5, not a positive count"),
    ({"attack": "fgsm"}, "it holds attack 'fgsm', not 'pgd'"),
    ({"attack": "cw"}, "attack is 'cw', not one of"),
    ({"run": {**RUN.as_dict(), "seed": 0}},
     "it holds run cifar10 cl-fgsm-embed5-beta6 seed 0, not cifar10 cl-fgsm-embed5-beta6 seed 1"),
    ({"run": {"dataset": "svhn"}}, "is not a run"),
    ({"top1": None, "n": None}, "top1 is None"),
])
def test_an_evaluation_that_is_not_what_it_claims_is_refused(path, change, problem):
    write_json(path, {**GOOD, **change})
    with pytest.raises(CorruptFile) as refused:
        report.load_evals([path])
    message = str(refused.value)
    assert message.startswith(f"{path} is not a valid evaluation (") and problem in message
    assert f"`--forcerun {path}`" in message


def test_a_json_missing_keys_or_not_json_is_refused(path):
    write_json(path, {key: value for key, value in GOOD.items() if key != "n"})
    with pytest.raises(CorruptFile, match=r"lacks \['n'\]"):
        report.load_evals([path])
    path.write_text("garbage\n")
    with pytest.raises(CorruptFile, match=f"^{path} does not load as JSON.*--forcerun {path}`"):
        report.load_evals([path])


def test_a_valid_evaluation_loads(path, tmp_path):
    write_json(path, GOOD)
    elsewhere = tmp_path / "pgd.json"  # another layout: no run or attack to compare with
    write_json(elsewhere, {**GOOD, "attack": "fgsm"})
    assert report.load_evals([path, elsewhere]) == [GOOD, {**GOOD, "attack": "fgsm"}]


def test_audit_jsons_are_checked_with_their_own_accuracies():
    run = {"dataset": "mnist", "defense": "at-pgd", "seed": 0, "layer": None, "beta": None}
    autoattack = {"run": run, "attack": "autoattack", "n": 10, "top1": 40.0, "clean_top1": 90.0,
                  "fgsm_top1": 60.0, "pgd_top1": 45.0, "autoattack_top1": 40.0}
    assert artifacts.eval_problems(autoattack) == []
    assert artifacts.eval_problems({**autoattack, "pgd_top1": 145.0}) == \
        ["pgd_top1 is 145.0, not an accuracy in [0, 100]"]
    epsilon = {"run": run, "attack": "epsilon", "n": 10, "top1_by_epsilon": [90.0, 50.0, 0.0]}
    assert artifacts.eval_problems(epsilon) == []
    assert artifacts.eval_problems({**epsilon, "top1_by_epsilon": [90.0, -3.0]}) == \
        ["top1_by_epsilon is [90.0, -3.0], not an accuracy in [0, 100]"]
