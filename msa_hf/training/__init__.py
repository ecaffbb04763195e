# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Training: the job behind `accelerate launch train.py` (`job`, `config`, `methods`, `state`), the prompted
loss and per-structure validation (`prompted`, `losses`), method comparison and text-prompt training."""

from msa_hf._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TrainConfig": "config",
        "run_training": "job",
        "TrainResult": "job",
        "AdapterTrainingConfig": "config",
        "flatten_volume_batch": "prompted",
        "prompted_training_loss": "prompted",
        "train_adapters": "prompted",
        "EVALUATION_PROMPTS": "prompted",
        "evaluate_segmentation": "prompted",
        "evaluate_prompts": "prompted",
    },
)
