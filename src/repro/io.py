"""Atomic outputs and provenance: a crash never leaves a truncated file a later step trusts."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import torch


class CorruptFile(RuntimeError):
    """A checkpoint or JSON that does not load or lacks its fields."""


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def read_json(path, required=()) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise CorruptFile(f"{path} does not load as JSON ({error}); delete it so that the "
                          f"step that makes it runs again") from error
    _require(path, data, required)
    return data


def load_torch(path, required=()) -> dict:
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a truncated/corrupt file
        raise CorruptFile(f"{path} does not load as a checkpoint ({error}); delete it so "
                          f"that the step that makes it runs again") from error
    _require(path, data, required)
    return data


def _require(path, data, required) -> None:
    missing = [key for key in required if not isinstance(data, dict) or key not in data]
    if missing:
        raise CorruptFile(f"{path} lacks {missing}; it was not written by this version of "
                          f"repro or was damaged: delete it so that it is made again")


def provenance(device) -> dict:
    """What made an output: versions, device, host and git commit (when available)."""
    import numpy
    import torchvision

    from . import __version__

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
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
    }
