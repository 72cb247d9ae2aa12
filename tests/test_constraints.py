"""constraints.txt pins the environment the README's numbers were made with: every package that the
default install (`.[test]`) brings in is pinned for Python 3.11, at a version that pyproject.toml
admits. A dependency added without a pin would let a clean clone drift from the published table."""

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PINNED_APART = {"torch", "opuslm"}  # torch has its own line for every Python; opuslm is this project


def pins_for_python_311() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"python_version": "3.11"}):
            (version,) = [s.version for s in requirement.specifier if s.operator == "=="]
            pins[canonicalize_name(requirement.name)] = version
    return pins


def installed_closure(name: str, extras: set[str]) -> set[str]:
    """The distributions that installing `name[extras]` pulls in, read from what is installed."""
    seen, todo = set(), [(name, extras)]
    while todo:
        current, wanted = todo.pop()
        for text in metadata.distribution(current).requires or []:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            key = canonicalize_name(requirement.name)
            if key not in seen:
                seen.add(key)
                todo.append((requirement.name, set(requirement.extras)))
    return seen


def test_every_pin_is_admitted_by_pyproject():
    pins = pins_for_python_311()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    for text in declared:
        requirement = Requirement(text)
        key = canonicalize_name(requirement.name)
        if key in pins:
            assert requirement.specifier.contains(pins[key], prereleases=True), (text, pins[key])


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the pins hold on Python 3.11, the project's machines")
def test_the_default_install_is_pinned_whole_at_the_installed_versions():
    pins = pins_for_python_311()
    closure = installed_closure("opuslm", {"test"}) - PINNED_APART
    assert closure - pins.keys() == set(), "installed by `.[test]` but not pinned in constraints.txt"
    drifted = {name: (metadata.version(name), pins[name]) for name in closure if metadata.version(name) != pins[name]}
    assert drifted == {}, "installed version differs from its pin: run `make venv` after changing constraints.txt"
