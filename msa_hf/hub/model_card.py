# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The model card (`README.md`) of a trained model, from `msa_hf/hub/cards/model_card.md` and measured numbers."""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from msa_hf.training.config import TrainConfig

# the card's metadata for the Hub's results widget; only written when the test split was scored
_MODEL_INDEX = """model-index:
- name: $name
  results:
  - task:
      type: image-segmentation
    dataset:
      type: $dataset
      name: $dataset
      split: test
    metrics:
    - type: dice
      name: $metric_name
      value: $mean_dice
"""

NOT_EVALUATED = (
    "Not scored on a test split yet (the run had none, or `--no-evaluate-test`): "
    "`msa-hf evaluate <model folder> --dataset <prepared dataset>` scores it."
)


def render_model_card(
    config: TrainConfig, result: dict[str, Any], results_table: str, test_tables: dict[str, Any] | None
) -> str:
    """Fill the model card template; every number comes from `result` (train_result.json) and the test
    evaluation, none is typed in. Without `test_tables` the card says the model is not scored yet and
    carries no results metadata (no made-up or NaN metric)."""
    from msa_hf.hub.cards import read_template

    # the card's headline metric: box-prompted Dice for 2-D models, one click per slice on whole volumes
    # for 3-D (depth-branch) models, which take no boxes
    tables = test_tables or {}
    protocol, metric_name = (
        ("volume_points1", "mean Dice (3-D volumes, one click per slice, per case)")
        if "volume_points1" in tables
        else ("box", "mean Dice (box prompt, per case)")
    )
    table = tables.get(protocol, {})
    mean_dice = float(np.nanmean([v["dice"] for v in table.values()])) if table else float("nan")
    if config.base == "tiny":
        base_license = "Apache-2.0, msa_hf's synthetic-pretrained base"
    elif config.base.endswith(".pth"):
        base_license = "the checkpoint's own (SAM: Apache-2.0, Meta; MedSAM: see its repository)"
    else:
        base_license = f"see the card of {config.base}"
    name, dataset = f"msa-{Path(config.dataset).name}-{config.method}", Path(config.dataset).name
    model_index = (
        Template(_MODEL_INDEX).substitute(
            name=name, dataset=dataset, metric_name=metric_name, mean_dice=f"{mean_dice:.4f}"
        )
        if table
        else ""
    )
    return Template(read_template("model_card.md")).substitute(
        license="apache-2.0",
        model_index=model_index,
        base_model=config.base if "/" in config.base and not Path(config.base).exists() else "",
        method=config.method,
        dataset=dataset,
        name=name,
        base=config.base,
        trainable=f"{result['trainable_parameters']:,}",
        total=f"{result['total_parameters']:,}",
        share=f"{result['trainable_parameters'] / max(result['total_parameters'], 1):.2%}",
        steps=result["steps"],
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        box_share=f"{config.box_probability:.0%}",
        iterative_share=f"{config.iterative_probability:.0%}",
        results_table=results_table if table else NOT_EVALUATED,
        config_yaml=config.to_yaml(),
        base_license=base_license,
    )
