# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The small promptable base model: its synthetic data engine (`data_engine`), pretraining
(`pretraining`), acceptance gate (`gate`), and the shipped weights with their export (`shipped`)."""

from msa_hf._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {"TINY_BASE": "shipped"})
