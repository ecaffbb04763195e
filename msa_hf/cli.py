# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`msa-hf` command line. Arguments are parsed in `main()` only, never at import."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msa_hf.command_line import CommandParser, space_or_comma_list
from msa_hf.training.base_loading import BaseLoadError


def _convert(args: argparse.Namespace) -> int:
    from msa_hf.modeling.convert import convert_segment_anything_checkpoint

    output = Path(args.output)
    if output.exists() and any(output.iterdir()) and not args.overwrite:
        print(
            f"msa-hf convert: {output} exists and is not empty; pass --overwrite or another folder.",
            file=sys.stderr,
        )
        return 2
    model = convert_segment_anything_checkpoint(
        args.checkpoint,
        decoder_attention_heads=args.decoder_attention_heads,
        use_depth_branch=args.depth_branch,
        num_slices=args.num_slices,
        decoder_training=args.decoder_training,
    )
    model.save_pretrained(output)
    vision = model.config.vision_config
    print(
        f"Converted {args.checkpoint}: ViT width {vision.hidden_size}, {vision.num_hidden_layers} blocks, "
        f"{vision.image_size}px -> {output} ({model.mark_only_adapters_as_trainable().trainable_parameter_report()})"
    )
    return 0


def _params(args: argparse.Namespace) -> int:
    from msa_hf.modeling.parameter_report import parameter_table_markdown

    print(parameter_table_markdown())
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from msa_hf.data import prepare_dataset

    report = prepare_dataset(
        args.source,
        args.output,
        overwrite=args.overwrite,
        kind=args.kind,
        split=tuple(args.split),
        seed=args.seed,
        channel=args.channel,
        modality=args.modality,
        mask_threshold=args.mask_threshold,
        target_spacing=tuple(args.target_spacing) if args.target_spacing else None,
        keep_empty_slices=args.keep_empty_slices,
        case_id_pattern=args.case_id_pattern,
        label_table=args.label_table,
        name=args.name,
        source_license=args.license,
    )
    print(report.summary())
    written = sum(report.slices.values())
    if written == 0:
        print(f"msa-hf prepare: no usable case in {args.source}; see the reasons above.", file=sys.stderr)
        return 1
    return 0


def _build_default_data(args: argparse.Namespace) -> int:
    from msa_hf.data import build_mni152_tissue_dataset

    report = build_mni152_tissue_dataset(args.output, overwrite=args.overwrite)
    print(report.summary())
    return 0


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


def _evaluate(args: argparse.Namespace) -> int:
    from msa_hf.evaluation.protocols import PROTOCOLS, evaluate_model, markdown_table
    from msa_hf.inference.loading import load_for_inference

    classes = space_or_comma_list(args.classes)
    args.classes = ",".join(classes) if classes else None
    model, processor = load_for_inference(args.model)
    if model.config.use_depth_branch:  # 3-D: whole volumes reassembled from windows of D slices
        from msa_hf.evaluation.protocols import evaluate_volumes

        if args.protocols is not None or args.clicks is not None:
            raise ValueError(
                "a depth-branch model is scored on whole volumes with one click per slice (volume_points1); "
                "--protocols and --clicks are for 2-D models."
            )
        report = evaluate_volumes(
            model, args.dataset, args.split, stride=args.stride, classes=args.classes, output_dir=args.output,
            window=processor.window, device=args.device, dtype=args.dtype,
        )  # fmt: skip
        print(markdown_table(report["tables"]))
        if args.output:
            print(f"written: {args.output} (results.md, results.json, cases_volume_points1.csv)")
        return 0
    clicks = {} if args.clicks is None else {"clicks": args.clicks}  # else evaluate_model's default
    report = evaluate_model(
        model, args.dataset, args.split, args.protocols or list(PROTOCOLS), args.output, classes=args.classes,
        window=processor.window, batch_size=args.batch_size, device=args.device, dtype=args.dtype, **clicks,
    )  # fmt: skip
    print(markdown_table(report["tables"]))
    if "iterative" in report:
        iterative = report["iterative"]
        curve = ", ".join(f"{d:.3f}" for d in iterative["dice_per_click"])
        print(f"iterative: Dice per click {curve}; clicks to 0.85: {iterative['clicks_to_0.85']:.2f}, "
              f"to 0.90: {iterative['clicks_to_0.90']:.2f}")  # fmt: skip
    if args.output:
        print(
            f"written: {args.output} (results.md, results.json, cases_*.csv, overlays.png, dice_vs_clicks.png)"
        )
    return 0


def _predict(args: argparse.Namespace) -> int:
    from msa_hf.inference.cpu_memory import keep_freed_memory
    from msa_hf.inference.loading import load_for_inference
    from msa_hf.inference.predictor import Prompt, check_prediction_request, predict_file, read_prompts

    keep_freed_memory()  # many prompts on one image: per-click buffers stay mapped (msa_hf.inference.cpu_memory)
    if args.prompts:
        prompts = read_prompts(args.prompts)
    else:
        points = [list(p) for p in args.point] + [list(p) for p in args.negative]
        labels = [1] * len(args.point) + [0] * len(args.negative)
        prompts = [
            Prompt(
                points=points or None, labels=labels or None, box=args.box, slice=args.slice,
                propagate=args.propagate, text=args.text,
            )
        ]  # fmt: skip
    check_prediction_request(args.input, args.output, prompts)  # before the model loads
    model, processor = load_for_inference(args.model)
    summary = predict_file(
        model, args.input, args.output, prompts, window=processor.window, compile_encoder=args.compile,
        device=args.device, dtype=args.dtype,
    )  # fmt: skip
    for mask in summary["masks"]:
        where = f" slice {mask['slice']}" if "slice" in mask else ""
        where += (
            f" (propagated to slices {mask['slices'][0]}-{mask['slices'][1]})" if "slices" in mask else ""
        )
        print(f"label {mask['label']}{where}: {mask['pixels']} pixels, predicted IoU {mask['score']:.3f}")
    print(f"written: {summary['output']}")
    return 0


def _add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda when a GPU is visible, else cpu)"
    )
    parser.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16", "float16"],
        help="image encoder precision (default: bfloat16 autocast on CUDA, float32 on the CPU)",
    )  # fmt: skip


def _push_space(args: argparse.Namespace) -> int:
    from msa_hf.hub.push import push_space

    adapters = {}
    for entry in args.adapter:
        name, _, repo = entry.partition("=")
        if not name.strip() or not repo.strip():
            print(
                f"--adapter {entry!r}: expected NAME=REPO, e.g. liver=org/msa-liver-adapter", file=sys.stderr
            )
            return 2
        adapters[name.strip()] = repo.strip()
    result = push_space(
        args.space_repo_id, args.model, adapters=adapters or None, dry_run=args.dry_run, token=args.token
    )
    print(("would upload to " + args.space_repo_id + ":\n" if args.dry_run else "space: ") + result)
    return 0


def _push(args: argparse.Namespace) -> int:
    from msa_hf.hub.push import dataset_push_plan, default_dataset_repo_id, push_dataset, push_run

    if args.dataset_repo_id and not args.dataset:
        raise ValueError(
            "--dataset-repo-id names where --dataset goes; pass --dataset <prepared dataset directory>."
        )
    dataset_repo_id = None
    if args.dataset:
        dataset_repo_id = args.dataset_repo_id or default_dataset_repo_id(args.repo_id, args.dataset)
        dataset_plan = dataset_push_plan(args.dataset, dataset_repo_id, private=args.private)  # checked first
    plan = push_run(
        args.run_dir, args.repo_id, adapter_repo_id=args.adapter_repo_id, private=args.private,
        revision=args.revision, dry_run=args.dry_run, dataset_repo_id=dataset_repo_id, token=args.token,
    )  # fmt: skip
    print(("would upload:\n" if args.dry_run else "uploaded:\n") + plan.describe())
    if args.dataset:
        if args.dry_run:
            print(f"dataset (repo type dataset):\n{dataset_plan.describe()}")
        else:
            print(
                f"dataset: {push_dataset(args.dataset, dataset_repo_id, private=args.private, token=args.token)}"
            )
    if args.space_repo_id:
        from msa_hf.hub.push import push_space

        if args.dry_run:
            print(f"would create Space {args.space_repo_id} serving {args.repo_id}")
        else:
            print(f"space: {push_space(args.space_repo_id, args.repo_id, token=args.token)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `msa-hf` argument parser (subcommands: convert, prepare, build-default-data, pretrain-base, base-gate, params)."""
    from msa_hf import __version__
    from msa_hf.evaluation.decoding import PROTOCOLS

    parser = CommandParser(prog="msa-hf", description="Medical SAM Adapter for Hugging Face.")
    parser.add_argument("--version", action="version", version=f"msa-hf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser(
        "convert", help="Convert an original segment-anything / MedSAM .pth into a SamAdapterModel folder."
    )
    convert.add_argument("checkpoint", help="path of the .pth, e.g. sam_vit_b_01ec64.pth or medsam_vit_b.pth")
    convert.add_output_dir("folder to write (save_pretrained layout)", positional=True)
    convert.add_argument("--depth-branch", action=argparse.BooleanOptionalAction, default=False)
    convert.add_argument("--num-slices", type=int, default=1, help="default slices per volume D")
    convert.add_argument("--decoder-training", choices=("frozen", "adapters", "full"), default="full")
    convert.add_argument("--decoder-attention-heads", type=int, default=8)
    convert.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    convert.set_defaults(run=_convert)

    prepare = commands.add_parser(
        "prepare",
        help="Convert a folder of labelled PNGs, NIfTI volumes or DICOM series into a dataset directory.",
        description="Writes data/{train,validation,test}-*.parquet (split by case), classes.json, "
        "prepare_report.json and a dataset card. Bad cases are skipped and listed, never fatal.",
    )
    prepare.add_argument("source", help="folder with images + masks (2-D) or volumes + label maps (3-D)")
    prepare.add_output_dir("dataset directory to write", positional=True)
    prepare.add_argument("--kind", choices=("auto", "images", "volumes"), default="auto")
    prepare.add_argument(
        "--split", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"),
        help="fractions of the cases (default 0.8 0.1 0.1)",
    )  # fmt: skip
    prepare.add_argument("--seed", type=int, default=0, help="seed of the case split")
    prepare.add_argument("--channel", type=int, default=None, help="channel of 4-D NIfTI images to use")
    prepare.add_argument("--modality", choices=("CT", "MR", "other"), default=None, help="default: guessed")
    prepare.add_argument(
        "--mask-threshold", type=float, default=None, help="binarise soft/JPEG masks at this value"
    )
    prepare.add_argument("--target-spacing", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                         help="resample volumes to this spacing in mm")  # fmt: skip
    prepare.add_argument(
        "--keep-empty-slices", action="store_true", help="keep slices outside the labelled range"
    )
    prepare.add_argument(
        "--case-id-pattern", default=None, help="regex; its first group is a 2-D file's case id"
    )
    prepare.add_argument("--label-table", default=None, help="label table (default: one found in the source)")
    prepare.add_argument("--name", default=None, help="dataset name for the card")
    prepare.add_argument("--license", default="unknown: state the licence of your source data here",
                         help="licence / attribution of the source data, written into the card")  # fmt: skip
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing dataset directory")
    prepare.set_defaults(run=_prepare)

    default_data = commands.add_parser(
        "build-default-data", help="Build the embedded default dataset (MNI152 brain tissue, from nilearn)."
    )
    default_data.add_output_dir("dataset directory to write", default="data/mni152-tissue", positional=True)
    default_data.add_argument("--overwrite", action="store_true")
    default_data.set_defaults(run=_build_default_data)

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

    evaluate = commands.add_parser(
        "evaluate", help="Score a model on a prepared dataset with the paper's protocols."
    )
    evaluate.add_argument("model", help="model folder (save_pretrained), Hub id, .pth, or 'tiny'")
    evaluate.add_argument(
        "--dataset",
        default="data/mni152-tissue",
        help="dataset directory written by msa-hf prepare (or make data)",
    )
    evaluate.add_argument("--split", default="test", help="split to score: train, validation or test")
    evaluate.add_argument(
        "--protocols", nargs="+", default=None, choices=PROTOCOLS,
        help="2-D models: prompt protocols to score (default: all)",
    )  # fmt: skip
    evaluate.add_argument(
        "--clicks", type=int, default=None, help="2-D models: clicks of the iterative protocol (default 5)"
    )
    evaluate.add_argument(
        "--classes", nargs="+", default=None, help="structures to score, by name or label value"
    )
    evaluate.add_argument("--stride", type=int, default=None, help="3-D models: window stride (default: D)")
    evaluate.add_output_dir("folder for tables, CSVs and pictures (default: print only)", required=False)
    evaluate.rename("--output", "--output-dir")
    evaluate.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="2-D models: images encoded at once on the device (default 16)",
    )
    _add_placement_arguments(evaluate)
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser(
        "predict",
        help="Segment a PNG/JPEG/TIFF or DICOM image, a NIfTI volume or a DICOM series with points/boxes.",
    )
    predict.add_argument("model", help="model folder, Hub id, .pth, or 'tiny'")
    predict.add_argument("input", help="image file, one DICOM image, .nii/.nii.gz, or DICOM series folder")
    predict.add_argument("output", help="mask to write: .png for images, .nii.gz for volumes")
    predict.add_argument("--point", nargs=2, type=float, action="append", default=[], metavar=("X", "Y"),
                         help="positive click (x = column, y = row); repeat for more")  # fmt: skip
    predict.add_argument("--negative", nargs=2, type=float, action="append", default=[], metavar=("X", "Y"),
                         help="negative click")  # fmt: skip
    predict.add_argument("--box", nargs=4, type=float, default=None, metavar=("X0", "Y0", "X1", "Y1"))
    predict.add_argument("--slice", type=int, default=None, help="axial slice of a volume")
    predict.add_argument(
        "--text", default=None, help='describe the target, e.g. "left kidney" (text-trained models)'
    )
    predict.add_argument(
        "--propagate", action="store_true",
        help="volumes: carry the slice's mask up and down the volume (3-D propagation)",
    )  # fmt: skip
    predict.add_argument(
        "--prompts", default=None, help="JSON list of prompts (several targets, several slices)"
    )
    predict.add_argument(
        "--compile", action="store_true",
        help="torch.compile the image encoder (pays off over the many slices of a volume)",
    )  # fmt: skip
    _add_placement_arguments(predict)
    predict.set_defaults(run=_predict)

    push = commands.add_parser(
        "push", help="Publish a trained run: full model + processor + card, and the adapter."
    )
    push.add_argument("run_dir", metavar="run", help="train.py output directory (with model/)")
    push.add_argument("repo_id", help="e.g. org/msa-btcv; the adapter goes to <repo_id>-adapter")
    push.add_argument("--adapter-repo-id", default=None)
    push.add_argument("--private", action="store_true")
    push.add_argument("--revision", default=None, help="branch to push to (created when missing)")
    push.add_argument("--dry-run", action="store_true", help="list what would be uploaded, upload nothing")
    push.add_argument(
        "--dataset",
        default=None,
        help="prepared dataset directory to publish too; the model card then links it",
    )
    push.add_argument(
        "--dataset-repo-id",
        default=None,
        help="dataset repo for --dataset (default: <org>/<dataset folder name>)",
    )
    push.add_argument("--space-repo-id", default=None, help="also create a Gradio Space serving the model")
    push.add_argument(
        "--token", default=None, help="Hub token with write access (default: HF_TOKEN or `hf auth login`'s)"
    )
    push.set_defaults(run=_push)

    space = commands.add_parser(
        "push-space",
        help="Publish the Gradio demo Space serving a model, or a base with several task adapters.",
    )
    space.add_argument("space_repo_id", help="e.g. org/msa-demo")
    space.add_argument(
        "model", help="the model repo it serves (with --adapter: the base they were trained on)"
    )
    space.add_argument("--adapter", action="append", default=[], metavar="NAME=REPO",
                       help="a task adapter (adapter-only repo) offered in the demo's menu; repeat for more")  # fmt: skip
    space.add_argument("--dry-run", action="store_true", help="list the files, upload nothing")
    space.add_argument(
        "--token", default=None, help="Hub token with write access (default: HF_TOKEN or `hf auth login`'s)"
    )
    space.set_defaults(run=_push_space)

    commands.add_parser("compare", help="MSA vs LoRA vs full vs decoder-only on the same data and budget.")
    commands.add_parser(
        "train", help="Train (same as `accelerate launch train.py`); see `msa-hf train --help`."
    )
    commands.add_parser(
        "pretrain-encoder",
        help="Self-supervised encoder pretraining (MAE, e-Mix, ShED); same as `accelerate launch pretrain.py`.",
    )
    params = commands.add_parser("params", help="Print trainable-parameter counts for ViT-B/L/H (Markdown).")
    params.set_defaults(run=_params)
    return parser


def main(argv: list[str] | None = None) -> int:
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


if __name__ == "__main__":
    raise SystemExit(main())
