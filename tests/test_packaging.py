"""Install metadata: the lower bounds in pyproject.toml are the versions the lowest-bounds run installs, and an
installed (not editable) msa_hf carries what it serves and publishes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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
    assert not any("==" in r for r in project["dependencies"]), "exact pins"
    # the newest Python allowed is the one `make test-newest-python` runs the tests on
    newest = re.search(r"^NEWEST_PYTHON := 3\.(\d+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    assert project["requires-python"] == f">=3.11,<3.{int(newest) + 1}"


def test_the_oldest_torch_run_installs_the_torch_lower_bound():
    (torch_requirement,) = [
        r for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if _name(r) == "torch"
    ]  # fmt: skip
    bound = re.search(r">=\s*([\w.]+)", torch_requirement).group(1)
    oldest = re.search(r"^OLDEST_TORCH := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    assert oldest.startswith(f"{bound}."), (
        f"pyproject says torch>={bound}, make test-oldest-torch installs {oldest}"
    )


@pytest.mark.slow
def test_an_installed_msa_hf_serves_and_publishes_the_demo(tmp_path):
    """pip's wheel of this checkout, installed into a folder away from it (no `spaces/` beside the package),
    makes the same demo Space as the checkout: the launcher, the page and its example images all ship."""
    pytest.importorskip("setuptools", reason="building the wheel without isolation needs setuptools")
    source = tmp_path / "source"
    shutil.copytree(ROOT / "msa_hf", source / "msa_hf", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "NOTICE"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("msa_hf-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True
    )
    script = (
        "import json, msa_hf, msa_hf.demo.app as app\n"
        "from msa_hf.hub.push import space_files\n"
        "files = space_files('org/msa-liver')\n"
        "print(json.dumps({'package': msa_hf.__file__, 'files': sorted(files), 'app': files['app.py'].decode(),\n"
        "                  'examples': sorted(p.name for p in app.EXAMPLES.iterdir())}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    assert Path(found["package"]).is_relative_to(site)
    from msa_hf.hub.push import SPACE_APP

    assert found["app"] == SPACE_APP
    assert [f for f in found["files"] if not f.startswith("wheels/")] == [
        "README.md", "app.py", "msa_model.txt", "requirements.txt"
    ]  # fmt: skip
    assert found["examples"] == ["README.md", "mni152_axial_a.png", "mni152_axial_b.png"]
