# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`accelerate launch pretrain.py SOURCE OUTPUT [options]` (also `msa-hf pretrain-encoder`)."""

from __future__ import annotations

import argparse
import sys

from msa_hf.encoder_pretraining.config import OBJECTIVES, EncoderPretrainingConfig


def _objective(text: str) -> tuple[str, float]:
    name, _, weight = text.partition("=")
    if name not in OBJECTIVES:
        raise argparse.ArgumentTypeError(
            f"{name!r}: choose one of {list(OBJECTIVES)}, e.g. mae=1 or shed=0.5"
        )
    try:
        return name, float(weight or 1.0)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: the weight after '=' must be a number") from error


def build_parser(prog: str = "pretrain.py") -> argparse.ArgumentParser:
    from msa_hf.command_line import CommandParser

    parser = CommandParser(
        prog=prog,
        description="Self-supervised pretraining of SAM's image encoder (MAE, e-Mix, ShED).",
    )
    parser.add_argument(
        "source", help="prepared dataset, or a folder of PNG/JPEG/TIFF/DICOM images or NIfTI volumes"
    )
    parser.add_output_dir("checkpoint/, metrics.csv, final/ (a SamAdapterModel)", positional=True)
    parser.add_argument("--base", default="tiny", help="base SAM: 'tiny', a folder, a Hub id or a .pth")
    from msa_hf.command_line import DEBUG_FLAG, DEBUG_HELP

    parser.add_argument(DEBUG_FLAG, action="store_true", help=DEBUG_HELP)
    parser.add_argument("--objective", type=_objective, action="append", default=None, metavar="NAME=WEIGHT",
                        help="mae, emix or shed with its loss weight; repeat to combine (default mae=1)")  # fmt: skip
    parser.add_argument("--trainable", choices=["adapters", "encoder"], default="adapters")
    parser.add_argument(
        "--use-depth-branch", action="store_true", help="build the MSA model with its depth branch"
    )
    parser.add_argument("--streaming", action="store_true",
                        help="read a prepared dataset as a shuffled stream (large sets), split between processes")  # fmt: skip
    parser.add_argument(
        "--shuffle-buffer", type=int, default=1000, help="--streaming: rows in the shuffle window"
    )
    defaults = EncoderPretrainingConfig()
    for name in ("mask_ratio", "shuffle_fraction", "mix_temperature", "learning_rate", "weight_decay"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    for name in ("steps", "batch_size", "seed", "checkpoint_every", "log_every", "projection_dim"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    return parser


def main(argv: list[str] | None = None, prog: str = "pretrain.py") -> int:
    """`pretrain.py` / `msa-hf pretrain-encoder`; every error is one line on stderr (traceback: `--debug`)."""
    from msa_hf.command_line import error_boundary

    return error_boundary(prog, lambda rest: run_main(rest, prog), sys.argv[1:] if argv is None else argv)


def run_main(argv: list[str], prog: str = "pretrain.py") -> int:
    """`main` without its error boundary (`msa-hf` puts its own around it)."""
    args = build_parser(prog).parse_args(argv)
    from msa_hf.encoder_pretraining.images import StreamedImages, UnlabelledImages
    from msa_hf.encoder_pretraining.trainer import pretrain_encoder
    from msa_hf.modeling.modeling_msa import SamAdapterModel
    from msa_hf.training.base_loading import BaseLoadError, load_base

    try:
        config = EncoderPretrainingConfig(
            objectives=dict(args.objective or [("mae", 1.0)]), trainable=args.trainable,
            **{k: getattr(args, k) for k in ("mask_ratio", "shuffle_fraction", "mix_temperature", "projection_dim",
                                             "steps", "batch_size", "learning_rate", "weight_decay", "seed",
                                             "checkpoint_every", "log_every")},
        )  # fmt: skip
        model = load_base(args.base, SamAdapterModel, use_depth_branch=args.use_depth_branch)
        size = model.config.vision_config.image_size
        if args.streaming:
            from accelerate import PartialState

            state = PartialState()
            images = StreamedImages(
                args.source, size, args.seed, args.shuffle_buffer, state.process_index, state.num_processes
            )
        else:
            images = UnlabelledImages(args.source, size)
    except (ValueError, BaseLoadError) as error:
        raise ValueError(str(error)) from error  # named by the entry point's error boundary
    final = pretrain_encoder(model, images, config, args.output)
    from accelerate import PartialState

    if PartialState().is_main_process:  # once, not once per process under accelerate launch
        print(
            f"pretrained encoder: {final} (load with SamAdapterModel.from_pretrained; train.py --base {final})"
        )
    return 0
