# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""After training: the test split scored for the trained model next to the un-adapted base (zero-shot),
written to `evaluation/` and `evaluation-zero-shot/`, and the model card built from those tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from msa_hf.processing.processor import MsaProcessor
from msa_hf.training.config import TrainConfig


def _trained_and_zero_shot(config: TrainConfig, output_dir: Path) -> tuple[Any, Any]:
    """The saved model of the run, and the un-adapted base as a `SamAdapterModel` (adapters at their zero
    init, no depth branch: exactly the base)."""
    from msa_hf.modeling.modeling_msa import SamAdapterModel
    from msa_hf.training.base_loading import load_base

    if config.method == "msa":
        trained = SamAdapterModel.from_pretrained(output_dir / "model")
    else:
        from transformers import SamModel

        trained = SamModel.from_pretrained(output_dir / "model")
    return trained, load_base(config.base, SamAdapterModel)


def _write_comparison_and_card(
    config: TrainConfig, output_dir: Path, table: str, test_tables: dict[str, Any]
) -> None:
    """`evaluation/comparison.md` (the Markdown `table`) and the model card from the trained model's
    `test_tables` and the run's `train_result.json`."""
    from msa_hf.hub.model_card import render_model_card

    (output_dir / "evaluation").mkdir(parents=True, exist_ok=True)
    (output_dir / "evaluation" / "comparison.md").write_text(table + "\n")
    result = json.loads((output_dir / "train_result.json").read_text())
    card = render_model_card(config, result, table, test_tables)
    (output_dir / "model" / "README.md").write_text(card, encoding="utf-8")


def held_out_classes(config: TrainConfig) -> str | None:
    """The dataset's structures a run with `config.classes` did not adapt to (comma-separated), or None."""
    if not config.classes:
        return None
    from msa_hf.data import read_class_names, select_class_names

    names = read_class_names(config.dataset)
    adapted = select_class_names(names, config.classes)
    rest = [name for value, name in sorted(names.items()) if value not in adapted]
    return ",".join(rest) or None


def comparison_table(reports: dict[str, dict[str, Any]], protocols: tuple[str, ...]) -> str:
    """Columns per protocol, zero-shot then trained (`reports` in that order), with the box-fill baseline
    beside the box columns."""
    from msa_hf.evaluation.protocols import markdown_table

    columns: dict[str, Any] = {}
    for protocol in protocols:
        for name, report in reports.items():
            columns[f"{name} {protocol}"] = report["tables"][protocol]
        if protocol == "box":
            columns["box-fill"] = next(iter(reports.values()))["tables"]["box_fill"]
    return markdown_table(columns)


SYNTHETIC_HELD_OUT_SAMPLES = 100


def synthetic_held_out_comparison(models: dict[str, Any], output_dir: Path) -> str:
    """The base's own task before and after adaptation: Dice by protocol on the data engine's held-out pictures
    (`held_out_set`, a stream no training run draws from; shown at the model's input size) for each of `models`
    (name -> model, zero-shot first), next to the box-fill baseline. Writes `synthetic_held_out.json` and
    returns a Markdown table, one row per model."""
    from msa_hf.base_model.held_out import evaluate_prompted_segmentation, held_out_set, samples_at_size

    images, masks = held_out_set(SYNTHETIC_HELD_OUT_SAMPLES)
    size = next(iter(models.values())).config.vision_config.image_size
    images, masks = samples_at_size(images, masks, size)
    scores = {name: evaluate_prompted_segmentation(model, images, masks) for name, model in models.items()}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "synthetic_held_out.json").write_text(json.dumps(scores, indent=2))
    columns = ("box", "box_fill", "points1", "iterative")
    lines = [
        "| model | " + " | ".join(c.replace("_", "-") for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, score in scores.items():
        lines.append(f"| {name} | " + " | ".join(f"{score[c]:.3f}" for c in columns) + " |")
    return "\n".join(lines)


def test_comparison(config: TrainConfig, output_dir: Path) -> str:
    """Test-split Dice per structure of the trained model next to the un-adapted base (zero-shot) and the
    box-fill baseline; with `config.classes`, also the structures the run did not adapt to (held out), before
    and after. Writes `evaluation/` (tables, per-case CSVs, overlays, Dice-vs-clicks; held-out structures in
    `evaluation-held-out/`; the base's synthetic held-out pictures in `evaluation/synthetic_held_out.*`) and the model card, and returns the Markdown tables."""
    from msa_hf.evaluation.protocols import evaluate_model

    trained, zero_shot = _trained_and_zero_shot(config, output_dir)
    window = MsaProcessor.from_pretrained(output_dir / "model", trained).window  # as trained
    protocols = ("box", "points1", "iterative")
    models = (("zero-shot", zero_shot, "evaluation-zero-shot"), (config.method, trained, "evaluation"))

    def score(classes: str | None, suffix: str) -> dict[str, dict[str, Any]]:
        return {
            name: evaluate_model(
                model, config.dataset, "test", protocols, output_dir / f"{folder}{suffix}", classes=classes,
                window=window,
            )
            for name, model, folder in models
        }  # fmt: skip

    reports = score(config.classes, "")
    table = comparison_table(reports, protocols)
    _write_comparison_and_card(config, output_dir, table, reports[config.method]["tables"])
    text = f"Test-split Dice per structure (per case, slice-prompted; base: {config.base}):\n\n{table}\n"
    held_out = held_out_classes(config)
    if held_out:
        held_table = comparison_table(score(held_out, "-held-out"), protocols)
        (output_dir / "evaluation" / "held_out.md").write_text(held_table + "\n")
        text += f"\nStructures not adapted to (held out), before and after adaptation:\n\n{held_table}\n"
    synthetic = synthetic_held_out_comparison(
        {name: model for name, model, _ in models}, output_dir / "evaluation"
    )
    (output_dir / "evaluation" / "synthetic_held_out.md").write_text(synthetic + "\n")
    text += (
        f"\nThe base's own task (held-out pictures of its synthetic data engine, {SYNTHETIC_HELD_OUT_SAMPLES} "
        f"targets), before and after adaptation:\n\n{synthetic}\n"
    )
    return text + f"\nTables, per-case CSVs, overlays and Dice-vs-clicks: {output_dir / 'evaluation'}"


def volume_test_comparison(config: TrainConfig, output_dir: Path) -> str:
    """3-D (depth branch): test-split Dice per structure on whole volumes of the trained model next to the
    un-adapted base, by both whole-volume protocols: one click per slice showing the structure (windows of D
    slices, reassembled; the base sees the same windows slice by slice), and one click propagated through
    the volume with two corrections (the last round's Dice). Writes `evaluation/` (tables, per-case CSVs) and
    the model card, and returns the Markdown table."""
    from msa_hf.evaluation.decoding import VOLUME_PROTOCOLS
    from msa_hf.evaluation.protocols import evaluate_volumes

    trained, zero_shot = _trained_and_zero_shot(config, output_dir)
    processor = MsaProcessor.from_pretrained(output_dir / "model", trained)
    reports = {
        # both on the trained model's slice grid, as msa-hf predict serves it: the window and spacing it was
        # trained at
        name: evaluate_volumes(
            model, config.dataset, "test", depth=config.num_slices, classes=config.classes,
            output_dir=output_dir / folder, window=processor.window, slice_spacing=processor.slice_spacing,
        )
        for name, model, folder in (
            ("zero-shot", zero_shot, "evaluation-zero-shot"),
            (config.method, trained, "evaluation"),
        )
    }  # fmt: skip
    table = comparison_table(reports, VOLUME_PROTOCOLS)
    _write_comparison_and_card(config, output_dir, table, reports[config.method]["tables"])
    evaluation = output_dir / "evaluation"
    curves = "; ".join(
        f"{name} " + ", ".join(f"{d:.3f}" for d in report["volume_propagation"]["dice_per_click"])
        for name, report in reports.items()
    )
    return (
        f"Test-split Dice per structure on whole volumes (per case; volume_points1: one click per slice, windows "
        f"of {config.num_slices} slices; volume_propagation: one click propagated, two corrections; base: "
        f"{config.base}):\n\n{table}\n\nvolume_propagation, Dice after the first click and each correction: "
        f"{curves}\n\nTables and per-case CSVs: {evaluation}"
    )
