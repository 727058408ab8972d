"""The fidelity ledger rendered for one results folder: every difference between the paper's
code and standard practice (the table of docs/fidelity.md, the one place it is written), with
the value this run used and which side that value is on.

The config keys are read out of the ledger's "config key" column, so the document and the
config cannot drift apart unnoticed: a key the config does not have is an error.
"""
from __future__ import annotations

import re

import yaml

KEY_PATTERN = re.compile(r"`((?:protocol|training|model|grid|data|evaluation)\.[\w.{},\-]+)`")


def parse_table(markdown: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table in ``markdown``."""
    lines = [line.strip() for line in markdown.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return block[0], block[2:]


def config_keys(cell: str) -> list[str]:
    """Dotted config keys named in a ledger cell; ``a.{b,c}`` expands to ``a.b``, ``a.c``."""
    keys = []
    for key in KEY_PATTERN.findall(cell):
        stem, brace, rest = key.partition("{")
        keys += [stem + leaf for leaf in rest.rstrip("}").split(",")] if brace else [key]
    return keys


def lookup(config: dict, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"docs/fidelity.md names config key {key!r}, which the config lacks")
        node = node[part]
    return node


def _show(value) -> str:
    """A config value as YAML on one line (``safe_dump`` ends a bare scalar with "...")."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("...").strip()


def side(keys: list[str], config: dict, paper: dict, standard: dict) -> str:
    """Whether this run's values are the paper code's, the standard ones, or a mix."""
    here, ours, theirs = ([lookup(c, k) for k in keys] for c in (config, paper, standard))
    if here == ours == theirs:
        return "both (no difference)"
    return "paper's code" if here == ours else "standard" if here == theirs else "other"


def render(markdown: str, config: dict, paper: dict, standard: dict) -> tuple[list, list]:
    """The ledger's rows with two more columns: the values here, and which side they follow.

    ``paper`` and ``standard`` are the full configs of the two presets (config.yaml, and
    config.yaml merged with config/standard.yaml) that define the two sides.
    """
    header, rows = parse_table(markdown)
    column = header.index("config key")
    out = []
    for row in rows:
        keys = config_keys(row[column])
        if not keys:
            raise ValueError(f"ledger row {row[0]} names no config key: {row[column]!r}")
        values = "; ".join(f"{k} = {_show(lookup(config, k))}" for k in keys)
        out.append(row + [values, side(keys, config, paper, standard)])
    return header + ["value in this run", "follows"], out
