"""Atomic outputs and provenance: a crash never leaves a truncated file a later step trusts."""
from __future__ import annotations

import glob
import json
import os
import platform
import re
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import torch

from repro.errors import UserError


class CorruptFile(UserError, RuntimeError):
    """A file this package wrote and reads back that does not load or fails its checks; the
    message names the file and says how to make it again."""


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.
    First removes the temporaries a killed writer of ``path`` left (:func:`remove_temporaries`),
    so every output of the pipeline is covered, not only those whose writer remembers to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_temporaries(path)
    # Not tempfile.mkstemp: its files are mode 0600, so results on a shared cluster filesystem
    # would be unreadable to the rest of the group. os.open applies the umask as usual.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_torch(path, data) -> None:
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def remove_temporaries(path) -> list[Path]:
    """Delete the temporaries that :func:`atomic_path` left beside ``path`` when its process was
    killed (kill -9, OOM, node failure): :func:`atomic_path` calls this before each write, so
    a 124 MB training state is not orphaned for ever. Only this module's names match."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{32}}\.tmp")
    removed = [tmp for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp")
               if pattern.fullmatch(tmp.name)]
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    return removed


def read_json(path, fix: str):
    """The JSON at ``path``; :class:`CorruptFile` naming it and ``fix`` if it does not load."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise CorruptFile(f"{path} does not load as JSON ({error}); {fix}") from error


def load_torch(path, fix: str, required=()) -> dict:
    """The torch file at ``path``, with ``required`` keys; else :class:`CorruptFile` naming it
    and ``fix`` (what makes it again)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a truncated/corrupt file
        raise CorruptFile(f"{path} does not load as a torch file ({error}); {fix}") from error
    missing = [key for key in required if not isinstance(data, dict) or key not in data]
    if missing:
        raise CorruptFile(f"{path} lacks {missing} (damaged, or written by another version of "
                          f"repro); {fix}")
    return data


def provenance(device) -> dict:
    """What made an output: versions, device, host and git commit (when available)."""
    import numpy
    import torchvision

    from repro import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    device = torch.device(device)
    return {
        "repro": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(), "host": platform.node(), "git_commit": commit,
        "device": str(device), "threads": torch.get_num_threads(),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
    }
