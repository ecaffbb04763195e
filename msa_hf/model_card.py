# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The model card (`README.md`) of a trained model, from `hub_cards/model_card.md` and measured numbers."""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from .train_config import TrainConfig


def render_model_card(
    config: TrainConfig, result: dict[str, Any], results_table: str, test_tables: dict[str, Any] | None
) -> str:
    """Fill the model card template; every number comes from `result` (train_result.json) and the test
    evaluation, none is typed in."""
    from hub_cards import read_template

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
    return Template(read_template("model_card.md")).substitute(
        license="apache-2.0",
        base_model=config.base if "/" in config.base and not Path(config.base).exists() else "",
        method=config.method,
        dataset=Path(config.dataset).name,
        name=f"msa-{Path(config.dataset).name}-{config.method}",
        base=config.base,
        metric_name=metric_name,
        mean_dice=f"{mean_dice:.4f}",
        trainable=f"{result['trainable_parameters']:,}",
        total=f"{result['total_parameters']:,}",
        share=f"{result['trainable_parameters'] / max(result['total_parameters'], 1):.2%}",
        steps=result["steps"],
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        box_share=f"{config.box_probability:.0%}",
        iterative_share=f"{config.iterative_probability:.0%}",
        results_table=results_table or "(not evaluated)",
        config_yaml=config.to_yaml(),
        base_license=base_license,
    )
