# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Model and dataset card templates (`string.Template` placeholders), shipped as package data."""

from importlib.resources import files


def read_template(name: str) -> str:
    """The text of the card template `name` (e.g. "dataset_card.md")."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")
