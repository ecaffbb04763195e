# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The `msa-hf` command line: one module per group of commands, each registering its own subcommands.
Arguments are parsed in `main()` only, never at import.

`train`, `compare` and `pretrain-encoder` take their flags from their own configs (train.py's `TrainConfig`,
pretrain.py's), so `main` hands them their arguments untouched.
"""

from __future__ import annotations

import argparse
import sys

from msa_hf.command_line import CommandParser
from msa_hf.training.base_loading import BaseLoadError


def build_parser() -> argparse.ArgumentParser:
    """The `msa-hf` argument parser, with every subcommand."""
    from msa_hf import __version__
    from msa_hf.cli import base_commands, data_commands, hub_commands, inference_commands, model_commands

    parser = CommandParser(prog="msa-hf", description="Medical SAM Adapter for Hugging Face.")
    parser.add_argument("--version", action="version", version=f"msa-hf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (model_commands, data_commands, base_commands, inference_commands, hub_commands):
        group.add_commands(commands)
    commands.add_parser("compare", help="MSA vs LoRA vs full vs decoder-only on the same data and budget.")
    commands.add_parser(
        "train", help="Train (same as `accelerate launch train.py`); see `msa-hf train --help`."
    )
    commands.add_parser(
        "pretrain-encoder",
        help="Self-supervised encoder pretraining (MAE, e-Mix, ShED); same as `accelerate launch pretrain.py`.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `msa-hf` with `argv` (default: the process's arguments); returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:  # train.py's own flags (from its TrainConfig); see `msa-hf train --help`
        from msa_hf.training.job import main as train_main

        return train_main(argv[1:], prog="msa-hf train")
    if argv[:1] == ["pretrain-encoder"]:  # pretrain.py's flags; see `msa-hf pretrain-encoder --help`
        from msa_hf.encoder_pretraining.command import main as pretrain_main

        return pretrain_main(argv[1:], prog="msa-hf pretrain-encoder")
    if argv[:1] == ["compare"]:  # train.py's flags plus --methods
        from msa_hf.training.compare import main as compare_main

        try:
            return compare_main(argv[1:])
        except (ValueError, FileNotFoundError, BaseLoadError, RuntimeError) as error:
            print(f"msa-hf compare: {error}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, BaseLoadError) as error:
        print(f"msa-hf {args.command}: {error}", file=sys.stderr)
        return 2
