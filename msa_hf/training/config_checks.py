# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Range checks shared by the run configurations (`TrainConfig`, `PretrainingConfig`,
`EncoderPretrainingConfig`): each refuses, before anything runs, a setting that could not train."""

from __future__ import annotations

import math
from collections.abc import Iterable


def check_field_ranges(
    config: object,
    *,
    at_least_one: Iterable[str] = (),
    positive: Iterable[str] = (),
    non_negative: Iterable[str] = (),
    shares: Iterable[str] = (),
) -> None:
    """Raise `ValueError` naming the first field of `config` outside its range: counts `>= 1`, `positive`
    values `> 0`, `non_negative` values `>= 0`, `shares` in `[0, 1]`; every value finite (NaN and
    infinity fail every check: a learning rate of inf trains a model of NaNs)."""
    checks = (
        (at_least_one, lambda value: value >= 1, "must be >= 1"),
        (positive, lambda value: value > 0, "must be > 0"),
        (non_negative, lambda value: value >= 0, "must be >= 0"),
        (shares, lambda value: 0.0 <= value <= 1.0, "must be in [0, 1]"),
    )
    for names, within, requirement in checks:
        for name in names:
            value = getattr(config, name)
            if value is None:  # an optional setting left to its automatic choice
                continue
            if isinstance(value, float) and math.isinf(value):
                raise ValueError(f"{name} must be finite, got {value}.")
            if not within(value):
                raise ValueError(f"{name} {requirement}, got {value}.")


__all__ = ["check_field_ranges"]
