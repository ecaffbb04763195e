# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The model card (`README.md`) of a trained model, from `msa_hf/hub/cards/model_card.md` and measured numbers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import numpy as np

from msa_hf.training.base_loading import TINY_BASE_NAME
from msa_hf.training.config import TrainConfig

if TYPE_CHECKING:
    from huggingface_hub import ModelCardData

NOT_EVALUATED = (
    "Not scored on a test split yet (the run had none, or `--no-evaluate-test`): "
    "`msa-hf evaluate <model folder> --dataset <prepared dataset>` scores it."
)


def public_name(value: str) -> str:
    """What a published card may say for a config value: Hub ids and plain words as they are, a path of
    this machine by its last component only."""
    if value.startswith(("/", "~", ".")) or Path(value).exists():
        return Path(value).name or value
    return value


def _public_config(config: TrainConfig) -> TrainConfig:
    """`config` with every path-valued field reduced to `public_name` (for the card's YAML)."""
    changes = {
        item.name: public_name(getattr(config, item.name))
        for item in dataclasses.fields(config)
        if isinstance(getattr(config, item.name), str)
    }
    return dataclasses.replace(config, **changes)


def card_metadata(
    config: TrainConfig, name: str, dataset: str, test_tables: dict[str, Any] | None
) -> ModelCardData:
    """The card's YAML header, built with huggingface_hub's card data classes: licence, library, task,
    base model (when it is a Hub repo), and one result per protocol (`metric_config`) and metric of the
    test split (mean over structures of the per-case means; HD95 over cases where both masks are
    non-empty)."""
    from huggingface_hub import EvalResult, ModelCardData

    from msa_hf.training.base_loading import hub_id_of_base

    metric_names = {"dice": "Dice", "iou": "IoU", "hd95": "HD95 (mm)", "nsd": "NSD (2 mm)"}
    prompts = {"box": "box prompt", "points1": "one click", "points3": "three clicks", "points10": "ten clicks",
               "iterative": "iterative clicks, last", "volume_points1": "3-D volumes, one click per slice",
               "volume_propagation": "3-D volumes, one click propagated, corrected"}  # fmt: skip
    results = []
    for protocol, table in (test_tables or {}).items():
        if protocol not in prompts:  # a baseline (box_fill) is not a result of this model
            continue
        for metric, label in metric_names.items():
            values = [row[metric] for row in table.values() if np.isfinite(row.get(metric, np.nan))]
            if not values:
                continue
            results.append(
                EvalResult(
                    task_type="image-segmentation",
                    dataset_type=dataset,
                    dataset_name=dataset,
                    dataset_split="test",
                    metric_type=metric,
                    metric_name=f"{label} ({prompts.get(protocol, protocol)}, per case)",
                    metric_config=protocol,
                    metric_value=round(float(np.mean(values)), 4),
                )
            )
    return ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="mask-generation",
        base_model=hub_id_of_base(config.base),
        tags=["sam", "medical-imaging", "msa_hf", config.method],
        datasets=[dataset],
        model_name=name,
        eval_results=results or None,
    )


def volume_note(config: TrainConfig, result: dict[str, Any]) -> str:
    """The card's bullet on a depth-branch model: how many slices it sees at once and at what spacing it was
    trained (which inference resamples volumes to); empty for a 2-D model."""
    if not config.use_depth_branch:
        return ""
    spacing = result.get("slice_spacing")
    trained = f", trained on slices {spacing:g} mm apart" if spacing else ""
    resampled = (
        "; `msa-hf predict`, `msa-hf evaluate` and the demo resample volumes at other slice spacings to it"
        if spacing
        else ""
    )
    return f"- 3-D: a depth branch attends across {config.num_slices} slices{trained}{resampled}.\n"


def channel_note(result: dict[str, Any]) -> str:
    """The card's bullet on the channel the model reads of multi-channel scans (`train_result.json`'s
    `channel`, its processor's); empty where its training cases had one channel."""
    channel = result.get("channel")
    if not channel:
        return ""
    return (
        f"- Multi-channel scans (a 4-D NIfTI, or one file per sequence): trained on channel {channel}, which "
        "`msa-hf predict` and the demo read of new cases too (by name where both name their channels; "
        "`--channel` reads another).\n"
    )


def retention_note(config: TrainConfig) -> str:
    """The card's bullet on what the model keeps of its base (docs/retention.md); empty for the paper's
    recipe, which keeps nothing in particular."""
    kept = []
    if config.base_fallback:
        kept.append(
            "answers with its base (kept inside it) wherever its own answer ignores the prompt, so it keeps "
            "segmenting structures it was not adapted to; the image encoder runs twice per image"
        )
    if config.distill_probability > 0:
        where = ", prompted off the adapted structures" if config.distill_outside_labels else ""
        kept.append(f"self-distilled from its base on {config.distill_probability:.0%} of the steps{where}")
    if config.replay_share > 0:
        kept.append(f"{config.replay_share:.0%} of every batch replayed from its base's synthetic pictures")
    return f"- Retention: {'; '.join(kept)}.\n" if kept else ""


def render_model_card(
    config: TrainConfig, result: dict[str, Any], results_table: str, test_tables: dict[str, Any] | None
) -> str:
    """Fill the model card template; every number comes from `result` (train_result.json) and the test
    evaluation, none is typed in. Without `test_tables` the card says the model is not scored yet and
    carries no results metadata (no made-up or NaN metric). Paths of this machine appear by their last
    component only."""
    from msa_hf import __version__
    from msa_hf.hub.cards import read_template

    if config.base == TINY_BASE_NAME:
        base_license = "Apache-2.0, msa_hf's synthetic-pretrained base"
    elif config.base.endswith(".pth"):
        base_license = "the checkpoint's own (SAM: Apache-2.0, Meta; MedSAM: see its repository)"
    else:
        base_license = f"see the card of {public_name(config.base)}"
    dataset = public_name(config.dataset)
    name = f"msa-{dataset}-{config.method}"
    metadata = card_metadata(config, name, dataset, test_tables)
    body = Template(read_template("model_card.md")).substitute(
        license="apache-2.0",
        method=config.method,
        dataset=dataset,
        name=name,
        base=public_name(config.base),
        version=__version__,
        trainable=f"{result['trainable_parameters']:,}",
        total=f"{result['total_parameters']:,}",
        share=f"{result['trainable_parameters'] / max(result['total_parameters'], 1):.2%}",
        steps=result["steps"],
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        box_share=f"{config.box_probability:.0%}",
        iterative_share=f"{config.iterative_probability:.0%}",
        volumes=volume_note(config, result),
        channel=channel_note(result),
        retention=retention_note(config),
        results_table=results_table if test_tables else NOT_EVALUATED,
        config_yaml=_public_config(config).to_yaml(),
        base_license=base_license,
    )
    return f"---\n{metadata.to_yaml()}\n---\n{body}"
