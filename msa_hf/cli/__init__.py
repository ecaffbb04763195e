# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The `msa-hf` command line: one module per group of commands, each registering its own subcommands.
Arguments are parsed in `main()` only, never at import.

`train`, `compare` and `pretrain-encoder` take their flags from their own configs (train.py's `TrainConfig`,
pretrain.py's), so `main` hands them their arguments untouched.
"""

from __future__ import annotations

import argparse
import sys

from msa_hf.command_line import DEBUG_FLAG, DEBUG_HELP, CommandParser, error_boundary


def build_parser() -> argparse.ArgumentParser:
    """The `msa-hf` argument parser, with every subcommand."""
    from msa_hf import __version__
    from msa_hf.cli import base_commands, data_commands, hub_commands, inference_commands, model_commands

    parser = CommandParser(prog="msa-hf", description="Medical SAM Adapter for Hugging Face.")
    parser.add_argument("--version", action="version", version=f"msa-hf {__version__}")
    parser.add_argument(DEBUG_FLAG, action="store_true", help=DEBUG_HELP)
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
    """Run `msa-hf` with `argv` (default: the process's arguments); returns the exit status. Every error is
    one line on stderr (the full traceback with `--debug`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), "")
    return error_boundary(f"msa-hf {command}".strip(), _run, argv)


def _run(argv: list[str]) -> int:
    if argv[:1] == ["train"]:  # train.py's own flags (from its TrainConfig); see `msa-hf train --help`
        from msa_hf.training.job import run_main as train_main

        return train_main(argv[1:], prog="msa-hf train")
    if argv[:1] == ["pretrain-encoder"]:  # pretrain.py's flags; see `msa-hf pretrain-encoder --help`
        from msa_hf.encoder_pretraining.command import run_main as pretrain_main

        return pretrain_main(argv[1:], prog="msa-hf pretrain-encoder")
    if argv[:1] == ["compare"]:  # train.py's flags plus --methods
        from msa_hf.training.compare import main as compare_main

        return compare_main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.run(args)
