# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A wheel of this msa_hf, built from the files that are running, for a Space to install.

msa_hf is not on PyPI, so a pushed Space carries the package itself: `wheels/msa_hf-<version>-py3-none-any.whl`
and a `requirements.txt` line that installs it with its extras. The wheel is assembled directly (a zip with
the package files and `.dist-info` metadata), so it can be made from a source checkout or from an installed
copy alike, with no build tool.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
SKIPPED_PARTS = {"__pycache__"}


def _requirements() -> tuple[str, list[str], dict[str, list[str]]]:
    """`(requires-python, dependencies, {extra: dependencies})` from the checkout's pyproject.toml when
    there is one (the truth while developing), else from the installed distribution's metadata."""
    pyproject = PACKAGE.parent / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        project = tomllib.loads(pyproject.read_text())["project"]
        if project.get("name") == "msa_hf":
            return (
                project["requires-python"],
                project["dependencies"],
                project.get("optional-dependencies", {}),
            )
    from importlib import metadata

    distribution = metadata.distribution("msa_hf")
    plain, extras = [], {}
    for requirement in distribution.requires or []:
        if "extra ==" in requirement:
            spec, _, marker = requirement.partition(";")
            extras.setdefault(marker.split("==")[1].strip().strip("\"'"), []).append(spec.strip())
        else:
            plain.append(requirement)
    return distribution.metadata.get("Requires-Python", ""), plain, extras


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(exclude_extras: tuple[str, ...] = ("test",)) -> tuple[str, bytes]:
    """`(file name, wheel bytes)` of the running msa_hf: every file of the package (the shipped base's
    weights and the card templates included), its dependencies and extras (less `exclude_extras`), and the
    `msa-hf` command."""
    from msa_hf import __version__

    requires_python, dependencies, extras = _requirements()
    name = f"msa_hf-{__version__}"
    dist_info = f"{name}.dist-info"
    metadata = [
        "Metadata-Version: 2.1", "Name: msa_hf", f"Version: {__version__}",
        "Summary: Medical SAM Adapter (MSA) for Hugging Face transformers and peft", "License: Apache-2.0",
    ]  # fmt: skip
    if requires_python:
        metadata.append(f"Requires-Python: {requires_python}")
    metadata += [f"Requires-Dist: {r}" for r in dependencies]
    for extra, requirements in extras.items():
        if extra in exclude_extras:
            continue
        metadata.append(f"Provides-Extra: {extra}")
        metadata += [f'Requires-Dist: {r}; extra == "{extra}"' for r in requirements]
    entries: dict[str, bytes] = {}
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and not SKIPPED_PARTS & set(path.parts) and path.suffix != ".pyc":
            entries[f"msa_hf/{path.relative_to(PACKAGE).as_posix()}"] = path.read_bytes()
    entries[f"{dist_info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    entries[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: msa_hf\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    entries[f"{dist_info}/entry_points.txt"] = b"[console_scripts]\nmsa-hf = msa_hf.cli:main\n"
    record = [f"{path},{_hash(data)},{len(data)}" for path, data in entries.items()]
    entries[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in entries.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return f"{name}-py3-none-any.whl", buffer.getvalue()
