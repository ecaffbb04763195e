# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`msa-hf compare`: MSA with and without retention, LoRA, full fine-tuning and decoder-only on the same data,
split, prompts and budget, in one table (trainable parameters, test Dice per protocol on the adapted
structures and on the held-out ones, train time, peak memory), next to the un-adapted base.

Each variant trains in its own process (`train.py`), so peak memory is that variant's alone.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from msa_hf.training.config import METHODS, TrainConfig

# variant -> (method, TrainConfig fields it sets); retention options at the settings `make retention` measures
VARIANTS: dict[str, tuple[str, dict[str, float | bool]]] = {
    "msa": ("msa", {}),
    "msa+distill": ("msa", {"distill_probability": 0.5}),
    "msa+replay": ("msa", {"replay_share": 0.25}),
    "msa+fallback": ("msa", {"base_fallback": True}),
    **{method: (method, {}) for method in METHODS if method != "msa"},
}
PROTOCOLS = ("box", "points1", "iterative")
ZERO_SHOT = "zero-shot base"


def _train_in_subprocess(config: TrainConfig) -> dict[str, Any]:
    config_file = Path(config.output_dir) / "compare_config.yaml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(config.to_yaml())
    command = [sys.executable, "-m", "msa_hf.cli", "train", "--config", str(config_file)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"method {config.method} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads((Path(config.output_dir) / "train_result.json").read_text())


def _scores(model: Any, config: TrainConfig, held_out: str | None) -> dict[str, Any]:
    """Test tables (protocol -> structure -> metrics) on the adapted structures and, with `held_out`, on those."""
    from msa_hf.evaluation.protocols import evaluate_model

    scores = {
        "adapted": evaluate_model(model, config.dataset, "test", PROTOCOLS, classes=config.classes)["tables"]
    }
    if held_out:
        scores["held-out"] = evaluate_model(model, config.dataset, "test", PROTOCOLS, classes=held_out)[
            "tables"
        ]
    return scores


def _mean(tables: dict[str, Any], protocol: str) -> str:
    import numpy as np

    return f"{np.nanmean([row['dice'] for row in tables[protocol].values()]):.3f}"


def comparison_markdown(results: dict[str, Any]) -> str:
    """One row per variant (the zero-shot base first): trainable parameters, mean test Dice per protocol on the
    adapted and the held-out structures, train minutes and peak memory."""
    groups = [group for group in ("adapted", "held-out") if group in next(iter(results.values()))["test"]]
    names = {"box": "box", "points1": "1 click", "iterative": "iterative"}
    header = ["variant", "trainable", "share", *[f"{g} {names[p]}" for g in groups for p in PROTOCOLS],
              "train min", "peak MB"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for variant, result in results.items():
        train = result["train"]
        if train is None:  # the base itself: nothing trained
            trained = ["0", "0%"]
            cost = ["–", "–"]
        else:
            share = train["trainable_parameters"] / max(train["total_parameters"], 1)
            trained = [f"{train['trainable_parameters'] / 1e6:.3f} M", f"{share:.1%}"]
            cost = [f"{train['seconds'] / 60:.1f}", f"{train['peak_memory_mb']:.0f}"]
        dice = [_mean(result["test"][g], p) for g in groups for p in PROTOCOLS]
        lines.append("| " + " | ".join([variant, *trained, *dice, *cost]) + " |")
    return "\n".join(lines)


def compare_methods(
    config: TrainConfig, variants: tuple[str, ...] = tuple(VARIANTS)
) -> tuple[str, dict[str, Any]]:
    """Train and test every variant in `variants` (names of `VARIANTS`) with `config`'s settings, and score the
    un-adapted base on the same tables; returns (Markdown, results). With `config.classes`, the structures
    not adapted to are scored too (held out)."""
    from msa_hf.modeling.modeling_msa import SamAdapterModel
    from msa_hf.training.base_loading import load_base
    from msa_hf.training.test_report import held_out_classes

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}.")
    held_out = held_out_classes(config)
    results: dict[str, Any] = {ZERO_SHOT: {"train": None, "test": _scores(load_base(config.base, SamAdapterModel),
                                                                            config, held_out)}}  # fmt: skip
    for variant in variants:
        method, fields = VARIANTS[variant]
        run_config = dataclasses.replace(
            config,
            method=method,
            output_dir=str(Path(config.output_dir) / variant),
            evaluate_test=False,
            **fields,
        )
        trained = _train_in_subprocess(run_config)
        model = load_base(str(Path(run_config.output_dir) / "model"), SamAdapterModel)
        results[variant] = {"train": trained, "test": _scores(model, config, held_out)}
    table = comparison_markdown(results)
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(config.output_dir) / "comparison.md").write_text(table + "\n")
    (Path(config.output_dir) / "comparison.json").write_text(json.dumps(results, indent=2, default=str))
    return table, results


def main(argv: list[str]) -> int:
    """`msa-hf compare [train flags] [--methods msa msa+distill msa+replay msa+fallback lora full decoder]`."""
    import argparse

    from msa_hf.training.config import build_train_parser, parse_train_config

    def add_methods(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--methods",
            nargs="+",
            choices=list(VARIANTS),
            default=list(VARIANTS),
            help="variants to compare: the methods, and MSA with each retention option (default: all)",
        )

    parser = argparse.ArgumentParser(add_help=False)
    add_methods(parser)
    known, rest = parser.parse_known_args(argv)
    if {"-h", "--help"} & set(rest):  # train.py's flags and --methods, under this command's name
        described = build_train_parser(
            "msa-hf compare", "Train each method on the same data, split, prompts and budget; one test table."
        )
        add_methods(described)
        described.print_help()
        return 0
    config = parse_train_config(rest)
    table, _ = compare_methods(config, tuple(known.methods))
    print(f"Same data, split, prompts and budget ({config.steps} steps) on base {config.base}; test split:\n")
    print(table)
    return 0
