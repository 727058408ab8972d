"""The registries: every defense, attack and dataset the pipeline knows, each declared by one
module.

A member module (``src/repro/defenses/at.py``, ``src/repro/attacks/pgd_attack.py``,
``src/repro/data/mnist.py``, or a user's own file named under ``plugins:`` in the config) holds
a list ``MEMBERS`` of :class:`Defense`, :class:`Attack` and :class:`Dataset` declarations. A
declaration is everything the pipeline needs to know of its member: the id used in config,
paths and JSON; the label of its table row or column; the protocol keys it reads (so
``repro.records`` derives the Snakemake ``params:`` from them and a changed value reruns
exactly its jobs); its cost for ``python -m repro estimate`` when no rate was measured; its
own config section (a JSON-schema fragment with defaults, mounted at
``protocol.<settings_key>``); and its implementation. The grid, the run records, the estimate,
the config check (:func:`schema`), the report labels and the cost notice read these; no other
module names a member. See docs/extending.md for a worked example of each kind.

Lookups are by id over every member loaded in this process; which members a *config* uses is
the built-in ones plus those of the files its ``plugins:`` names (:func:`active`), so a plugin
loaded by one config never joins another config's grid. This module imports no torch; the
built-in member modules, which do, are imported on the first lookup.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

from repro.errors import UserError

ID = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
# Protocol keys any member may read; a member's own settings_key adds one (repro.config.Protocol).
PROTOCOL_KEYS = ("epsilon", "attack_space", "clip", "normalization", "pgd", "trades_pgd",
                 "deepfool", "trades", "cl", "topk_average")
BUILTIN_MODULES = {
    "defense": ("repro.defenses.standard", "repro.defenses.at", "repro.defenses.trades",
                "repro.defenses.cl"),
    # named *_attack so that the module never hides the function repro.attacks.pgd etc.
    "attack": ("repro.attacks.clean_attack", "repro.attacks.fgsm_attack",
               "repro.attacks.pgd_attack", "repro.attacks.deepfool_attack"),
    "dataset": ("repro.data.cifar10", "repro.data.mnist"),
}


class PluginError(UserError, ValueError):
    """A member module that cannot be used: one line naming the file and the field."""


@dataclass(frozen=True, kw_only=True)
class Member:
    """What every member declares: its id and its label in tables; ``origin`` is filled in at
    registration ("builtin" or the plugin file)."""
    id: str
    label: str
    origin: str = field(default="", compare=False)


@dataclass(frozen=True, kw_only=True)
class ProtocolMember(Member):
    """A defense or an attack: the protocol keys it reads, its random draws (``noise``), its
    cost, and its own config section (``settings_key``, ``schema``, ``defaults``)."""
    reads: tuple[str, ...]
    noise: Callable | None = None
    cost: Callable | None = None
    settings_key: str | None = None
    schema: dict | None = None
    defaults: dict | None = None


@dataclass(frozen=True, kw_only=True)
class Defense(ProtocolMember):
    """A training defense (a row of the main tables).

    ``loss(model, inputs, labels, run, protocol, noise)`` returns (loss, logits whose accuracy
    is logged) for one batch with the model in train mode. ``noise(run, protocol, shape,
    generator)`` is the one random draw a training step makes, on the CPU, or None (drawn
    apart from the step so that a CUDA graph of the step can take it as an input). ``reads``:
    the protocol keys its training reads beside the input space and normalization that every
    run reads. ``layered``: it takes an embedding layer and a weight β (``run.layer``,
    ``run.beta``), as the cl-* defenses do. ``cost(protocol)``: one training image in images
    of standard training, used when no throughput was measured for it.
    """
    loss: Callable
    layered: bool = False


@dataclass(frozen=True, kw_only=True)
class Attack(ProtocolMember):
    """An evaluation attack (a column of the accuracy tables).

    ``run(model, inputs, labels, protocol, noise)`` returns the adversarial inputs and the
    logits the verdict is read from (the model in eval mode); ``noise(protocol, shape,
    generator)`` its random draws on the CPU, or None. ``parameters(protocol)``: what an
    evaluation JSON records of it (default: the values of ``reads``). ``graphs``: its shapes
    never change, so full chunks may run as CUDA graphs. ``cost(protocol, assumptions)``: one
    test image in images of standard training, used when no throughput was measured for it;
    ``assumptions`` holds the estimate's guesses (``deepfool_steps``). ``cost_follows``: that
    cost follows from the measured training rate with no guess (``clean``: a forward pass,
    a third of a training step), so the estimate does not list the attack as unmeasured.
    """
    run: Callable
    parameters: Callable | None = None
    graphs: bool = False
    cost_follows: bool = False


@dataclass(frozen=True, kw_only=True)
class Dataset(Member):
    """A dataset of 10 classes: the paper's two, or a user's (which gets a top-1 table of its
    own, numbered from 10 on, and no paper comparison).

    ``sources``: {source name: ``load(settings, dataset, entry) -> (train, val, test)``}, each
    a :class:`repro.data.Split` of uint8 images N×3×H×W (grey images broadcast to 3 channels)
    and int64 labels; a seeded ``synthetic`` stand-in of ``shape`` exists for every dataset.
    ``shape``: (channels, height, width) of its images; ``statistics``: (mean, std) per model
    input channel (three each), its normalization; ``sizes``: (train + val, test) images of
    its real data (what the estimate prices); ``default``: its ``data.datasets`` entry when
    the config has none.
    """
    shape: tuple[int, int, int]
    statistics: tuple[tuple[float, ...], tuple[float, ...]]
    sizes: tuple[int, int]
    sources: dict
    default: dict | None = None


KINDS = {"defense": Defense, "attack": Attack, "dataset": Dataset}
_MEMBERS: dict[str, dict[str, Defense | Attack]] = {kind: {} for kind in KINDS}
_PLUGINS: dict[Path, tuple] = {}  # resolved path -> its members, loaded once per process
_BUILTINS_LOADED = False


def _kind(member) -> str:
    return next(kind for kind, cls in KINDS.items() if isinstance(member, cls))


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    for kind, modules in BUILTIN_MODULES.items():
        for name in modules:
            module = importlib.import_module(name)
            path = module.__file__
            for member in _declared(module, path):
                _register(member, path, builtin=True)


def _declared(module, path) -> list:
    members = getattr(module, "MEMBERS", None)
    if not isinstance(members, (list, tuple)) or not members:
        raise PluginError(f"{path}: MEMBERS: missing or empty; declare a list of "
                          f"repro.registry.Defense / Attack (docs/extending.md)")
    for index, member in enumerate(members):
        if not isinstance(member, tuple(KINDS.values())):
            raise PluginError(f"{path}: MEMBERS[{index}] is a {type(member).__name__}, not a "
                              f"repro.registry.Defense or Attack")
    return list(members)


def _check(member, path) -> None:
    """Refuse a declaration that is wrong or whose id or settings key is taken."""
    kind = _kind(member)
    problem = _problem(member, kind)
    known = _MEMBERS[kind].get(member.id)
    if problem is None and known is not None:
        problem = f"id is already declared by {known.origin}; choose another id"
    taken = {m.settings_key: m for k in ("defense", "attack") for m in _MEMBERS[k].values()
             if m.settings_key}
    if problem is None and getattr(member, "settings_key", None) in taken:
        problem = (f"settings_key: {member.settings_key!r} is already the section of "
                   f"{taken[member.settings_key].id} ({taken[member.settings_key].origin})")
    if problem:
        raise PluginError(f"{path}: {kind} {member.id!r}: {problem}")


def _register(member, path, builtin: bool = False):
    _check(member, path)
    member = _with_origin(member, "" if builtin else str(path))
    _MEMBERS[_kind(member)][member.id] = member
    return member


def _with_origin(member, origin: str):
    values = {f.name: getattr(member, f.name) for f in fields(member)}
    return type(member)(**{**values, "origin": origin or "builtin"})


def _problem(member, kind: str) -> str | None:
    """What is wrong with a declaration, naming the field; None if nothing."""
    if not isinstance(member.id, str) or not ID.fullmatch(member.id):
        return f"id: {member.id!r} is not lower-case words joined by '-', e.g. 'mart-pgd'"
    if not isinstance(member.label, str) or not member.label.strip():
        return "label: give the text of its table row or column, e.g. 'ResNet+MART-PGD'"
    if kind == "dataset":
        return _dataset_problem(member)
    if not isinstance(member.reads, (tuple, list)):
        return f"reads: {member.reads!r} is not a tuple of protocol keys"
    allowed = PROTOCOL_KEYS + ((member.settings_key,) if member.settings_key else ())
    # (datasets returned above; defenses and attacks from here on)
    unknown = [key for key in member.reads if key not in allowed]
    if unknown:
        return f"reads: {unknown} not among the protocol keys {list(allowed)}"
    implementation = "loss" if kind == "defense" else "run"
    for name in (implementation, "noise", "cost") + (("parameters",) if kind == "attack" else ()):
        value = getattr(member, name)
        if (value is None and name != implementation) or callable(value):
            continue
        return f"{name}: {value!r} is not a function"
    return _settings_problem(member)


def _dataset_problem(member) -> str | None:
    if not (isinstance(member.shape, (tuple, list)) and len(member.shape) == 3
            and all(isinstance(n, int) and n > 0 for n in member.shape)
            and member.shape[0] in (1, 3)):
        return f"shape: {member.shape!r} is not (channels 1 or 3, height, width)"
    try:
        mean, std = member.statistics
        ok = len(mean) == len(std) == 3 and all(s > 0 for s in std)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        return f"statistics: {member.statistics!r} is not ((3 means), (3 positive stds))"
    if not (isinstance(member.sizes, (tuple, list)) and len(member.sizes) == 2
            and all(isinstance(n, int) and n > 0 for n in member.sizes)):
        return f"sizes: {member.sizes!r} is not (train + val images, test images)"
    if not isinstance(member.sources, dict) or not all(
            isinstance(k, str) and callable(v) for k, v in member.sources.items()):
        return "sources: give {source name: load function}"
    if "synthetic" in member.sources:
        return "sources: 'synthetic' is every dataset's stand-in; name yours otherwise"
    if member.default is not None and member.default.get("source") not in \
            (*member.sources, "synthetic"):
        return f"default: its source must be one of {[*member.sources, 'synthetic']}"
    return None


def _settings_problem(member) -> str | None:
    """A member's own config section: a key that no other section uses, a valid JSON schema
    for an object, and defaults that the schema accepts."""
    given = [name for name in ("settings_key", "schema", "defaults")
             if getattr(member, name) is not None]
    if not given:
        return None
    missing = [n for n in ("settings_key", "schema", "defaults") if n not in given]
    if missing:
        return f"{missing[0]}: missing (settings_key, schema and defaults go together)"
    if not ID.fullmatch(member.settings_key.replace("_", "-")) or \
            member.settings_key in PROTOCOL_KEYS:
        return (f"settings_key: {member.settings_key!r} must be a new lower-case protocol key "
                f"(not one of {list(PROTOCOL_KEYS)})")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(member.schema)
    except SchemaError as error:
        return f"schema: not a JSON schema ({error.message})"
    if member.schema.get("type") != "object":
        return "schema: must describe an object (type: object)"
    errors = list(Draft202012Validator(member.schema).iter_errors(member.defaults))
    if errors:
        return f"defaults: {errors[0].message}"
    return None


def load_plugins(paths) -> list:
    """Import each plugin file once per process and register its members; every problem is a
    :class:`PluginError` naming the file and the field."""
    _load_builtins()
    loaded = []
    for text in paths or ():
        path = Path(text)
        if path.suffix != ".py" or not path.is_file():
            raise PluginError(f"plugins: {text} is not a .py file; give the path of a member "
                              f"module, relative to the folder you run from")
        resolved = path.resolve()
        if resolved not in _PLUGINS:
            _PLUGINS[resolved] = tuple(_import_plugin(resolved, text))
        loaded += _PLUGINS[resolved]
    return loaded


def _import_plugin(path: Path, text: str) -> list:
    name = f"repro_plugin_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{len(_PLUGINS)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # a plugin's own bug: say where, in one line
        field_name = re.search(r"argument: '(\w+)'", str(error))
        where = f"{field_name.group(1)}: " if field_name else ""
        raise PluginError(f"{text}: {where}cannot be loaded ({type(error).__name__}: "
                          f"{error})") from error
    members = _declared(module, text)
    seen = set()
    for member in members:  # all checked before any is registered
        key = (_kind(member), member.id)
        if key in seen:
            raise PluginError(f"{text}: {key[0]} {member.id!r}: id: declared twice in this file")
        seen.add(key)
        _check(member, text)
    return [_register(member, text) for member in members]


def get(kind: str, id: str):
    """The member ``id`` of ``kind`` ("defense" or "attack"); ValueError naming the known ids."""
    _load_builtins()
    try:
        return _MEMBERS[kind][id]
    except KeyError:
        raise ValueError(f"unknown {kind} {id!r}; known: {sorted(_MEMBERS[kind])} (a plugin's "
                         f"ids are known once the config's plugins: names its file)") from None


def defense(id: str) -> Defense:
    return get("defense", id)


def attack(id: str) -> Attack:
    return get("attack", id)


def dataset(id: str) -> Dataset:
    return get("dataset", id)


class View(Mapping):
    """id -> one field of every loaded member of a kind (``View("dataset", "shape")``), read
    when asked, so a plugin's member is in it as soon as its file is loaded; ``extra`` adds
    entries for what is not a member (the audit's AutoAttack column label)."""

    def __init__(self, kind: str, attribute: str, **extra):
        self.kind, self.attribute, self.extra = kind, attribute, extra

    def __getitem__(self, key: str):
        if key in self.extra:
            return self.extra[key]
        _load_builtins()
        if key not in _MEMBERS[self.kind]:
            raise KeyError(key)
        return getattr(_MEMBERS[self.kind][key], self.attribute)

    def __iter__(self):
        return iter((*ids(self.kind), *self.extra))

    def __len__(self) -> int:
        return len(ids(self.kind)) + len(self.extra)


def ids(kind: str) -> tuple[str, ...]:
    """Every loaded member of ``kind``, built-in ones first in the paper's order."""
    _load_builtins()
    return tuple(_MEMBERS[kind])


def active(kind: str, plugins=()) -> list:
    """The members a config with ``plugins:`` uses: the built-in ones, then the plugins'."""
    _load_builtins()
    files = {str(Path(p).resolve()) for p in plugins or ()}
    return [m for m in _MEMBERS[kind].values()
            if m.origin == "builtin" or str(Path(m.origin).resolve()) in files]


def settings_sections(plugins=()) -> dict[str, Defense | Attack]:
    """{protocol key: the member that declares it} for the config's members with own settings."""
    return {m.settings_key: m for kind in ("defense", "attack") for m in active(kind, plugins)
            if m.settings_key}


def schema(base: dict, plugins=()) -> dict:
    """The config's JSON schema with the registries filled in: the attack and layered-defense
    enums, each layered defense's main β, ``grid.defenses``, and each member's own protocol
    section with its defaults. The one place enums of members are checked."""
    defenses = active("defense", plugins)
    layered = [d.id for d in defenses if d.layered]
    defs = base["$defs"]
    defs["attack"]["enum"] = [a.id for a in active("attack", plugins)]
    defs["defense"]["enum"] = [d.id for d in defenses]
    defs["layered_defense"]["enum"] = layered
    main_beta = base["properties"]["grid"]["properties"]["main_beta"]
    main_beta["properties"] = {id: {"$ref": "#/$defs/beta"} for id in layered}
    main_beta["required"] = layered
    protocol = base["properties"]["protocol"]["properties"]
    for key, member in settings_sections(plugins).items():
        protocol[key] = {**member.schema, "default": member.defaults}
    datasets = active("dataset", plugins)
    defs["dataset"]["enum"] = [d.id for d in datasets]
    entries = base["properties"]["data"]["properties"]["datasets"]
    entries["required"] = [d.id for d in datasets if d.default is None]
    entries["properties"] = {d.id: {
        "allOf": [{"$ref": "#/$defs/dataset_entry"},
                  {"properties": {"source": {"enum": [*d.sources, "synthetic"]}}}],
        **({"default": d.default} if d.default is not None else {})} for d in datasets}
    return base
