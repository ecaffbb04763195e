"""Install metadata: the lower bounds in pyproject.toml are the versions the lowest-bounds run installs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_lowest_bounds_file_installs_exactly_the_lower_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lower = {}
    for requirement in project["dependencies"]:
        match = re.search(r">=\s*([\w.]+)", requirement)
        if match and _name(requirement) != "torch":  # torch comes from the CPU build on disk
            lower[_name(requirement)] = match.group(1)
    pinned = {}
    for line in (ROOT / ".ci" / "lowest-bounds.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pinned[_name(name)] = version.strip()
    assert set(pinned) <= set(lower), f"pinned but not bounded: {set(pinned) - set(lower)}"
    for name, bound in lower.items():
        if name == "pyyaml":  # a stable API for a decade: not worth a lowest-bounds install
            continue
        assert name in pinned, f"{name}>={bound} is not tested: add it to .ci/lowest-bounds.txt"
        assert pinned[name].startswith(bound), (
            f"{name}: pyproject says >={bound}, the run installs {pinned[name]}"
        )
    assert not any("==" in r and not r.startswith("peft") for r in project["dependencies"]), "exact pins"
    assert project["requires-python"] == ">=3.11,<3.14"
