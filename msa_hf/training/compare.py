# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`msa-hf compare`: MSA, LoRA, full fine-tuning and decoder-only on the same data, split, prompts and
budget, in one table (trainable parameters, test Dice per structure, train time, peak memory).

Each method trains in its own process (`train.py`), so peak memory is that method's alone.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from msa_hf.training.config import METHODS, TrainConfig


def _train_in_subprocess(config: TrainConfig) -> dict[str, Any]:
    config_file = Path(config.output_dir) / "compare_config.yaml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(config.to_yaml())
    command = [sys.executable, "-m", "msa_hf.cli", "train", "--config", str(config_file)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"method {config.method} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads((Path(config.output_dir) / "train_result.json").read_text())


def compare_methods(config: TrainConfig, methods: tuple[str, ...] = METHODS) -> tuple[str, dict[str, Any]]:
    """Train and test every method in `methods` with `config`'s settings; returns (Markdown, results)."""
    import numpy as np

    from msa_hf.evaluation.protocols import evaluate_model
    from msa_hf.modeling.modeling_msa import SamAdapterModel
    from msa_hf.training.base_loading import load_base

    results: dict[str, Any] = {}
    for method in methods:
        run_config = dataclasses.replace(
            config, method=method, output_dir=str(Path(config.output_dir) / method), evaluate_test=False
        )
        trained = _train_in_subprocess(run_config)
        model = load_base(str(Path(run_config.output_dir) / "model"), SamAdapterModel)
        report = evaluate_model(model, config.dataset, "test", ("box", "points1"))
        results[method] = {"train": trained, "test": report["tables"]}
    classes = sorted({c for r in results.values() for c in r["test"]["box"]})
    header = ["method", "trainable", "share", *[f"{c} (box)" for c in classes], "mean box", "mean 1-click",
              "train min", "peak MB"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for method, result in results.items():
        train, box, click = result["train"], result["test"]["box"], result["test"]["points1"]
        share = train["trainable_parameters"] / max(train["total_parameters"], 1)
        cells = [
            method,
            f"{train['trainable_parameters'] / 1e6:.3f} M",
            f"{share:.1%}",
            *[f"{box.get(c, {}).get('dice', float('nan')):.3f}" for c in classes],
            f"{np.nanmean([v['dice'] for v in box.values()]):.3f}",
            f"{np.nanmean([v['dice'] for v in click.values()]):.3f}",
            f"{train['seconds'] / 60:.1f}",
            f"{train['peak_memory_mb']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(config.output_dir) / "comparison.md").write_text(table + "\n")
    (Path(config.output_dir) / "comparison.json").write_text(json.dumps(results, indent=2, default=str))
    return table, results


def main(argv: list[str]) -> int:
    """`msa-hf compare [train flags] [--methods msa lora full decoder]`."""
    import argparse

    from msa_hf.training.config import build_train_parser, parse_train_config

    def add_methods(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--methods",
            nargs="+",
            choices=METHODS,
            default=list(METHODS),
            help="methods to compare (default: all)",
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
