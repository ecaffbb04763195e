# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The acceptance gate of the small base model (issue #4): the weights ship only if it passes.

1. Synthetic held-out Dice: >= 0.85 with a box, >= 0.60 with one click, above "fill the box".
2. On the embedded MRI dataset (MNI152 tissue), after the same short MSA adaptation budget: MSA on the
   pretrained base clearly above MSA on a random-initialised model of the same shape, and above box-fill.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .base_pretraining import evaluate_prompted_segmentation, held_out_set, initialise_from_scratch
from .configuration_msa import SamAdapterConfig
from .modeling_msa import SamAdapterModel
from .training import AdapterTrainingConfig, evaluate_segmentation, train_adapters

SYNTHETIC_GATE = {"box": 0.85, "click1": 0.60}
MRI_MARGIN = 0.05  # "clearly above": at least 5 Dice points


def synthetic_gate(base: str | Path, samples: int = 300) -> dict[str, float]:
    """Held-out synthetic Dice of the base by prompt type (and the box-fill baseline)."""
    from transformers import SamModel

    model = SamModel.from_pretrained(base)
    images, masks = held_out_set(samples)
    return evaluate_prompted_segmentation(model, images, masks)


def _mri_tasks(dataset_dir: str | Path, image_size: int, split: str, train: bool) -> Any:
    from .data import (
        PromptSampling,
        SamSegmentationTransform,
        load_prepared,
        read_class_names,
        to_binary_tasks,
    )

    slices = load_prepared(dataset_dir)[split]
    tasks = to_binary_tasks(slices, read_class_names(dataset_dir), image_size=image_size)
    # training: uniform clicks and jittered boxes with augmentation; testing: the most interior click and
    # the tight box, the same for every run
    prompts = PromptSampling(
        num_positive=1,
        click_strategy="uniform" if train else "interior",
        use_box=True,
        box_jitter=0.1 if train else 0.0,
    )
    tasks.set_transform(
        SamSegmentationTransform(
            image_size=image_size, prompts=prompts, augment=train, deterministic=not train
        )
    )
    return tasks


def mri_gate(
    base: str | Path, dataset_dir: str | Path, training: AdapterTrainingConfig | None = None
) -> dict[str, Any]:
    """Adapt MSA on the pretrained base and on a random-init twin with the same budget; score both.

    Returns `{"pretrained": {...}, "random_init": {...}, "box_fill": float}` with box and one-click Dice on
    the test split.
    """
    training = training or AdapterTrainingConfig()
    pretrained = SamAdapterModel.from_pretrained(base)
    image_size = pretrained.config.vision_config.image_size
    train_tasks = _mri_tasks(dataset_dir, image_size, "train", train=True)
    test_tasks = _mri_tasks(dataset_dir, image_size, "test", train=False)
    random_init = SamAdapterModel(SamAdapterConfig(**pretrained.config.to_dict()))
    initialise_from_scratch(random_init, seed=training.seed)
    results: dict[str, Any] = {"training": asdict(training)}
    for name, model in (("pretrained", pretrained), ("random_init", random_init)):
        torch.manual_seed(training.seed)
        model.mark_only_adapters_as_trainable()
        history = train_adapters(model, train_tasks, training)
        box = evaluate_segmentation(model, test_tasks, "box")
        click = evaluate_segmentation(model, test_tasks, "click1")
        results[name] = {
            "box": box["dice"],
            "click1": click["dice"],
            "per_class_box": {k: v[0] for k, v in box["per_class"].items()},
            "final_loss": sum(h["loss"] for h in history[-20:]) / min(len(history), 20),
        }
        results["box_fill"] = box["box_fill"]
    return results


def gate_verdict(synthetic: dict[str, float], mri: dict[str, Any]) -> dict[str, bool]:
    """Which parts of the gate pass."""
    return {
        "synthetic_box": synthetic["box"] >= SYNTHETIC_GATE["box"]
        and synthetic["box"] > synthetic["box_fill"],
        "synthetic_click1": synthetic["click1"] >= SYNTHETIC_GATE["click1"],
        "mri_above_random_init": mri["pretrained"]["box"] >= mri["random_init"]["box"] + MRI_MARGIN,
        "mri_above_box_fill": mri["pretrained"]["box"] > mri["box_fill"],
    }


def run_gate(
    base: str | Path,
    dataset_dir: str | Path,
    output: str | Path,
    training: AdapterTrainingConfig | None = None,
) -> dict[str, Any]:
    """Both gate parts; writes `gate.json` to `output` and returns it."""
    synthetic = synthetic_gate(base)
    mri = mri_gate(base, dataset_dir, training)
    report = {"synthetic": synthetic, "mri": mri, "verdict": gate_verdict(synthetic, mri)}
    report["passed"] = all(report["verdict"].values())
    Path(output).mkdir(parents=True, exist_ok=True)
    (Path(output) / "gate.json").write_text(json.dumps(report, indent=2))
    return report
