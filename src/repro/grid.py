"""The experiment grid: which runs, attacks and metric each of the paper's nine tables needs.

This is the one place that knows the paper's table layout. The Snakefile asks it for targets
and for each table's inputs; the report asks it for row order and labels. Both read the same
:class:`Table` objects, so a table can never be rendered from runs that were not scheduled.
Everything that varies (seeds, betas, layers, attacks) comes from the config's ``grid:`` and
``evaluation:`` sections; adding a beta to the config adds exactly the runs that use it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from repro import registry
from repro.config import RunSpec, format_beta
from repro.errors import UserError

# The paper's fixed structure: table number -> (dataset, metric) for the six main tables.
MAIN_TABLES = {1: ("cifar10", "top1"), 2: ("mnist", "top1"),
               6: ("cifar10", "top3"), 7: ("cifar10", "top5"),
               8: ("mnist", "top3"), 9: ("mnist", "top5")}
LAYER_TABLE, BETA_TABLE, EMBEDDING_TABLE = 4, 5, 3
ABLATION_DATASET = "cifar10"  # Tables 4 and 5 are CIFAR-10 only in the paper
TABLE_NUMBERS = tuple(range(1, 10))  # the paper's
OWN_TABLES_FROM = 10  # a plugin's dataset gets a top-1 table of its own, numbered from here
# Plot name -> the table whose runs it draws (same runs, another view).
PLOTS = {"beta": BETA_TABLE, "layer": LAYER_TABLE}

DATASET_NAMES = registry.View("dataset", "label")
METRIC_NAMES = {"top1": "Top1", "top3": "Top3", "top5": "Top5"}


# Labels of the registries' members (repro.registry), plugins' included once loaded.
ATTACK_NAMES = registry.View("attack", "label", autoattack="AutoAttack")
DEFENSE_LABELS = registry.View("defense", "label")


@dataclass(frozen=True)
class Row:
    """One table row: a run configuration without dataset and seed (those come from the table)."""
    label: str
    defense: str
    layer: str | None = None
    beta: float | None = None

    def run(self, dataset: str, seed: int) -> RunSpec:
        return RunSpec(dataset, self.defense, seed, self.layer, self.beta)


@dataclass(frozen=True)
class Table:
    """One of the paper's tables. ``kind`` is "accuracy" (rows x attacks) or "embedding"."""
    number: int
    kind: str
    title: str
    dataset: str | None = None
    metric: str | None = None
    rows: tuple[Row, ...] = ()
    attacks: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()

    def runs(self) -> list[RunSpec]:
        """Every (row, seed) run this table needs, in row order then seed order."""
        return [row.run(self.dataset, seed) for row in self.rows for seed in self.seeds]


def ablation_label(defense: str, variable: str) -> str:
    """A Table 4/5 row: the defense's label with the ablated value before its last part, as
    the paper spells them ('ResNet+CL-FGSM', 'Embed-1' -> 'ResNet+CL-Embed-1-FGSM'); a label
    without a part: the value after it."""
    head, sep, tail = registry.defense(defense).label.rpartition("-")
    return f"{head}-{variable}-{tail}" if sep else f"{tail}-{variable}"


def layer_label(layer: str) -> str:
    """'embed1' -> 'Embed-1', 'output' -> 'Output' (the paper's Table 4 spelling)."""
    return f"Embed-{layer[len('embed'):]}" if layer.startswith("embed") else layer.capitalize()


def defenses(config: dict) -> list[str]:
    """The main tables' defenses in row order: ``grid.defenses``, by default every defense
    of the config (the built-in ones, then its plugins')."""
    chosen = config["grid"].get("defenses")
    return list(chosen) if chosen else [d.id for d in registry.active("defense",
                                                                        config.get("plugins"))]


def _main_rows(config: dict) -> tuple[Row, ...]:
    """Tables 1, 2, 6-9: one row per defense; a layered one (cl-*) at the main layer and its
    main beta."""
    grid, rows = config["grid"], []
    for defense in defenses(config):
        member = registry.defense(defense)
        if member.layered:
            rows.append(Row(member.label, defense, grid["main_layer"],
                            float(grid["main_beta"][defense])))
        else:
            rows.append(Row(member.label, defense))
    return tuple(rows)


def main_run(config: dict, defense: str, dataset: str = "cifar10", seed: int = 0) -> RunSpec:
    """The run of ``defense`` in the main tables (what the benchmarks time)."""
    for row in _main_rows(config):
        if row.defense == defense:
            return row.run(dataset, seed)
    raise UserError(f"{defense!r} is not a row of the main tables (grid.defenses: "
                    f"{defenses(config)}); add it there, or its file under plugins:")


def _layer_rows(spec: dict) -> tuple[Row, ...]:
    """Table 4: one row per layer, fixed defense and beta."""
    defense = spec["defense"]
    return tuple(Row(ablation_label(defense, layer_label(layer)), defense, layer,
                     float(spec["beta"])) for layer in spec["layers"])


def _beta_rows(spec: dict) -> tuple[Row, ...]:
    """Table 5: one row per beta, fixed defense and layer."""
    defense = spec["defense"]
    return tuple(Row(ablation_label(defense, format_beta(beta)), defense, spec["layer"],
                     float(beta)) for beta in spec["betas"])


def attacks(config: dict) -> tuple[str, ...]:
    """The configured attacks in registry order: the paper's (clean, fgsm, pgd, deepfool),
    then the plugins'."""
    chosen = set(config["evaluation"]["attacks"])
    return tuple(a.id for a in registry.active("attack", config.get("plugins")) if a.id in chosen)


def tables(config: dict) -> dict[int, Table]:
    """All nine tables, built from the config's ``grid`` and ``evaluation`` sections."""
    grid = config["grid"]
    common = {"attacks": attacks(config), "seeds": tuple(int(s) for s in grid["seeds"])}
    result = {}
    for number, (dataset, metric) in MAIN_TABLES.items():
        title = (f"{METRIC_NAMES[metric]} classification accuracy (%) under different attack "
                 f"on {DATASET_NAMES[dataset]} [mean (std)]")
        result[number] = Table(number, "accuracy", title, dataset, metric, _main_rows(config),
                               **common)
    ablation = f"Top1 classification accuracy (%) on {DATASET_NAMES[ABLATION_DATASET]} [mean (std)]"
    result[LAYER_TABLE] = Table(LAYER_TABLE, "accuracy",
                                f"Ablation study on embeddings. {ablation}", ABLATION_DATASET,
                                "top1", _layer_rows(grid["layer_ablation"]), **common)
    result[BETA_TABLE] = Table(BETA_TABLE, "accuracy", f"Ablation study on beta. {ablation}",
                               ABLATION_DATASET, "top1", _beta_rows(grid["beta_ablation"]),
                               **common)
    result[EMBEDDING_TABLE] = Table(EMBEDDING_TABLE, "embedding",
                                    "Definitions of embedding spaces and output space")
    own = [d for d in registry.active("dataset", config.get("plugins")) if d.origin != "builtin"]
    for number, dataset in enumerate(own, OWN_TABLES_FROM):
        result[number] = Table(number, "accuracy", f"Top1 classification accuracy (%) under "
                               f"different attack on {dataset.label} [mean (std)]", dataset.id,
                               "top1", _main_rows(config), **common)
    return dict(sorted(result.items()))


def selected(config: dict) -> tuple[int, ...]:
    """The table numbers ``grid.tables`` asks for (default: every table of ``tables``, a
    plugin dataset's own included), in order.

    A subset (e.g. the MNIST tables 2, 8, 9 of config/mnist-real.yaml) narrows everything the
    workflow schedules: runs, evaluations, plots, the audit and the comparison."""
    known = tuple(tables(config))
    chosen = config["grid"].get("tables")
    if not chosen:
        return known
    unknown = sorted(set(map(int, chosen)) - set(known))
    if unknown:
        raise UserError(f"grid.tables: {unknown} is not a table of this config; its tables are "
                        f"{list(known)}")
    return tuple(sorted(int(n) for n in chosen))


def all_runs(config: dict) -> list[RunSpec]:
    """Every distinct run of every selected table, each once (a run shared by tables is
    trained once)."""
    seen: dict[RunSpec, None] = {}
    chosen = selected(config)
    for table in (t for n, t in tables(config).items() if n in chosen):
        for run in table.runs():
            seen.setdefault(run, None)
    return list(seen)


# ---- paths: the contract between the workflow, the library and the report ----

# Every output's place, defined here once: under the results folder, the data marker under the
# data root. The rules give these patterns to Snakemake, their {fields} being its wildcards
# (common.smk's `result`); the functions below fill them in for the grid, estimate and report.
PATHS = {
    "data_marker": "{dataset}-{source}.ready.json",
    "checkpoint": "runs/{dataset}/{run}/seed{seed}/model.pt",
    "metrics": "runs/{dataset}/{run}/seed{seed}/metrics.csv",  # per epoch, beside the model
    "eval": "runs/{dataset}/{run}/seed{seed}/eval/{attack}.json",
    "table": "table{table}.{ext}",
    "plot": "plots/{plot}.{ext}",
    "curves": "plots/curves-table{table}.{ext}",
    # RobustBench's layout: <dataset>/<threat model>/<model id>.json (repro.report.robustbench)
    "robustbench": "robustbench/{dataset}/Linf/{run}_seed{seed}.json",
    # one file per folder: comparison, ledger, provenance, protocols, tableA, checks
    "summary": "{name}.{ext}",
}


class _Wildcards(dict):
    """Leaves a field that was not given as ``{field}``: a Snakemake wildcard."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def path_pattern(kind: str, folder: str | Path, **fields) -> str:
    """``PATHS[kind]`` in ``folder`` with ``fields`` filled in and the rest left as wildcards:
    ``path_pattern("table", "results", ext="md")`` is ``results/table{table}.md``."""
    return str(Path(folder) / PATHS[kind].format_map(_Wildcards(fields)))


def _run_path(kind: str, results: str, run: RunSpec, **fields) -> Path:
    return Path(path_pattern(kind, results, dataset=run.dataset, run=run.name, seed=run.seed,
                             **fields))


def checkpoint_path(results: str, run: RunSpec) -> Path:
    return _run_path("checkpoint", results, run)


def metrics_path(results: str, run: RunSpec) -> Path:
    """Per-epoch losses and accuracies, written by the training job beside its checkpoint."""
    return _run_path("metrics", results, run)


def eval_path(results: str, run: RunSpec, attack: str) -> Path:
    return _run_path("eval", results, run, attack=attack)


# PATHS["eval"] read backwards: each {field} one path component
_EVAL_FIELDS = re.compile("(?:^|/)" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)",
                                             re.escape(PATHS["eval"])) + "$")


def parse_eval_path(path: str | Path) -> tuple[RunSpec, str] | None:
    """The run and attack that :func:`eval_path` encodes in ``path``; None for another layout."""
    found = _EVAL_FIELDS.search(Path(path).as_posix())
    if found is None:
        return None
    try:
        return RunSpec.parse(found["dataset"], found["run"], found["seed"]), found["attack"]
    except ValueError:
        return None


def data_marker(config: dict, dataset: str) -> Path:
    """Per source, so switching a dataset's source (real <-> stand-in) re-prepares its data."""
    source = config["data"]["datasets"][dataset]["source"]
    return Path(path_pattern("data_marker", config["data"]["root"], dataset=dataset,
                             source=source))


def table_inputs(config: dict, number: int) -> list[str]:
    """The eval JSONs a table is aggregated from (empty for the embedding table)."""
    table = tables(config)[number]
    return [str(eval_path(config["results"], run, attack))
            for run in table.runs() for attack in table.attacks]


def table_files(config: dict, number: int) -> list[str]:
    return [path_pattern("table", config["results"], table=number, ext=ext)
            for ext in ("md", "csv", "tex")]


def plot_path(config: dict, name: str, ext: str = "png") -> str:
    return path_pattern("plot", config["results"], plot=name, ext=ext)


def plot_files(config: dict) -> list[str]:
    """The β and layer plots whose tables are selected."""
    return [plot_path(config, name, ext) for name, number in PLOTS.items()
            if number in selected(config) for ext in ("png", "pdf")]


def all_eval_inputs(config: dict) -> list[str]:
    """Every eval JSON of every selected table, each once."""
    return [str(eval_path(config["results"], run, attack))
            for run in all_runs(config) for attack in attacks(config)]


def comparison_files(config: dict) -> list[str]:
    """The paper against this folder's numbers, the ledger with this folder's values, and
    the provenance of every evaluation."""
    return [summary_path(config, name, ext) for name in ("comparison", "ledger")
            for ext in ("md", "csv")] + [summary_path(config, "provenance", "csv")]


# ---- the audit beyond the paper (Table A, the ε curve, the masking checks) ----

AUDITS = ("autoattack", "epsilon")  # the audit's evaluations of a run (repro.runs.audit)
AUDIT_TABLES = (1, 2)  # Table A audits the models of Tables 1 (CIFAR-10) and 2 (MNIST)


def audit_tables(config: dict) -> list[Table]:
    """The selected tables whose models the audit attacks (Table A's blocks, the ε plot's
    panels); empty when neither Table 1 nor 2 is selected."""
    all_tables = tables(config)
    return [all_tables[number] for number in AUDIT_TABLES if number in selected(config)]


def audit_runs(config: dict) -> list[RunSpec]:
    """The main-table runs, every defense of both datasets and every seed, each once."""
    return [run for table in audit_tables(config) for run in table.runs()]


def audit_inputs(config: dict, kind: str) -> list[str]:
    """The ``kind`` audit JSON ("autoattack" or "epsilon") of every main-table run."""
    return [str(eval_path(config["results"], run, kind)) for run in audit_runs(config)]


def summary_path(config: dict, name: str, ext: str = "md") -> str:
    """One file that sums up the results folder: Table A ("tableA"), the masking checks
    ("checks"), the comparison with the paper, the ledger, the provenance, the protocols."""
    return path_pattern("summary", config["results"], name=name, ext=ext)


def audit_files(config: dict) -> list[str]:
    """Table A in three formats, the ε curve and the masking checks (none without audited
    tables)."""
    if not audit_tables(config):
        return []
    return ([summary_path(config, "tableA", ext) for ext in ("md", "csv", "tex")]
            + [plot_path(config, "epsilon", ext) for ext in ("png", "pdf")]
            + [summary_path(config, "checks", ext) for ext in ("md", "csv")])


def robustbench_path(config: dict, run: RunSpec) -> str:
    """One audited model as a RobustBench ``model_info`` JSON (repro.report.robustbench)."""
    return str(_run_path("robustbench", config["results"], run))


def robustbench_files(config: dict) -> list[str]:
    """A RobustBench JSON per audited model (beside Table A)."""
    return [robustbench_path(config, run) for run in audit_runs(config)]


def curve_path(config: dict, number: int, ext: str = "png") -> str:
    """Table ``number``'s training curves (repro.report.curves)."""
    return path_pattern("curves", config["results"], table=number, ext=ext)


def curve_inputs(config: dict, number: int) -> list[str]:
    """The ``metrics.csv`` of every run of table ``number``, in the table's run order."""
    return [str(metrics_path(config["results"], run)) for run in tables(config)[number].runs()]


def curve_files(config: dict) -> list[str]:
    """Training curves of every accuracy table's runs, one figure per table."""
    all_tables = tables(config)
    return [curve_path(config, number, ext) for number in selected(config)
            if all_tables[number].kind == "accuracy" for ext in ("png", "pdf")]


def targets(config: dict) -> list[str]:
    """Everything ``rule all`` builds: every selected table (``selected``) in three formats,
    their plots, the comparison with the paper and the ledger, the audit with its RobustBench
    JSONs, and the selected tables' training curves."""
    files = [f for number in selected(config) for f in table_files(config, number)]
    return (files + plot_files(config) + comparison_files(config) + audit_files(config)
            + robustbench_files(config) + curve_files(config))


def missing_intermediates(config: dict) -> dict[str, list[str]]:
    """{built output: its missing inputs}: evaluation JSONs deleted under a finished table or
    plot, and checkpoints deleted under finished evaluations.

    Snakemake treats a missing intermediate of an up-to-date output as fine ("Nothing to be
    done"), so the workflow names them and the command that rebuilds them (add ``--forcerun``
    with the missing files to the same command: their jobs rerun, and what was made from them).
    """
    built = {}
    for number, table in tables(config).items():
        if table.kind == "accuracy" and number in selected(config):
            built[table_files(config, number)[0]] = table_inputs(config, number)
    for name, number in PLOTS.items():
        if number in selected(config):
            built[plot_path(config, name)] = table_inputs(config, number)
    autoattack, epsilon = audit_inputs(config, "autoattack"), audit_inputs(config, "epsilon")
    built[summary_path(config, "tableA")] = autoattack
    built[plot_path(config, "epsilon")] = epsilon
    built[summary_path(config, "checks")] = autoattack + epsilon
    for run in audit_runs(config):
        built[robustbench_path(config, run)] = [str(eval_path(config["results"], run,
                                                              "autoattack"))]
    for number in (n for n, table in tables(config).items() if table.kind == "accuracy"):
        built[curve_path(config, number)] = curve_inputs(config, number)
    audited = set(audit_runs(config))
    for run in all_runs(config):
        for attack in attacks(config) + (AUDITS if run in audited else ()):
            built[str(eval_path(config["results"], run, attack))] = \
                [str(checkpoint_path(config["results"], run))]
    found = {}
    for output, inputs in built.items():
        if Path(output).exists():
            missing = [path for path in inputs if not Path(path).exists()]
            if missing:
                found[output] = missing
    return found
