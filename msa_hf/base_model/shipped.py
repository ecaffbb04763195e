# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The shipped small base model: where it lives, and how a gated run becomes it.

`TINY_BASE` is a folder inside the package (`config.json`, `model.safetensors`, `processor_config.json`,
a model card), so `SamAdapterModel.from_pretrained(msa_hf.TINY_BASE)` works offline. `export_base` writes
that folder from a pretraining run, and refuses when the run did not pass the acceptance gate.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from string import Template
from typing import Any

TINY_BASE = str(Path(__file__).resolve().parent / "pretrained" / "sam-tiny-synthetic")


def _curve_rows(metrics_csv: Path) -> str:
    with metrics_csv.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("box")]
    keep = rows if len(rows) <= 14 else rows[:: max(1, len(rows) // 12)] + rows[-1:]
    return "\n".join(
        f"| {int(r['images']):,} | {float(r['box']):.3f} | {float(r['points1']):.3f} | {float(r['points3']):.3f} | "
        f"{float(r['iterative']):.3f} | {float(r['box_fill']):.3f} |"
        for r in keep
    )


# `PretrainingConfig` fields that `msa-hf pretrain-base` takes as flags (`--total-images` for total_images)
_CLI_FIELDS = ("total_images", "batch_size", "learning_rate", "seed", "eval_every", "num_workers")


def pretraining_commands(run_dir: str | Path, output: str = "runs/base") -> list[str]:
    """The `msa-hf pretrain-base` commands that replay a run: one per stage (`stages.jsonl`), each stopping
    where the next one resumed with other settings; a single command for a run without stages."""
    from dataclasses import asdict

    from msa_hf.base_model.pretraining import PretrainingConfig, read_stages

    defaults = asdict(PretrainingConfig())
    stages = read_stages(run_dir) or [
        {"start_step": 0, "config": json.loads((Path(run_dir) / "pretraining_config.json").read_text())}
    ]
    commands = []
    for index, stage in enumerate(stages):
        config = stage["config"]
        flags = [
            f"--{name.replace('_', '-')} {config[name]}"
            for name in _CLI_FIELDS
            if name == "total_images" or config.get(name, defaults[name]) != defaults[name]
        ]
        if index + 1 < len(stages):
            flags.append(f"--stop-at-step {stages[index + 1]['start_step']}")
        commands.append(f"msa-hf pretrain-base --output-dir {output} " + " ".join(flags))
    return commands


def _class_rows(mri: dict[str, Any]) -> str:
    return (
        "\n".join(
            f"| {name.replace('_', ' ')} | {scores['pretrained']['points1']:.3f} | {scores['random_init']['points1']:.3f} | "
            f"{scores['box_fill']:.3f} |"
            for name, scores in (mri.get("classes") or {}).items()
        )
        or "| (not measured) | | | |"
    )


def export_base(
    run_dir: str | Path, destination: str | Path = TINY_BASE, note: str = "", gate_history: str = ""
) -> Path:
    """Copy a gated run's `final/` model into `destination` with its processor and model card (`note`: a
    sentence about the run's history, added to the recipe; `gate_history`: how its gate came to be what it
    is, if it changed, added under the gate's table).

    Raises:
        ValueError: the run has no `final/gate.json`, or its gate did not pass.
    """
    from transformers import SamModel

    from msa_hf.processing.processor import MsaProcessor

    run_dir, destination = Path(run_dir), Path(destination)
    final = run_dir / "final"
    gate_file = final / "gate.json"
    if not gate_file.is_file():
        raise ValueError(f"{gate_file} not found: run `msa-hf base-gate {final}` first.")
    gate = json.loads(gate_file.read_text())
    if not gate.get("passed"):
        raise ValueError(
            f"the base in {final} failed its acceptance gate ({gate.get('verdict')}); not shipping it."
        )
    if destination.exists():
        shutil.rmtree(destination)
    model = SamModel.from_pretrained(final)
    model.save_pretrained(destination)
    MsaProcessor.for_model(model).save_pretrained(destination)
    (destination / "gate.json").write_text(json.dumps(gate, indent=2))
    config = json.loads((run_dir / "pretraining_config.json").read_text())
    synthetic, mri = gate["synthetic"], gate["mri"]
    recipe = (
        f"{config['total_images']:,} synthetic images, batch {config['batch_size']}, AdamW lr "
        f"{config['learning_rate']} (warmup {config['warmup_steps']} steps, flat, cosine over the last "
        f"{config['decay_fraction']:.0%}), weight decay {config['weight_decay']}; boxes only for the first "
        f"{config['box_only_fraction']:.0%} of steps, then {config['box_probability']:.0%} boxes / clicks (1-3); "
        f"{config['iterative_probability']:.0%} of batches add an iterative round (error click + previous logits "
        "as the mask prompt); loss focal:Dice 20:1 on the best of three masks for single clicks, plus MSE on "
        "the IoU head. From-scratch fixes: trunc-normal(0.02) vision init, N(0, 1) positional matrix."
    )
    commands = pretraining_commands(run_dir)
    if len(commands) > 1:
        recipe += (
            f" The run was trained in {len(commands)} stages, each resuming the previous checkpoint with a new "
            "`--total-images` (which moves the boxes-only phase and the cosine decay, both fractions of the "
            "total): the schedule above is the last stage's, and the commands under Reproduce replay all of "
            "them."
        )
    if note:
        recipe += " " + note
    from msa_hf.hub.cards import read_template

    text = Template(read_template("base_model_card.md")).substitute(
        parameters=f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M",
        synthetic_box=f"{synthetic['box']:.3f}",
        synthetic_points1=f"{synthetic['points1']:.3f}",
        synthetic_box_fill=f"{synthetic['box_fill']:.3f}",
        mri_pretrained=f"{mri['pretrained']['points1']:.3f}",
        mri_random=f"{mri['random_init']['points1']:.3f}",
        mri_seeds=len(mri.get("seeds", [0])),
        mri_seed_list=" ".join(str(seed) for seed in mri.get("seeds", [0])),
        mri_box_pretrained=f"{mri['pretrained']['box']:.3f}",
        mri_box_random=f"{mri['random_init']['box']:.3f}",
        mri_class_rows=_class_rows(mri),
        gate_history=gate_history,
        mri_box_fill=f"{mri['box_fill']:.3f}",
        mri_steps=mri["training"]["steps"],
        pretrain_commands="\n".join(commands),
        recipe=recipe,
        curve_rows=_curve_rows(run_dir / "metrics.csv"),
    )
    (destination / "README.md").write_text(text, encoding="utf-8")
    return destination
