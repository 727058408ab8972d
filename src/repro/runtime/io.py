"""Atomic outputs and provenance: a crash never leaves a truncated file a later step trusts.

A write that fails for a reason the user must fix (a full disk, a quota, a read-only or
someone else's folder) ends in one :class:`OutputUnwritable` line naming the file and the cause,
and leaves the previous file as it was; :func:`check_writable` finds the same problem before any
work starts; :func:`file_lock` makes concurrent writers of shared files (a data root) wait in turn.
"""
from __future__ import annotations

import errno
import glob
import json
import os
import platform
import re
import subprocess
import sys
import uuid
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import torch

from repro.errors import UserError


class CorruptFile(UserError, RuntimeError):
    """A file this package wrote and reads back that does not load or fails its checks; the
    message names the file and says how to make it again."""


class OutputUnwritable(UserError, OSError):
    """A file cannot be written where it must be (full disk, quota, read-only or foreign
    folder); the message names the file, the cause and the fix."""


# What the user fixes by freeing space or choosing another folder, never a bug of repro.
_SPACE = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
          errno.EFBIG: "file too large for the filesystem"}
_PERMISSION = {errno.EROFS: "read-only filesystem", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted"}


def write_error(path, error: BaseException) -> OutputUnwritable | None:
    """The one-line :class:`OutputUnwritable` for a failed write of ``path``, or None when the
    failure is not a disk or permission problem. torch.save given a file name reports a full
    disk as ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``, with the
    OSError only as its context: both are recognized."""
    cause = error if isinstance(error, OSError) else error.__context__
    code = getattr(cause, "errno", None)
    if code not in _SPACE and code not in _PERMISSION:
        return None
    path = Path(path)
    folder = path.parent.resolve()
    if code in _SPACE:
        fix = (f"free space there (`df -h {folder}`) or write elsewhere (--out, `results` or "
               f"`data.root`), then run the same command again")
    else:
        fix = (f"make {folder} writable for this user or write elsewhere (--out, `results` or "
               f"`data.root`)")
    return OutputUnwritable(f"cannot write {path.resolve()}: {(_SPACE | _PERMISSION)[code]} "
                            f"({errno.errorcode[code]}); {fix}. Nothing of an earlier run was "
                            f"changed")


@contextmanager
def naming(path):
    """Turn a disk or permission failure inside the block into :func:`write_error`'s line
    about ``path``; other errors pass unchanged (an OutputUnwritable, which has no errno,
    too: the innermost block names the file)."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        unwritable = write_error(path, error)
        if unwritable is None:
            raise
        raise unwritable from error


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.
    First removes the temporaries a killed writer of ``path`` left (:func:`remove_temporaries`),
    so every output of the pipeline is covered, not only those whose writer remembers to.
    A full disk or a folder without write permission raises :class:`OutputUnwritable`."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with naming(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_temporaries(path)
            # Not tempfile.mkstemp: its files are mode 0600, so results on a shared cluster
            # filesystem would be unreadable to the rest of the group. os.open applies the umask.
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            yield Path(tmp)
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_paths(*paths):
    """:func:`atomic_path` for files that belong together (a checkpoint and its metrics): none
    replaces its old version unless every one was written."""
    with ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path)) for path in paths]


def check_writable(path) -> None:
    """Fail at once, naming ``path``, when no file can be created in its folder (made if
    missing): a command calls this before its work, so a read-only or full output folder does
    not cost an epoch first. The probe is named like a temporary of ``path``
    (:func:`remove_temporaries` removes it if this process is killed meanwhile)."""
    path = Path(path)
    probe = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(probe, "xb") as handle:
            handle.write(b"0")
        probe.unlink()
    except OSError as error:
        with suppress(OSError):  # a probe made on a disk that was full for its one byte
            probe.unlink()
        raise (write_error(path, error) or OutputUnwritable(
            f"cannot write {path.resolve()}: {error.strerror or error}; give a path in a "
            f"folder that this user can write")) from error


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            handle.write(text)


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_torch(path, data, texts: dict | None = None) -> None:
    """``torch.save`` ``data`` to ``path`` atomically, and the ``texts`` ({path: text}) with
    it: none replaces its old version unless all were written (a checkpoint and its metrics)."""
    texts = texts or {}
    with atomic_paths(path, *texts) as (tmp, *text_tmps):
        for text_path, text_tmp, text in zip(texts, text_tmps, texts.values()):
            with naming(text_path), open(text_tmp, "w") as handle:
                handle.write(text)
        # Through a Python file, not a file name: torch's own writer turns a full disk into
        # an "unexpected pos" RuntimeError; a Python file raises the OSError naming the cause.
        with naming(path), open(tmp, "wb") as handle:
            torch.save(data, handle)


@contextmanager
def file_lock(path, shared: bool = False, waiting: str = ""):
    """Hold an advisory lock on ``path`` (created if missing) for the block: exclusive for
    writers, ``shared`` for readers. flock locks belong to an open file, so two threads of one
    Snakemake process exclude each other as two processes do (NFS v4 and Lustre honour them).
    Prints ``waiting`` once when another holder makes this one wait. A shared lock on a file
    that does not exist and cannot be made (a read-only data root) is skipped: then nothing
    can be writing there either."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; concurrent downloads are not guarded there
        yield
        return
    path = Path(path)
    try:
        # a shared lock needs no write access: a reader's lock file may sit on a read-only root
        handle = open(path, "rb") if shared else open(path, "a+b")
    except OSError as error:
        if shared:
            yield
            return
        raise (write_error(path, error) or error) from error
    with handle:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                print(waiting, file=sys.stderr, flush=True)
            fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
