# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`msa-hf pretrain-base` and `msa-hf base-gate`: the small base model's training and acceptance gate."""

from __future__ import annotations

import argparse


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register these commands on `msa-hf`'s subcommands."""
    pretrain = commands.add_parser(
        "pretrain-base",
        help="Pretrain the small SamModel base on the synthetic data engine (resumable; accelerate launch works).",
    )
    pretrain.add_output_dir("run folder: checkpoint/, metrics.csv, final/", positional=True)
    pretrain.add_argument("--total-images", type=int, default=300_000)
    pretrain.add_argument("--batch-size", type=int, default=16, help="per process")
    pretrain.add_argument("--learning-rate", type=float, default=1e-3)
    pretrain.add_argument("--seed", type=int, default=0)
    pretrain.add_argument("--eval-every", type=int, default=1000, help="steps between held-out evaluations")
    pretrain.add_argument("--num-workers", type=int, default=1, help="data-engine worker processes")
    pretrain.add_argument(
        "--max-minutes", type=float, default=None, help="stop (after a checkpoint) after this long"
    )
    pretrain.add_argument(
        "--stop-at-step",
        type=int,
        default=None,
        help="stop (after a checkpoint) at this step; replays a run resumed with other settings (stages.jsonl)",
    )
    pretrain.set_defaults(run=_pretrain_base)

    gate = commands.add_parser("base-gate", help="Run the base model's acceptance gate (synthetic + MRI).")
    gate.add_argument("base", help="folder of the pretrained base (e.g. runs/base/final)")
    gate.add_argument("--dataset", default="data/mni152-tissue", help="prepared MRI dataset (make data)")
    gate.add_argument("--steps", type=int, default=500, help="MSA adaptation steps for both bases")
    gate.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="adaptation seeds (MRI Dice is their mean)"
    )
    gate.add_output_dir("where gate.json goes (default: the base folder)", required=False)
    gate.rename("--output", "--output-dir")
    gate.set_defaults(run=_base_gate)


def _pretrain_base(args: argparse.Namespace) -> int:
    from msa_hf.base_model.pretraining import PretrainingConfig, pretrain_base

    config = PretrainingConfig(
        total_images=args.total_images,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        eval_every=args.eval_every,
        num_workers=args.num_workers,
    )
    result = pretrain_base(args.output, config, max_minutes=args.max_minutes, stop_at_step=args.stop_at_step)
    print(f"{'exported' if result.name == 'final' else 'checkpointed (run again to resume)'}: {result}")
    return 0


def _base_gate(args: argparse.Namespace) -> int:
    from msa_hf.base_model.gate import run_gate
    from msa_hf.training.prompted import AdapterTrainingConfig

    report = run_gate(
        args.base,
        args.dataset,
        args.output or args.base,
        AdapterTrainingConfig(steps=args.steps),
        tuple(args.seeds),
    )
    synthetic, mri = report["synthetic"], report["mri"]
    print("| check | value | gate |\n|---|---:|---|")
    print(f"| synthetic box Dice | {synthetic['box']:.3f} | >= 0.85 |")
    print(f"| synthetic 1-click Dice | {synthetic['points1']:.3f} | >= 0.60 |")
    print(
        f"| synthetic 3-click / iterative Dice | {synthetic['points3']:.3f} / {synthetic['iterative']:.3f} | |"
    )
    print(f"| synthetic box-fill baseline | {synthetic['box_fill']:.3f} | |")
    seeds, classes = len(mri["seeds"]), mri["classes"]
    print(f"| MRI 1-click Dice, MSA per tissue on this base (mean of {len(classes)} tissues x {seeds} seeds) | "
          f"{mri['pretrained']['points1']:.3f} | >= random init + 0.05 |")  # fmt: skip
    print(f"| MRI 1-click Dice, MSA per tissue on random init | {mri['random_init']['points1']:.3f} | |")
    for name, scores in classes.items():
        print(f"| {name}: this base / random init / box-fill | {scores['pretrained']['points1']:.3f} / "
              f"{scores['random_init']['points1']:.3f} / {scores['box_fill']:.3f} | |")  # fmt: skip
    print(f"| MRI box-fill baseline | {mri['box_fill']:.3f} | below MSA on this base (1 click) |")
    print(f"| MRI box Dice (reported): this base / random init | {mri['pretrained']['box']:.3f} / "
          f"{mri['random_init']['box']:.3f} | |")  # fmt: skip
    print(f"gate {'PASSED' if report['passed'] else 'FAILED'}: {report['verdict']}")
    return 0 if report["passed"] else 1
