# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Configuration of self-supervised encoder pretraining (paper section 2.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from msa_hf.training.config_checks import check_field_ranges

OBJECTIVES = ("mae", "emix", "shed")
TRAINABLE = ("adapters", "encoder")


@dataclass
class EncoderPretrainingConfig:
    """What `pretrain_encoder` optimises and how.

    `objectives` maps objective names to loss weights (`mae`: masked patch reconstruction, `emix`:
    contrastive embedding mixup, `shed`: shuffled embedding detection; DABS, Tamkin et al. 2021); `trainable`
    is "adapters" (MSA's encoder adapters: SAM stays intact) or "encoder" (the whole image encoder).
    """

    objectives: dict[str, float] = field(default_factory=lambda: {"mae": 1.0})
    trainable: str = "adapters"
    mask_ratio: float = 0.75  # mae: share of patch tokens replaced by the mask token
    shuffle_fraction: float = 0.15  # shed: share of patch tokens moved to another masked position
    mix_temperature: float = 0.1  # emix: softmax temperature of the embedding similarities
    projection_dim: int = 128  # emix: width of the projection head
    steps: int = 1000
    batch_size: int = 8
    learning_rate: float = 1e-4
    weight_decay: float = 0.05
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10

    def __post_init__(self) -> None:
        unknown = set(self.objectives) - set(OBJECTIVES)
        if unknown or not self.objectives:
            raise ValueError(
                f"objectives {sorted(unknown) or '{}'}: choose weights for any of {list(OBJECTIVES)}, "
                "e.g. {'mae': 1.0, 'shed': 0.5}."
            )
        if any(weight <= 0 for weight in self.objectives.values()):
            raise ValueError(f"objective weights must be positive; got {self.objectives}.")
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable={self.trainable!r}: choose one of {list(TRAINABLE)}.")
        if not 0 < self.mask_ratio < 1 or not 0 < self.shuffle_fraction < 1:
            raise ValueError(
                f"mask_ratio ({self.mask_ratio}) and shuffle_fraction ({self.shuffle_fraction}) must lie in (0, 1)."
            )
        check_field_ranges(
            self,
            at_least_one=("steps", "batch_size", "checkpoint_every", "log_every", "projection_dim"),
            positive=("learning_rate", "mix_temperature"),
            non_negative=("weight_decay",),
        )
        if "emix" in self.objectives and self.batch_size < 2:
            raise ValueError("emix mixes images of one batch: batch_size must be at least 2.")
