"""Tables and plots from evaluation JSONs: functions of plain data, testable without Snakemake.

Input is a list of eval-JSON dicts (as written by ``repro.runs.evaluate``) and a :class:`grid.Table`
that fixes row order, labels, attacks, metric and seeds. Every caption states the data source
found in the JSONs (so a stand-in dataset is never hidden), the metric, the protocol and the
seeds. The paper's own numbers (``reported.csv``, shipped with the package) can be printed next
to each cell for comparison.
"""
from __future__ import annotations

import csv
import io
import json
import statistics
from importlib import resources
from pathlib import Path

import pandas as pd

from repro.runtime import lock
from repro.runs.artifacts import read_eval
from repro.config import RunSpec, format_beta
from repro.grid import ATTACK_NAMES, DATASET_NAMES, Table, layer_label
from repro.runtime.io import atomic_path, write_text
from repro.records import evaluation_keys

Cell = tuple[float, float, int]  # mean, std, number of seeds


# ---- aggregation ----

def _run_key(dataset, defense, layer, beta) -> tuple:
    """Identity of a row's run across seeds; betas compared by spelling, not float equality."""
    return (dataset, defense, layer, None if beta is None else format_beta(beta))


def aggregate(table: Table, evals: list[dict]) -> dict[tuple[str, str], Cell]:
    """(row label, attack) -> (mean, std, n) of the table's metric over the table's seeds.

    Extra evals (other runs, seeds or attacks) are ignored; a missing seed raises, so a table
    can never silently average fewer seeds than its caption claims.
    """
    values: dict[tuple, dict[int, float]] = {}
    for ev in evals:
        run = ev["run"]
        key = (_run_key(run["dataset"], run["defense"], run.get("layer"), run.get("beta")),
               ev["attack"])
        values.setdefault(key, {})[int(run["seed"])] = float(ev[table.metric])
    cells = {}
    for row in table.rows:
        for attack in table.attacks:
            by_seed = values.get((_run_key(table.dataset, row.defense, row.layer, row.beta),
                                  attack), {})
            missing = [s for s in table.seeds if s not in by_seed]
            if missing:
                raise ValueError(f"table {table.number}: no {attack} result for {row.label} "
                                 f"seed(s) {missing}")
            xs = [by_seed[s] for s in table.seeds]
            std = statistics.stdev(xs) if len(xs) > 1 else 0.0
            cells[(row.label, attack)] = (statistics.fmean(xs), std, len(xs))
    return cells


def _single(values: set, what: str, table: Table):
    """Evals aggregated into one table must agree on data source and protocol."""
    if len(values) != 1:
        raise ValueError(f"table {table.number}: evaluations disagree on {what}: {sorted(values)}")
    return next(iter(values))


def _flatten(prefix: str, value) -> list[str]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(f"{prefix}{k}.", v)]
    return [f"{prefix[:-1]}={value}"]


def _relevant(table: Table, evals: list[dict]) -> list[dict]:
    wanted = {_run_key(table.dataset, r.defense, r.layer, r.beta) for r in table.rows}
    return [ev for ev in evals if ev["attack"] in table.attacks and int(ev["run"]["seed"]) in
            table.seeds and _run_key(ev["run"]["dataset"], ev["run"]["defense"],
                                     ev["run"].get("layer"), ev["run"].get("beta")) in wanted]


def caption(table: Table, evals: list[dict]) -> str:
    """Title plus what a reader needs to trust the numbers: data, metric, seeds, n, protocol."""
    evals = _relevant(table, evals)
    source = _single({ev.get("data_source", "unknown") for ev in evals}, "data source", table)
    protocol = _protocol(table, evals)
    sizes = sorted({int(ev["n"]) for ev in evals if "n" in ev})
    seeds = ", ".join(str(s) for s in table.seeds)
    return (f"Table {table.number}: {table.title}. "
            f"Data: {source}. "
            f"Metric: {table.metric} accuracy (%) on {sizes and '/'.join(map(str, sizes)) or '?'} "
            f"test images per run. Cells: mean (sample std) over seeds {seeds}. "
            f"{training_words(evals)}"
            f"Protocol: {'; '.join(_flatten('', protocol)) or 'not recorded'}.")


def training_words(evals: list[dict]) -> str:
    """How the table's models were trained, as their evaluations record it: split sizes,
    starting weights, learning rate and where early stopping ended them (each a choice a
    dataset can force, e.g. no ImageNet weights offline). Empty for records without it."""
    training = [ev["training"] for ev in evals if "lr" in ev.get("training", {})]
    if not training:
        return ""

    def values(key, fmt=str):
        return "/".join(sorted({fmt(t[key]) for t in training if t.get(key) is not None}))
    sizes = values("sizes", lambda s: f"{s['train']:,} train / {s['val']:,} validation images")
    epochs = sorted({int(t["epochs"]) for t in training})
    return (f"Training: {sizes or 'sizes not recorded'}; starting weights "
            f"{values('pretrained')}; lr {values('lr', lambda v: f'{float(v):g}')}; "
            f"{epochs[0]}-{epochs[-1]} epochs (early stopping on validation loss, patience "
            f"{values('patience')}, at most {values('max_epochs')}; best-validation "
            f"checkpoint). ")


def _protocol(table: Table, evals: list[dict]) -> dict:
    """The protocol values the table's numbers depend on, each from the evaluations that read
    it (records.evaluation_keys). An evaluation JSON records the whole protocol, but a changed
    DeepFool setting reruns only the DeepFool evaluations: the others keep the old value of a
    key they never read. Evaluations that read a key must agree on it."""
    values: dict[str, set] = {}
    for ev in evals:
        recorded = ev.get("protocol", {})
        for key in evaluation_keys(ev["run"]["defense"], ev["attack"]):
            if key in recorded:
                values.setdefault(key, set()).add(json.dumps(recorded[key], sort_keys=True))
    return {key: json.loads(_single(found, f"protocol.{key}", table))
            for key, found in values.items()}


# ---- the paper's numbers ----

def reported_numbers(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's cells, one row per (table, row_label, attack) with mean and std (%).

    From ``reported.csv`` shipped with the package (a copy of ../shared/paper/reported.csv,
    read off the paper's Tables 1, 2 and 4-9); the one unreadable cell has NaN mean and std.
    """
    source = Path(path) if path else resources.files("repro.report").joinpath("reported.csv")
    with source.open() as handle:
        return pd.read_csv(handle)


def reported(path: str | Path | None = None) -> dict[tuple[int, str, str], tuple[float, float]]:
    """(table, row label, attack) -> (mean, std) from the paper; unreadable cells are left out."""
    cells = reported_numbers(path).dropna(subset=["mean"])
    return {(int(r.table), r.row_label, r.attack): (float(r.mean), float(r.std))
            for r in cells.itertuples()}


# ---- rendering ----

def fmt_cell(mean: float, std: float) -> str:
    return f"{mean:.2f} ({std:.2f})"


def accuracy_grid(table: Table, cells: dict, paper: dict | None = None) -> tuple[list, list]:
    """Header and display rows of an accuracy table, optionally with the paper's cell after ours."""
    header = ["Model"] + [ATTACK_NAMES[a] for a in table.attacks]
    rows = []
    for row in table.rows:
        shown = []
        for attack in table.attacks:
            mean, std, _ = cells[(row.label, attack)]
            text = fmt_cell(mean, std)
            if paper is not None:
                ref = paper.get((table.number, row.label, attack))
                text += f" [paper {fmt_cell(*ref) if ref else 'n/a'}]"
            shown.append(text)
        rows.append([row.label] + shown)
    return header, rows


def to_markdown(header: list, rows: list, title: str) -> str:
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#",
        "$": r"\$", "{": r"\{", "}": r"\}"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX.get(char, char) for char in text)


def to_latex(header: list, rows: list, title: str, label: str) -> str:
    body = [" & ".join(_tex_escape(str(c)) for c in r) + r" \\" for r in rows]
    return "\n".join([r"\begin{table}[t]", r"\centering",
                      rf"\caption{{{_tex_escape(title)}}}", rf"\label{{{label}}}",
                      r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
                      " & ".join(_tex_escape(h) for h in header) + r" \\", r"\midrule",
                      *body, r"\bottomrule", r"\end{tabular}", r"\end{table}"]) + "\n"


def to_csv(header: list, rows: list) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def accuracy_csv(table: Table, cells: dict, paper: dict | None = None) -> str:
    """Machine-readable numbers: one row per table row, mean and std columns per attack."""
    header = ["row_label", "defense", "layer", "beta", "n_seeds"]
    header += [f"{a}_{s}" for a in table.attacks for s in ("mean", "std")]
    if paper is not None:
        header += [f"paper_{a}_{s}" for a in table.attacks for s in ("mean", "std")]
    rows = []
    for row in table.rows:
        stats = [cells[(row.label, a)] for a in table.attacks]
        rec = [row.label, row.defense, row.layer or "",
               "" if row.beta is None else format_beta(row.beta), stats[0][2]]
        rec += [f"{v:.4f}" for mean, std, _ in stats for v in (mean, std)]
        if paper is not None:
            refs = [paper.get((table.number, row.label, a)) for a in table.attacks]
            rec += [f"{v:.2f}" if ref else "" for ref in refs for v in (ref or (0, 0))]
        rows.append(rec)
    return to_csv(header, rows)


def write_accuracy_table(table: Table, evals: list[dict], md: str | Path, csv_path: str | Path,
                         tex: str | Path, compare_with_paper: bool = False) -> dict:
    """Aggregate and write one accuracy table in Markdown, CSV and LaTeX; returns the cells."""
    cells = aggregate(table, evals)
    paper = reported() if compare_with_paper else None
    title = caption(table, evals)
    header, rows = accuracy_grid(table, cells, paper)
    write_text(md, to_markdown(header, rows, title))
    write_text(tex, to_latex(header, rows, title, f"tab:table{table.number}"))
    write_text(csv_path, accuracy_csv(table, cells, paper))
    return cells


def embedding_grid(rows_by_dataset: dict[str, list[dict]]) -> tuple[list, list]:
    """Table 3: Name and Components once, then shape and dimension for each dataset's input."""
    datasets = list(rows_by_dataset)
    first = rows_by_dataset[datasets[0]]
    header = ["Name", "Components"]
    for ds in datasets:
        header += [f"Shape ({DATASET_NAMES[ds]})", f"Dim ({DATASET_NAMES[ds]})"]
    rows = []
    for i, base in enumerate(first):
        rec = [base["name"], base["components"]]
        for ds in datasets:
            other = rows_by_dataset[ds][i]
            if other["layer"] != base["layer"]:
                raise ValueError(f"embedding tables of {datasets[0]} and {ds} differ in row order")
            rec += ["×".join(map(str, other["shape"])), other["dim"]]
        rows.append(rec)
    return header, rows


def write_embedding_table(table: Table, rows_by_dataset: dict[str, list[dict]], md, csv_path,
                          tex) -> None:
    """Table 3, generated from the model's taps rather than typed in."""
    header, rows = embedding_grid(rows_by_dataset)
    title = (f"Table {table.number}: {table.title} of ResNet-18 (component names of the PyTorch "
             "implementation). Generated from the model; shape is per image (C×H×W) and dim its "
             "size, for each dataset's input resolution.")
    write_text(md, to_markdown(header, rows, title))
    write_text(tex, to_latex(header, rows, title, f"tab:table{table.number}"))
    write_text(csv_path, to_csv(header, rows))


# ---- plots ----

def _x_axis(table: Table, by: str) -> tuple[list[float], list[str], str]:
    """Positions, tick labels and axis label of the rows: by beta (numeric) or layer (ordered)."""
    if by == "beta":
        xs = [float(r.beta) for r in table.rows]
        return xs, [format_beta(x) for x in xs], "β (contrastive weight)"
    return (list(range(len(table.rows))), [layer_label(r.layer) for r in table.rows],
            "layer used for the contrastive loss")


def plot_table(table: Table, evals: list[dict], by: str, outputs: list[str | Path]) -> None:
    """Accuracy under each attack vs the row variable, mean with std error bars over seeds."""
    # The object-oriented API, not pyplot: pyplot's current figure is process-wide state that
    # two plot jobs running as threads of one process would share.
    from matplotlib.figure import Figure

    cells = aggregate(table, evals)
    xs, ticks, xlabel = _x_axis(table, by)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for attack in table.attacks:
        means = [cells[(r.label, attack)][0] for r in table.rows]
        stds = [cells[(r.label, attack)][1] for r in table.rows]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=ATTACK_NAMES[attack])
    ax.set_xticks(xs, ticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{table.metric} accuracy (%)")
    source = _single({ev.get("data_source", "unknown") for ev in _relevant(table, evals)},
                     "data source", table)
    seeds = ", ".join(map(str, table.seeds))
    ax.set_title(f"{DATASET_NAMES[table.dataset]} ({source})\nmean ± std over seeds {seeds}",
                 fontsize=9)
    ax.legend(title="attack", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    for out in outputs:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=Path(out).suffix[1:])


PROVENANCE_COLUMNS = ("dataset", "run", "seed", "attack", "n", "data_source", "epochs",
                      "train_seconds", "eval_seconds", "train_threads", "eval_threads", "device",
                      "device_name", "train_graphs", "eval_graphs", "repro", "torch",
                      "torchvision", "numpy", "lock", "git_commit", "host")
LOCKED_PACKAGES = ("torch", "torchvision", "numpy")  # recorded by io.provenance


def graphs_summary(record: dict | None) -> str | None:
    """A checkpoint's or evaluation's CUDA graphs in a few words (repro.runtime.graphs):
    "off", "eager" (not used), "captured" when the graph was used without its first replay
    being checked, or the self-check's verdict with its largest relative difference."""
    if not record:
        return None
    if record.get("capture_failed"):
        return f"capture failed: {record['capture_failed']}"
    if record.get("self_check"):
        verdict = "self-check passed" if record["self_check"] == "passed" else \
            "self-check FAILED, ran eagerly"
        return f"{verdict} ({record['self_check_difference']:.2g} of " \
               f"{record['self_check_tolerance']:.2g} allowed)"
    return "off" if record.get("setting") == "off" else "used" if record.get("used") else "eager"


def provenance_csv(evals: list[dict], pins: dict[str, str]) -> str:
    """One row per evaluation: what made it, for the report (versions, device, commit, time).

    Column ``lock`` flags an evaluation or its training made with versions other than the
    lock's (``pins``, from repro.runtime.lock.read_lock): "matches", or what differed."""
    rows = []
    for ev in evals:
        training = ev.get("training", {})
        versions = [source.get("provenance", {}) for source in (ev, training)]
        differ = sorted({d for made in versions for d in lock.differences(
            {name: made.get(name) for name in LOCKED_PACKAGES}, pins)})
        made = {**ev.get("provenance", {}), **ev["run"], "run": RunSpec(**ev["run"]).name,
                "attack": ev["attack"], "n": ev["n"], "data_source": ev.get("data_source"),
                "epochs": training.get("epochs"), "train_seconds": training.get("wall_seconds"),
                "eval_seconds": ev.get("wall_seconds"),
                "train_threads": training.get("provenance", {}).get("threads"),
                "eval_threads": ev.get("provenance", {}).get("threads"),
                "train_graphs": graphs_summary(training.get("cuda_graphs")),
                "eval_graphs": graphs_summary(ev.get("cuda_graphs")),
                "lock": "; ".join(differ) if differ else "matches"}
        rows.append(["" if made.get(c) is None else made[c] for c in PROVENANCE_COLUMNS])
    return to_csv(list(PROVENANCE_COLUMNS), sorted(rows, key=lambda r: tuple(map(str, r[:4]))))


def load_evals(paths) -> list[dict]:
    """Evaluation JSONs, each checked (``artifacts.read_eval``): a damaged one fails naming it."""
    return [read_eval(p) for p in paths]

