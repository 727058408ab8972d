"""Typed views of the pipeline config, and the identity of one training run.

The YAML config (``config.yaml``) is the single place where protocol choices live; this module
turns its sections into frozen dataclasses so the library never reads a raw dict. Every field
of :class:`Protocol` is one row of the fidelity ledger (docs/fidelity.md): the attack and loss
code reads these values and never branches on a protocol *name*.
"""
from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from repro.errors import UserError

LAYERS = ("embed1", "embed2", "embed3", "embed4", "embed5", "output")
METRICS = ("top1", "top3", "top5")
NUM_CLASSES = 10


def _build(cls, values: dict[str, Any] | None):
    """Build a (possibly nested) dataclass from a dict, refusing unknown keys by name."""
    values = dict(values or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; allowed: {sorted(known)}")
    for name, value in values.items():
        sub = known[name].metadata.get("type")
        if sub is not None and isinstance(value, dict):
            values[name] = _build(sub, value)
    return cls(**values)


@dataclass(frozen=True)
class PGDConfig:
    steps: int = 20
    step_size: float = 0.008
    random_start: bool = False


@dataclass(frozen=True)
class TradesPGDConfig:
    """The PGD used *inside* TRADES-PGD training (ledger 4)."""
    steps: int = 20
    step_size: float = 0.031
    epsilon: float = 8 / 255


@dataclass(frozen=True)
class DeepFoolConfig:
    steps: int = 20
    overshoot: float = 0.02
    overshoot_on: str = "step"  # "step": (1+o)·r each step; "total": x0 + (1+o)·Σr


@dataclass(frozen=True)
class TradesConfig:
    beta: float = 1.0
    inner: str = "ce"  # "ce": attack maximizes CE to the label; "kl": maximizes KL to f(x)
    init_noise: float = 0.001


@dataclass(frozen=True)
class CLConfig:
    distance: str = "mse"  # "mse": mean over all elements; "euclidean": per-sample L2, batch mean
    extra_adv_pass: bool = True  # paper's code embeds x_adv in a second train-mode forward


@dataclass(frozen=True)
class Protocol:
    """Every switch on which the paper's code and standard practice differ (the ledger)."""
    epsilon: float = 0.031
    attack_space: str = "normalized"  # "normalized": attack normalized tensors, no clipping
    normalization: dict = field(default_factory=lambda: {"cifar10": "cifar10", "mnist": "cifar10"})
    pgd: PGDConfig = field(default_factory=PGDConfig, metadata={"type": PGDConfig})
    trades_pgd: TradesPGDConfig = field(default_factory=TradesPGDConfig,
                                        metadata={"type": TradesPGDConfig})
    deepfool: DeepFoolConfig = field(default_factory=DeepFoolConfig,
                                     metadata={"type": DeepFoolConfig})
    trades: TradesConfig = field(default_factory=TradesConfig, metadata={"type": TradesConfig})
    cl: CLConfig = field(default_factory=CLConfig, metadata={"type": CLConfig})
    topk_average: str = "batch"  # "batch": mean of per-batch accuracies; "sample": over samples
    # the own sections of plugin members ({settings_key: values}; repro.registry), as validated
    extra: dict = field(default_factory=dict)

    def value(self, key: str):
        """The value of protocol key ``key``: a field, ``clip``, or a member's own section."""
        return self.extra[key] if key in self.extra else getattr(self, key)

    def as_record(self) -> dict:
        """Every value as the config spells it (a member's own section under its key), for
        the JSONs that record what made them."""
        record = asdict(self)
        return {**{k: v for k, v in record.items() if k != "extra"}, **record["extra"]}

    @property
    def clip(self) -> bool:
        """FGSM/PGD clip to [0, 1] only when they act on pixels (ledger 2)."""
        return self.attack_space == "pixel"


@dataclass(frozen=True)
class TrainingConfig:
    lr: float = 1e-5
    weight_decay: float = 0.1
    weight_decay_by_beta: dict = field(default_factory=dict)
    batch_size: int = 128
    batch_size_by_dataset: dict = field(default_factory=dict)
    max_epochs: int = 100
    patience: int = 3
    shuffle: bool = False
    precision: str = "fp32"

    def batch_size_for(self, dataset: str) -> int:
        return int((self.batch_size_by_dataset or {}).get(dataset, self.batch_size))

    def weight_decay_for(self, run: "RunSpec") -> float:
        if run.beta is None:
            return self.weight_decay
        by_beta = {float(k): float(v) for k, v in (self.weight_decay_by_beta or {}).items()}
        return by_beta.get(float(run.beta), self.weight_decay)


@dataclass(frozen=True)
class RuntimeConfig:
    """Where every job runs (``runtime:``): training, evaluation and the audit alike."""
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # "auto": hot loops as CUDA graphs on CUDA (repro.runtime.graphs); "off"
    cuda_graphs: str = "auto"

    def __post_init__(self):  # the values were checked by the schema (validate_config)
        if self.cuda_graphs is False:  # YAML 1.1 reads a bare `off` as false
            object.__setattr__(self, "cuda_graphs", "off")


@dataclass(frozen=True)
class DataConfig:
    root: str = "data"
    split_seed: int = 42
    datasets: dict = field(default_factory=dict)

    def source(self, dataset: str) -> dict:
        """The dataset's entry: source, val_size and optional subset sizes."""
        if dataset not in self.datasets:
            raise ValueError(f"dataset {dataset!r} is not under data.datasets in the config "
                             f"(configured: {sorted(self.datasets)})")
        return self.datasets[dataset]


def format_beta(beta: float) -> str:
    """6.0 -> '6', 0.5 -> '0.5', 1e-05 -> '1e-05': the exact, shortest spelling used in run
    names, paths and table labels (``RunSpec.parse`` reads it back to the same float)."""
    text = repr(float(beta))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class RunSpec:
    """One training run: the unit a checkpoint belongs to.

    ``layer`` and ``beta`` are set only for the layered defenses (``cl-*``, or a plugin's
    declared ``layered``; repro.registry).
    """
    dataset: str
    defense: str
    seed: int
    layer: str | None = None
    beta: float | None = None

    def __post_init__(self):
        from repro import registry

        registry.dataset(self.dataset)  # an unknown id: ValueError naming the known ones
        if registry.defense(self.defense).layered:
            if self.layer is None or self.beta is None:
                raise ValueError(f"{self.defense} needs a layer and a beta")
            if self.layer not in LAYERS:
                raise ValueError(f"layer: {self.layer!r} is not one of {list(LAYERS)}")
            object.__setattr__(self, "beta", float(self.beta))
        elif self.layer is not None or self.beta is not None:
            raise ValueError(f"{self.defense} takes no layer or beta (only a layered defense "
                             f"such as cl-* does)")

    @property
    def name(self) -> str:
        """The run's name without dataset and seed, e.g. 'at-pgd' or 'cl-fgsm-embed5-beta6'."""
        if self.layer is None:
            return self.defense
        return f"{self.defense}-{self.layer}-beta{format_beta(self.beta)}"

    @classmethod
    def parse(cls, dataset: str, name: str, seed: int | str) -> "RunSpec":
        """The run that :attr:`name` (with dataset and seed) spells."""
        match = re.fullmatch(rf"(.+)-({'|'.join(LAYERS)})-beta([0-9.e+-]+)", name)
        if match:
            defense, layer, beta = match.groups()
            return cls(dataset, defense, int(seed), layer, float(beta))
        return cls(dataset, name, int(seed))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AuditConfig:
    """Evaluation beyond the paper (``audit:``): AutoAttack, the ε curve, the masking checks.

    ``autoattack`` holds each component's budget as in the config (see
    :class:`repro.attacks.autoattack.Budget`); ``chunk_size`` is fixed here, not taken from
    ``evaluation.chunk_size``, because AutoAttack's random draws depend on its batches.
    """
    n_images: int = 1000
    chunk_size: int = 500
    autoattack: dict = field(default_factory=lambda: {
        "apgd_ce": {"steps": 100}, "apgd_t": {"steps": 100, "targets": 9},
        "fab_t": {"steps": 100, "targets": 9}, "square": {"queries": 5000}})
    epsilons: tuple = (0, 1, 2, 4, 8, 16, 64)  # ε = k/255 in the attack space
    tolerance: float = 1.0
    near_zero: float = 10.0

    def __post_init__(self):
        object.__setattr__(self, "epsilons", tuple(self.epsilons))
        if list(self.epsilons) != sorted(set(self.epsilons)):
            raise ValueError(f"audit.epsilons: {list(self.epsilons)} must be distinct and "
                             f"ascending")

    def curve_epsilons(self) -> list[float]:
        return [k / 255 for k in self.epsilons]


@dataclass(frozen=True)
class Settings:
    """Everything the library needs from a config, parsed once."""
    data: DataConfig
    protocol: Protocol
    training: TrainingConfig
    pretrained: str = "imagenet"
    attack_chunk_size: int = 1024
    audit: AuditConfig = field(default_factory=AuditConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @classmethod
    def from_config(cls, config: dict) -> "Settings":
        """Build from a full pipeline config dict (``config.yaml``); other sections are ignored."""
        from repro import registry

        protocol = dict(config.get("protocol") or {})
        own = registry.settings_sections(config.get("plugins"))
        extra = {key: protocol.pop(key) for key in list(protocol) if key in own}
        return cls(
            data=_build(DataConfig, config.get("data")),
            protocol=_build(Protocol, {**protocol, "extra": extra}),
            training=_build(TrainingConfig, config.get("training")),
            pretrained=str(config.get("model", {}).get("pretrained", "imagenet")),
            attack_chunk_size=int(config.get("evaluation", {}).get("chunk_size", 1024)),
            audit=_build(AuditConfig, config.get("audit")),
            runtime=_build(RuntimeConfig, config.get("runtime")),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> "Settings":
        return cls.from_config(load_config(path))

    def as_dict(self) -> dict:
        return asdict(self)


def load_config(path: str | Path, *overlays: str | Path) -> dict:
    """A YAML config with ``overlays`` merged over it, nested keys one by one, as Snakemake
    merges ``--configfile`` presets over the Snakefile's ``config.yaml``."""
    with open(path) as handle:
        config = yaml.safe_load(handle) or {}
    for overlay in overlays:
        merge_config(config, load_config(overlay))
    return config


def merge_config(base: dict, overlay: dict) -> dict:
    """Merge ``overlay`` into ``base`` in place: dicts key by key, anything else replaced."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_config(base[key], value)
        else:
            base[key] = value
    return base


SCHEMA_FILE = "config.schema.yaml"  # shipped in the package: the CLI needs it installed, too


class ConfigError(UserError, ValueError):
    """An invalid pipeline config: one line per problem, each starting with its dotted key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"invalid config (keys as in config.yaml; allowed values in "
                         f"src/repro/{SCHEMA_FILE}):\n  " + "\n  ".join(problems))


def load_schema(plugins=()) -> dict:
    """The config's JSON schema, with the registries' members (built-in and those of the
    ``plugins`` files) filled in (repro.registry.schema)."""
    from repro import registry

    with resources.files("repro").joinpath(SCHEMA_FILE).open() as handle:
        return registry.schema(yaml.safe_load(handle), plugins)


def validate_config(config: dict) -> dict:
    """Check a merged pipeline config in place, before any work; raise :class:`ConfigError`
    (or a :class:`repro.registry.PluginError` for a file under ``plugins:``).

    The one check for both entry points (the workflow at start-up and ``python -m repro``), so
    a value the workflow refuses is refused by hand too. Also, in place: numeric and boolean
    strings become numbers and booleans where the schema wants them (Snakemake passes nested
    ``--config`` values as strings, and PyYAML reads ``1e-3`` as a string), and the schema's
    defaults fill in missing keys. Folders the config names must not be files.
    """
    from repro import registry

    plugins = config.get("plugins") or []
    if not isinstance(plugins, list):
        raise ConfigError([f"plugins: {plugins!r} is not a list of .py files"])
    registry.load_plugins(plugins)  # a bad plugin: PluginError, naming its file and field
    schema = load_schema(plugins)
    _coerce_strings(config, schema)
    problems = _moved(config) or config_errors(config, schema) or _folder_errors(config)
    if problems:
        raise ConfigError(problems)
    return config


def config_errors(config: dict, schema: dict) -> list[str]:
    """Every violation of the config's JSON schema as one line that starts with the dotted key
    (``training.lr: -1 is less than or equal to the minimum of 0``), in key order; fills in the
    schema's defaults on the way.

    jsonschema's own report puts the key in a schema path several lines below the message;
    a user who mistyped one value should read which key on the first line.
    """
    errors = sorted(_validator(schema).iter_errors(config),
                    key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_key(error.absolute_path)}: {error.message}" for error in errors]


def _key(path) -> str:
    return ".".join(map(str, path)) or "(top level)"


def _validator(schema: dict):
    """The schema's validator, extended (as Snakemake's ``validate`` is) to set defaults."""
    from jsonschema import validators

    base = validators.validator_for(schema)

    def properties_with_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    return validators.extend(base, {"properties": properties_with_defaults})(schema)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


def _coerce_strings(config: dict, schema: dict) -> None:
    """Replace, in place, every string the schema wants as a number, integer or boolean and
    that spells one exactly ('0.05', '1e-3', '20', 'true'); other strings stay and fail."""
    for error in list(_validator(schema).iter_errors(config)):  # all found, then changed
        value = _as_wanted(error.instance, error.validator_value) \
            if error.validator == "type" and isinstance(error.instance, str) else None
        if value is not None and error.absolute_path:
            *parents, leaf = error.absolute_path
            node = config
            for part in parents:
                node = node[part]
            node[leaf] = value


def _as_wanted(text: str, wanted) -> int | float | bool | None:
    wanted = [wanted] if isinstance(wanted, str) else wanted
    text = text.strip()
    if "integer" in wanted and _INTEGER.fullmatch(text):
        return int(text)
    if "number" in wanted and _NUMBER.fullmatch(text):
        return float(text)
    if "boolean" in wanted and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return None


# Keys that moved, old -> new: refused by name, so an old config says what to write instead.
MOVED = {("training", "device"): "runtime.device",
         ("training", "cuda_graphs"): "runtime.cuda_graphs"}


def _moved(config: dict) -> list[str]:
    return [f"{_key(old)}: moved to {new} (it governs every job, not only training); write "
            f"{new.split('.')[0]}: {{{new.split('.')[1]}: {config[old[0]][old[1]]}}} instead"
            for old, new in MOVED.items()
            if isinstance(config.get(old[0]), dict) and old[1] in config[old[0]]]


FOLDER_KEYS = (("results",), ("data", "root"))


def _folder_errors(config: dict) -> list[str]:
    """A folder key naming a file (or a path through a file) fails here, naming the key,
    instead of as a NotADirectoryError deep inside the first job that writes there."""
    problems = []
    for key in FOLDER_KEYS:
        value = config
        for part in key:
            value = value[part]
        blocker = next((p for p in (Path(value), *Path(value).parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            where = "" if blocker == Path(value) else f" ({blocker} is a file)"
            problems.append(f"{_key(key)}: {value!r} is not a folder{where}; give a folder path")
    return problems
