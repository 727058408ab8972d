"""The lock: the exact versions that the README and CI install (requirements.lock).

A result made with other versions of PyTorch or NumPy may differ in its last digits or more;
the report flags such results by comparing the versions each evaluation recorded with the lock.
The lock is made by ``uv pip compile`` (command in its header and in docs/reliability.md) and holds
environment markers, so it is read for the interpreter that reads it.
"""
from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


def read_lock(path: str | Path) -> dict[str, str]:
    """{canonical package name: pinned version} for the packages this interpreter would install."""
    pins = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise ValueError(f"{path}:{number}: {line!r} is not an exact pin (name==version)")
        if requirement.marker is None or requirement.marker.evaluate():
            pins[canonicalize_name(requirement.name)] = specs[0].version
    return pins


def differences(recorded: dict[str, str | None], pins: dict[str, str]) -> list[str]:
    """'torch 2.15.0 (lock: 2.14.1)' for every recorded version that the lock pins otherwise.

    Local build tags are ignored (torch 2.14.1+cu130 and +cpu both match a pin of 2.14.1): they
    name the build of the same release, which the provenance records beside the device."""
    found = []
    for name, version in recorded.items():
        pinned = pins.get(canonicalize_name(name))
        if pinned is not None and version and Version(version).public != Version(pinned).public:
            found.append(f"{name} {version} (lock: {pinned})")
    return found
