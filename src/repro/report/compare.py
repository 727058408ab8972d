"""Paper against reproduction: every reported cell beside ours with a verdict, and the paper's
conclusions restated as checks that run on any set of numbers (the paper's, ours, another
protocol's), so "does the conclusion hold?" is computed, never typed.

All numbers travel as one long DataFrame per source, a row per (table, row_label, attack) with
``mean`` and ``std`` (plus ``layer``/``beta`` for the ablations): the paper's come from the
shipped ``reported.csv``, ours from the table CSVs the report wrote (a comparison never reaches
back into evaluations or checkpoints).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from repro import registry
from repro.config import LAYERS, Settings
from repro.data import describe_source
from repro.grid import ATTACK_NAMES, BETA_TABLE, DATASET_NAMES, LAYER_TABLE
from repro.report import fmt_cell, to_markdown

KEY = ["table", "row_label", "attack"]
VERDICT_RULE = ("a cell agrees when |ours − paper| ≤ paper std + our std, i.e. the two "
                "mean ± std intervals over seeds overlap")
# Ledger 5: DeepFool accuracy at or below this counts as "near chance" (10 classes: 10%).
CHANCE_BAND = 20.0


# ---- the numbers ----

def table_numbers(paths: dict[int, str | Path]) -> pd.DataFrame:
    """Our cells from the table CSVs written by ``report.write_accuracy_table`` (number -> path)."""
    frames = []
    for number, path in paths.items():
        wide = pd.read_csv(path)
        for attack in registry.ids("attack"):
            if f"{attack}_mean" in wide:
                frames.append(pd.DataFrame({
                    "table": number, "row_label": wide["row_label"], "layer": wide["layer"],
                    "beta": wide["beta"], "attack": attack, "mean": wide[f"{attack}_mean"],
                    "std": wide[f"{attack}_std"], "n_seeds": wide["n_seeds"]}))
    return pd.concat(frames, ignore_index=True)


class Numbers:
    """Lookups the claims are written in; a cell that is absent raises KeyError."""

    def __init__(self, cells: pd.DataFrame):
        self.cells = cells.dropna(subset=["mean"])

    def at(self, table: int, label: str, attack: str) -> float:
        hit = self.cells[(self.cells.table == table) & (self.cells.row_label == label)
                         & (self.cells.attack == attack)]
        if hit.empty:
            raise KeyError((table, label, attack))
        return float(hit["mean"].iloc[0])

    def series(self, table: int, attack: str, by: str) -> pd.Series:
        """One column of an ablation table indexed by its variable (layer depth or beta)."""
        rows = self.cells[(self.cells.table == table) & (self.cells.attack == attack)]
        if len(rows) < 2:
            raise KeyError((table, attack))
        index = (rows["layer"].map(LAYERS.index) if by == "layer"
                 else rows["beta"].astype(float))
        return pd.Series(rows["mean"].to_numpy(), index=index.to_numpy()).sort_index()


def _rank_corr(series: pd.Series) -> float:
    """Spearman's rho of values against their index (ranks, then Pearson; no SciPy needed)."""
    return pd.Series(series.index, dtype=float).rank().corr(
        pd.Series(series.to_numpy()).rank())


def data_note(config: dict) -> str:
    """What our numbers were computed on; a loud warning when a dataset is a stand-in."""
    settings = Settings.from_config(config)
    datasets = config["data"]["datasets"]
    note = ("Data: " + "; ".join(
        f"{DATASET_NAMES[d]}: {describe_source(settings, d)}" for d in datasets) + ".")
    stand_ins = [DATASET_NAMES[d] for d, entry in datasets.items()
                 if entry["source"] != "torchvision" or entry.get("subset")]
    if stand_ins:
        verb = "is" if len(stand_ins) == 1 else "are"
        note += (f" **Not the paper's data: {' and '.join(stand_ins)} {verb} a stand-in or a "
                 "subset, so these numbers test the pipeline, not the paper.**")
    return note


# ---- the paper's conclusions, as checks ----

@dataclass(frozen=True)
class Claim:
    statement: str
    source: str  # where the paper says it
    check: Callable[[Numbers], bool]


def _beats(table: int, winners: tuple[str, ...], losers: tuple[str, ...], attack: str):
    return lambda n: all(n.at(table, winner, attack) > n.at(table, loser, attack)
                         for winner in winners for loser in losers)


CLAIMS = (
    Claim("CL-PGD is more robust than AT-PGD under PGD on CIFAR-10", "§5.5, Table 1",
          _beats(1, ("ResNet+CL-PGD",), ("ResNet+AT-PGD",), "pgd")),
    Claim("CL-FGSM is more robust than AT-FGSM under PGD on CIFAR-10", "§5.5, Table 1",
          _beats(1, ("ResNet+CL-FGSM",), ("ResNet+AT-FGSM",), "pgd")),
    Claim("CL costs clean accuracy: CL-FGSM < AT-FGSM and CL-PGD < AT-PGD on clean CIFAR-10",
          "§5.5, Table 1",
          lambda n: _beats(1, ("ResNet+AT-FGSM",), ("ResNet+CL-FGSM",), "clean")(n)
          and _beats(1, ("ResNet+AT-PGD",), ("ResNet+CL-PGD",), "clean")(n)),
    Claim("On MNIST, CL-PGD is more robust than AT-PGD and TRADES-PGD under PGD",
          "§5.5, Table 2",
          _beats(2, ("ResNet+CL-PGD",), ("ResNet+AT-PGD", "ResNet+TRADES-PGD"), "pgd")),
    Claim("Layer ablation: CL in the output space is the most robust under FGSM and under PGD",
          "§5.6, Table 4",
          lambda n: all(n.series(LAYER_TABLE, a, "layer").idxmax() == LAYERS.index("output")
                        for a in ("fgsm", "pgd"))),
    Claim("Layer ablation: deeper layers lose clean and DeepFool accuracy (rank correlation "
          "with depth < 0)", "§5.6, Table 4",
          lambda n: all(_rank_corr(n.series(LAYER_TABLE, a, "layer")) < 0
                        for a in ("clean", "deepfool"))),
    Claim("β ablation: larger β gains FGSM accuracy (rank correlation > 0) and loses clean and "
          "DeepFool accuracy (< 0)", "§5.6, Table 5",
          lambda n: _rank_corr(n.series(BETA_TABLE, "fgsm", "beta")) > 0
          and all(_rank_corr(n.series(BETA_TABLE, a, "beta")) < 0 for a in ("clean", "deepfool"))),
    Claim("β ablation: FGSM accuracy peaks at β = 6", "§5.6, Table 5",
          lambda n: n.series(BETA_TABLE, "fgsm", "beta").idxmax() == 6.0),
    Claim(f"Ledger 5's prediction: every DeepFool accuracy of Tables 1 and 2 is near chance "
          f"(≤ {CHANCE_BAND:g}%)", "docs/fidelity.md",
          lambda n: all(n.at(t, label, "deepfool") <= CHANCE_BAND for t in (1, 2)
                        for label in n.cells[n.cells.table == t].row_label.unique())),
)


# ---- the headline claims again, under AutoAttack (Table A) ----

AUDIT_ATTACKS = {"pgd": "PGD", "autoattack": "AutoAttack"}
# The robustness claims of Tables 1 and 2, in Table A's terms (its rows carry those numbers).
AUDIT_CLAIMS = (
    ("CL-PGD is more robust than AT-PGD on CIFAR-10", "§5.5, Table 1", 1,
     ("ResNet+CL-PGD",), ("ResNet+AT-PGD",)),
    ("CL-FGSM is more robust than AT-FGSM on CIFAR-10", "§5.5, Table 1", 1,
     ("ResNet+CL-FGSM",), ("ResNet+AT-FGSM",)),
    ("On MNIST, CL-PGD is more robust than AT-PGD and TRADES-PGD", "§5.5, Table 2", 2,
     ("ResNet+CL-PGD",), ("ResNet+AT-PGD", "ResNet+TRADES-PGD")),
)


def table_a_numbers(path: str | Path) -> pd.DataFrame:
    """Table A's PGD and AutoAttack cells in the long format, filed under the paper table
    whose models they are (1: CIFAR-10, 2: MNIST)."""
    wide = pd.read_csv(path)
    number = wide["dataset"].map({"cifar10": 1, "mnist": 2})
    return pd.concat([pd.DataFrame({"table": number, "row_label": wide["row_label"],
                                    "attack": attack, "mean": wide[f"{attack}_mean"],
                                    "std": wide[f"{attack}_std"]})
                      for attack in AUDIT_ATTACKS], ignore_index=True)


def audit_claims_grid(numbers: Numbers) -> tuple[list, list]:
    """Each robustness claim under the tables' PGD and under AutoAttack, on the same images."""
    header = ["claim", "where"] + [f"under {name}" for name in AUDIT_ATTACKS.values()]
    rows = []
    for statement, where, table, winners, losers in AUDIT_CLAIMS:
        verdicts = []
        for attack in AUDIT_ATTACKS:
            claim = Claim(statement, where, _beats(table, winners, losers, attack))
            shown = "; ".join(
                f"{label.removeprefix('ResNet+')} {numbers.at(table, label, attack):.2f}"
                for label in winners + losers if _has(numbers, table, label, attack))
            verdicts.append(f"{evaluate_claim(claim, numbers)} ({shown})")
        rows.append([statement, where] + verdicts)
    return header, rows


def _has(numbers: Numbers, table: int, label: str, attack: str) -> bool:
    try:
        numbers.at(table, label, attack)
    except KeyError:
        return False
    return True


def audit_markdown(table_a: pd.DataFrame, masking_summary: list[str]) -> str:
    """The comparison's section on the audit: the claims under AutoAttack, the checks."""
    numbers = sorted(table_a["table"].unique())  # the selected ones of 1 and 2 (grid.tables)
    audited = ("Table " if len(numbers) == 1 else "Tables ") + " and ".join(map(str, numbers))
    return "\n".join([
        "## Beyond the paper: AutoAttack and gradient-masking checks", "",
        f"Table A (`tableA.md`) attacks the models of {audited} with AutoAttack at the "
        "tables' own threat model, on the same images as a fresh run of their PGD. A claim "
        "that holds under PGD but fails under AutoAttack rested on a weak attack.", "",
        to_markdown(*audit_claims_grid(Numbers(table_a)),
                    "### The robustness claims under PGD and under AutoAttack "
                    "[mean top-1 % over seeds]"),
        "### Gradient-masking checks (`checks.md`)", "", *masking_summary, ""])


def evaluate_claim(claim: Claim, numbers: Numbers) -> str:
    """'holds', 'fails', or 'n/a' when a cell the claim needs was not produced."""
    try:
        return "holds" if claim.check(numbers) else "fails"
    except KeyError:
        return "n/a"


def claims_grid(sources: dict[str, Numbers]) -> tuple[list, list]:
    """One row per claim, one verdict column per source of numbers."""
    header = ["claim", "where"] + list(sources)
    rows = [[c.statement, c.source] + [evaluate_claim(c, n) for n in sources.values()]
            for c in CLAIMS]
    return header, rows


# ---- cell by cell ----

def compare(paper: pd.DataFrame, ours: pd.DataFrame) -> pd.DataFrame:
    """One row per paper cell, in the paper's order: both means and stds, difference, verdict."""
    merged = paper[KEY + ["mean", "std"]].merge(
        ours[KEY + ["mean", "std", "n_seeds"]], on=KEY, how="left", suffixes=("_paper", "_ours"))
    merged["diff"] = merged["mean_ours"] - merged["mean_paper"]
    spread = merged["std_paper"] + merged["std_ours"]
    merged["verdict"] = "differ"
    merged.loc[merged["diff"].abs() <= spread, "verdict"] = "agree"
    merged.loc[merged["mean_ours"].isna(), "verdict"] = "missing"
    merged.loc[merged["mean_paper"].isna(), "verdict"] = "unreadable in the paper"
    return merged


def _cell(mean, std) -> str:
    return "—" if pd.isna(mean) else fmt_cell(mean, std)


def _where(row) -> str:
    return f"Table {row.table}, {row.row_label}, {ATTACK_NAMES[row.attack]}"


def summary_lines(cells: pd.DataFrame, largest: int = 5) -> list[str]:
    counts = cells["verdict"].value_counts()
    lines = [f"- {len(cells)} cells of the paper: "
             + ", ".join(f"{counts[v]} {v}" for v in
                         ("agree", "differ", "missing", "unreadable in the paper") if v in counts)
             + f" ({VERDICT_RULE})."]
    gaps = cells.dropna(subset=["diff"]).sort_values(
        "diff", key=abs, ascending=False, kind="stable").head(largest)
    if len(gaps):
        lines.append("- Largest gaps (ours − paper): " + "; ".join(
            f"{_where(r)} {r.diff:+.2f}" for r in gaps.itertuples()) + ".")
    return lines


def comparison_markdown(cells: pd.DataFrame, claims: tuple[list, list], about: str) -> str:
    header = ["table", "model", "attack", "paper", "ours", "ours − paper", "verdict"]
    rows = [[r.table, r.row_label, ATTACK_NAMES[r.attack], _cell(r.mean_paper, r.std_paper),
             _cell(r.mean_ours, r.std_ours), "—" if pd.isna(r.diff) else f"{r.diff:+.2f}",
             r.verdict] for r in cells.itertuples()]
    return "\n".join(["# Paper against reproduction", "", about, "", "## Summary", "",
                      *summary_lines(cells), "",
                      to_markdown(*claims, "## The paper's conclusions, checked on both sets "
                                           "of numbers"),
                      to_markdown(header, rows, "## Every cell [mean (std) over seeds]")])


def comparison_csv(cells: pd.DataFrame) -> str:
    columns = KEY + ["mean_paper", "std_paper", "mean_ours", "std_ours", "n_seeds", "diff",
                     "verdict"]
    return cells[columns].to_csv(index=False, float_format="%.4f", lineterminator="\n")


# ---- two protocols side by side ----

def side_by_side(paper: pd.DataFrame, protocols: dict[str, pd.DataFrame],
                 tables: tuple[int, ...] = (1, 2)) -> pd.DataFrame:
    """The main tables' cells in the paper's order: reported mean/std, then each protocol's."""
    frame = paper.loc[paper.table.isin(tables), KEY + ["mean", "std"]].rename(
        columns={"mean": "reported_mean", "std": "reported_std"})
    for name, cells in protocols.items():
        frame = frame.merge(cells[KEY + ["mean", "std"]].rename(
            columns={"mean": f"{name}_mean", "std": f"{name}_std"}), on=KEY, how="left")
    return frame


def protocols_markdown(paper: pd.DataFrame, protocols: dict[str, pd.DataFrame],
                       frame: pd.DataFrame, about: str) -> str:
    """Claims under the paper's numbers and each protocol's, then the main tables' cells
    (``frame``: what :func:`side_by_side` returned for the same numbers)."""
    sources = {"paper's numbers": Numbers(paper)}
    sources.update({f"ours, {name} protocol": Numbers(cells) for name, cells in protocols.items()})
    names = ["reported"] + list(protocols)
    header = ["table", "model", "attack", "paper (reported)"] + [f"ours, {n} protocol"
                                                                 for n in protocols]
    rows = [[r["table"], r["row_label"], ATTACK_NAMES[r["attack"]]]
            + [_cell(r[f"{n}_mean"], r[f"{n}_std"]) for n in names] for _, r in frame.iterrows()]
    return "\n".join(["# The two protocols side by side", "", about, "",
                      to_markdown(*claims_grid(sources), "## The paper's conclusions under each "
                                                         "protocol"),
                      to_markdown(header, rows, "## Tables 1 and 2: top-1 accuracy (%) "
                                                "[mean (std) over seeds]")])
