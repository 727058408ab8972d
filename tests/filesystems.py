"""Folders that fail writes as real ones do, for the tests of full disks and read-only outputs.

``small_filesystem`` mounts a tmpfs of a few megabytes (a disk that fills up); ``read_only``
makes a folder that refuses new files: a read-only tmpfs for root (whom permissions do not
stop), ``chmod 555`` for anyone else. Both skip the test where they cannot be had (mounting
needs root and a kernel that lets this container mount). Each is undone on exit.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest


def _mount(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def _unmount(folder: Path) -> None:
    """Lazily: a failed test's traceback may still hold a file open in it."""
    subprocess.run(["umount", "--lazy", str(folder)], check=True)


@contextlib.contextmanager
def small_filesystem(folder: Path, megabytes: int):
    """``folder`` as a filesystem of ``megabytes`` MiB: writes beyond it fail with ENOSPC."""
    _mount(folder, f"size={megabytes}m")
    try:
        yield folder
    finally:
        _unmount(folder)


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder``, empty, in which no file can be created."""
    if os.geteuid() != 0:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    _mount(folder, "ro,size=1m")
    try:
        yield folder
    finally:
        _unmount(folder)
