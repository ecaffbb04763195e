# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Adaptation that keeps what the base could already do.

Adapting a promptable base to a few structures narrows it: it stops following prompts around anything else.
Two options of `train.py` counter that, each its own module:

- `self_distillation`: a share of steps prompts the images anywhere and learns the base's own masks
  (`--distill-probability`); the teacher is the model with its adapters switched off.
- `replay`: a share of every batch comes from the base's synthetic data engine with its exact masks
  (`--replay-share`).
"""

from msa_hf.training.retention.replay import (
    ReplayDraws,
    ReplayFeed,
    SyntheticReplay,
    mix_replayed_rows,
    replayed_row_count,
)
from msa_hf.training.retention.self_distillation import BaseTeacher, distillation_batch, random_prompts

__all__ = [
    "BaseTeacher",
    "ReplayDraws",
    "ReplayFeed",
    "SyntheticReplay",
    "distillation_batch",
    "mix_replayed_rows",
    "random_prompts",
    "replayed_row_count",
]
