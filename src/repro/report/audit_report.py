"""Table A and the robustness curve, from the audit JSONs (``repro.runs.audit``), never from
checkpoints. Rows, seeds and datasets are those of the selected ones of the paper's Tables 1
and 2 (``grid.audit_tables``); aggregation is ``report.aggregate``'s, so a missing seed is an error.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from repro import report
from repro.grid import DATASET_NAMES, Table
from repro.runtime.io import atomic_path, write_text

# Table A's columns: audit JSON key -> header. "drop" is PGD − AutoAttack, image for image.
COLUMNS = {"clean_top1": "Clean", "pgd_top1": "PGD", "autoattack_top1": "AutoAttack",
           "drop": "PGD − AutoAttack"}


def _as_evals(evals: list[dict]) -> list[dict]:
    """Each audit JSON as one pseudo-evaluation per Table A column (what aggregate reads)."""
    out = []
    for ev in evals:
        values = {key: ev[key] for key in COLUMNS if key != "drop"}
        values["drop"] = ev["pgd_top1"] - ev["autoattack_top1"]
        out += [{"run": ev["run"], "attack": key, "top1": value} for key, value in values.items()]
    return out


def _one(values: set, what: str):
    if len(values) != 1:
        raise ValueError(f"Table A: audit JSONs disagree on {what}: {sorted(map(str, values))}")
    return next(iter(values))


def _budget_words(budget: dict, original: bool) -> str:
    words = (f"APGD-CE {budget['apgd_ce_steps']} steps, APGD-T {budget['apgd_t_targets']} "
             f"targets x {budget['apgd_t_steps']}, FAB-T {budget['fab_t_targets']} x "
             f"{budget['fab_t_steps']}, Square {budget['square_queries']} queries")
    return words + (" (the original AutoAttack's)" if original else
                    " (REDUCED below the original AutoAttack's 100, 9 x 100, 9 x 100, 5000: "
                    "an upper bound on robustness, weaker than AutoAttack proper)")


def caption(tables: list[Table], evals: list[dict]) -> str:
    """What was attacked, on which images, with which budget and data."""
    _one({str(ev["pgd_parameters"]) for ev in evals}, "PGD")
    _one({str(ev["budget"]) for ev in evals}, "budget")
    pgd = evals[0]["pgd_parameters"]
    steps = pgd["steps"]
    sources = "; ".join(
        f"{DATASET_NAMES[t.dataset]}: "
        + _one({ev["data_source"] for ev in evals if ev["run"]["dataset"] == t.dataset},
               "data source") for t in tables)
    threat = _one({ev["threat_model"]["text"] for ev in evals}, "threat model")
    counts = {t.dataset: _one({ev["n"] for ev in evals if ev["run"]["dataset"] == t.dataset},
                              f"image count of {DATASET_NAMES[t.dataset]}") for t in tables}
    images = (f"{next(iter(counts.values()))} test images of each dataset"
              if len(set(counts.values())) == 1 else
              "test images of each dataset (" + ", ".join(
                  f"{DATASET_NAMES[d]}: {n}" for d, n in counts.items()) + ")")
    seeds = ", ".join(map(str, tables[0].seeds))
    tables_words = ("Table " if len(tables) == 1 else "Tables ") + " and ".join(
        str(t.number) for t in tables)
    return (f"Table A: top-1 accuracy (%) of the models of {tables_words}: "
            f"clean, under the table's PGD-{steps} (step {pgd['step_size']:.4g}, "
            f"{'random' if pgd['random_start'] else 'no random'} start) and under AutoAttack "
            f"(APGD-CE, APGD-T, FAB-T, Square from torchattacks; a point counts as robust only "
            f"if every component fails), on the same first {images}. PGD − "
            f"AutoAttack: the robustness the PGD column overstates. Threat model, as the PGD "
            f"column's: {threat}. Budgets: "
            f"{_budget_words(evals[0]['budget'], evals[0]['original_budget'])}. "
            f"Cells: mean (sample std) over seeds {seeds}; accuracy is the mean over images. "
            f"Data: {sources}.")


def write_table_a(tables: list[Table], evals: list[dict], md, csv_path, tex) -> dict:
    """Aggregate and write Table A (one block of rows per dataset) in Markdown, CSV, LaTeX."""
    tables = [dataclasses.replace(t, attacks=tuple(COLUMNS)) for t in tables]
    pseudo = _as_evals(evals)
    header = ["Dataset", "Model"] + list(COLUMNS.values())
    rows, csv_rows, cells = [], [], {}
    for table in tables:
        table_cells = report.aggregate(table, pseudo)
        cells[table.dataset] = table_cells
        for row in table.rows:
            stats = [table_cells[(row.label, key)] for key in COLUMNS]
            rows.append([DATASET_NAMES[table.dataset], row.label]
                        + [report.fmt_cell(mean, std) for mean, std, _ in stats])
            csv_rows.append([table.dataset, row.label, row.defense, stats[0][2]]
                            + [f"{v:.4f}" for mean, std, _ in stats for v in (mean, std)])
    title = caption(tables, evals)
    write_text(md, report.to_markdown(header, rows, title))
    write_text(tex, report.to_latex(header, rows, title, "tab:tableA"))
    write_text(csv_path, report.to_csv(
        ["dataset", "row_label", "defense", "n_seeds"]
        + [f"{key.removesuffix('_top1')}_{s}" for key in COLUMNS for s in ("mean", "std")],
        csv_rows))
    return cells


def plot_epsilon(tables: list[Table], curves: list[dict], outputs: list[str | Path]) -> None:
    """PGD top-1 against ε, one panel per dataset, one line per defense (mean ± std over
    seeds), the tables' ε marked."""
    from matplotlib.figure import Figure  # not pyplot: its current figure is process-wide

    fig = Figure(figsize=(5 * len(tables), 4))
    axes = fig.subplots(1, len(tables), squeeze=False)[0]
    for ax, table in zip(axes, tables):
        ks = _one({tuple(ev["epsilons_255"]) for ev in curves}, "ε grid")
        columns = tuple(f"eps{i}" for i in range(len(ks)))
        pseudo = [{"run": ev["run"], "attack": column, "top1": value} for ev in curves
                  for column, value in zip(columns, ev["top1_by_epsilon"])]
        cells = report.aggregate(dataclasses.replace(table, attacks=columns), pseudo)
        for row in table.rows:
            means = [cells[(row.label, c)][0] for c in columns]
            stds = [cells[(row.label, c)][1] for c in columns]
            ax.errorbar(ks, means, yerr=stds, marker="o", markersize=3, capsize=2,
                        label=row.label.replace("ResNet+", "") if "+" in row.label
                        else "standard training")
        mine = [ev for ev in curves if ev["run"]["dataset"] == table.dataset]
        epsilon = _one({ev["table_epsilon"] for ev in mine}, "table ε")
        space = _one({"pixels" if ev["clip"] else "normalized units" for ev in mine}, "space")
        ax.axvline(epsilon * 255, color="grey", linestyle="--", linewidth=1,
                   label=f"tables' ε = {epsilon:.4g}")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(-0.2, 1.2 * ks[-1])
        ax.set_xticks(ks, [f"{k:g}" for k in ks])
        ax.set_xlabel(f"ε × 255 ({space})")
        ax.set_ylabel("PGD top-1 accuracy (%)")
        source = _one({ev["data_source"] for ev in mine}, "data source")
        seeds = ", ".join(map(str, table.seeds))
        ax.set_title(f"{DATASET_NAMES[table.dataset]} ({source})\n"
                     f"first {mine[0]['n']} test images; mean ± std over seeds {seeds}",
                     fontsize=8)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="defense", title_fontsize=7)
    fig.tight_layout()
    for out in outputs:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=Path(out).suffix[1:])
