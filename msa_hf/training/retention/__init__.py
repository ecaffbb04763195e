# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Adaptation that keeps what the base could already do.

Adapting a promptable base to a few structures narrows it: it stops following prompts around anything else.
Options of `train.py` that counter it, each its own module:

- `self_distillation`: a share of steps prompts the images anywhere and learns the base's own masks
  (`--distill-probability`); the teacher is the model with its adapters switched off.
"""

from msa_hf.training.retention.self_distillation import BaseTeacher, distillation_batch, random_prompts

__all__ = ["BaseTeacher", "distillation_batch", "random_prompts"]
