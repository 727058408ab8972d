"""The lock (requirements.lock) covers every dependency, agrees with environment.yml, and is
what this environment runs when it was installed the README's way."""
import os
import re
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from repro.runtime import lock
from conftest import ROOT

LOCK = ROOT / "requirements.lock"


def _declared() -> set[str]:
    """Every package pyproject.toml asks for, its extras included."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return {canonicalize_name(Requirement(r).name) for r in project["dependencies"] + extras}


def test_every_dependency_of_pyproject_is_pinned_in_the_lock():
    assert _declared() - set(lock.read_lock(LOCK)) == set()


def test_environment_yml_installs_the_lock_with_its_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    locked_python = re.search(r"--python-version (\S+)", LOCK.read_text()).group(1)
    assert f"python={locked_python}" in conda
    assert "-r requirements.lock" in pip and "-e ." in pip
    pins = lock.read_lock(LOCK)
    for entry in conda + pip:  # any version environment.yml states itself must be the lock's
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*==?\s*([0-9][^\s;]*)", entry)
        if match and match.group(1) != "python":
            assert pins.get(canonicalize_name(match.group(1))) == match.group(2), entry


def test_read_lock_evaluates_markers_and_refuses_loose_pins(tmp_path):
    path = tmp_path / "lock.txt"
    path.write_text("numpy==2.4.6 ; python_full_version < '3.0'\n"
                    "numpy==9.9 ; python_version >= '3'\n"
                    "torch==2.14.1\n    # via repro\n")
    assert lock.read_lock(path) == {"numpy": "9.9", "torch": "2.14.1"}
    path.write_text("torch>=2.1\n")
    with pytest.raises(ValueError, match="lock.txt:1: 'torch>=2.1' is not an exact pin"):
        lock.read_lock(path)


def test_differences_ignore_build_tags_and_name_what_differs():
    pins = {"torch": "2.14.1", "numpy": "2.4.6"}
    assert lock.differences({"torch": "2.14.1+cu130", "numpy": "2.4.6", "other": "1"}, pins) == []
    assert lock.differences({"torch": "2.15.0", "numpy": None}, pins) == \
        ["torch 2.15.0 (lock: 2.14.1)"]


@pytest.mark.skipif(not os.environ.get("REPRO_EXPECT_LOCK"),
                    reason="set REPRO_EXPECT_LOCK=1 where the README's locked install was used "
                           "(.ci/run does)")
def test_this_environment_runs_the_locked_versions():
    from importlib.metadata import distributions
    installed = {d.metadata["Name"]: d.version for d in distributions()}
    assert lock.differences(installed, lock.read_lock(LOCK)) == []
