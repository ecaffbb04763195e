# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`msa-hf convert` (an original SAM / MedSAM checkpoint into a model folder), `msa-hf export-onnx` (a model as
ONNX graphs) and `msa-hf params`."""

from __future__ import annotations

import argparse
from pathlib import Path

from msa_hf.command_line import positive_int


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register these commands on `msa-hf`'s subcommands."""
    convert = commands.add_parser(
        "convert", help="Convert an original segment-anything / MedSAM .pth into a SamAdapterModel folder."
    )
    convert.add_argument("checkpoint", help="path of the .pth, e.g. sam_vit_b_01ec64.pth or medsam_vit_b.pth")
    convert.add_output_dir("folder to write (save_pretrained layout)", positional=True)
    convert.add_argument("--depth-branch", action=argparse.BooleanOptionalAction, default=False)
    convert.add_argument("--num-slices", type=positive_int, default=1, help="default slices per volume D")
    convert.add_argument("--decoder-training", choices=("frozen", "adapters", "full"), default="full")
    convert.add_argument("--decoder-attention-heads", type=positive_int, default=8)
    convert.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    convert.set_defaults(run=_convert)

    export = commands.add_parser(
        "export-onnx",
        help="Write a model's image encoder and prompt decoder as ONNX graphs (checked with onnxruntime).",
    )
    export.add_argument("model", help="model folder, Hub id, .pth, or 'tiny'")
    export.add_output_dir(
        "folder for image_encoder.onnx, prompt_decoder.onnx and onnx_export.json", positional=True
    )
    export.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    export.add_argument(
        "--no-check",
        action="store_true",
        help="skip the onnxruntime comparison with PyTorch (no onnxruntime)",
    )
    export.add_argument(
        "--exporter",
        choices=["auto", "torch.export", "torchscript"],
        default="auto",
        help="torch's exporter: torch.export (opset 18; torch 2.9 or newer with onnxscript) or its older "
        "tracer, torchscript (opset 17); auto: torch.export where it can run, else torchscript",
    )
    export.set_defaults(run=_export_onnx)

    params = commands.add_parser("params", help="Print trainable-parameter counts for ViT-B/L/H (Markdown).")
    params.set_defaults(run=_params)


def _convert(args: argparse.Namespace) -> int:
    from msa_hf.modeling.convert import convert_segment_anything_checkpoint
    from msa_hf.output_files import atomic_folder, check_new_outputs, check_not_an_input

    output = Path(args.output)
    check_not_an_input(output, [args.checkpoint])  # before the conversion, not after
    check_new_outputs([output], args.overwrite)
    model = convert_segment_anything_checkpoint(
        args.checkpoint,
        decoder_attention_heads=args.decoder_attention_heads,
        use_depth_branch=args.depth_branch,
        num_slices=args.num_slices,
        decoder_training=args.decoder_training,
    )
    with atomic_folder(output, overwrite=args.overwrite, inputs=[args.checkpoint]) as staging:
        model.save_pretrained(staging)
    vision = model.config.vision_config
    print(
        f"Converted {args.checkpoint}: ViT width {vision.hidden_size}, {vision.num_hidden_layers} blocks, "
        f"{vision.image_size}px -> {output} ({model.mark_only_adapters_as_trainable().trainable_parameter_report()})"
    )
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from msa_hf.inference.loading import load_for_inference
    from msa_hf.inference.onnx_export import export_onnx, resolve_exporter
    from msa_hf.output_files import atomic_folder, check_new_outputs, check_not_an_input

    output = Path(args.output)
    check_not_an_input(output, [args.model])
    check_new_outputs([output], args.overwrite)
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)

        if not args.no_check:
            import onnxruntime  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f'export-onnx needs {error.name}: pip install "msa_hf[onnx]" (onnx, onnxscript, onnxruntime).'
        ) from error
    exporter = resolve_exporter(args.exporter)  # before the model loads: a refusal costs nothing
    model, _ = load_for_inference(args.model)
    with atomic_folder(output, overwrite=args.overwrite, inputs=[args.model]) as staging:
        report = export_onnx(model, staging, check=not args.no_check, exporter=exporter)
    print(
        f"written: {output / 'image_encoder.onnx'}, {output / 'prompt_decoder.onnx'} "
        f"({report['exporter']}, opset {report['opset']})"
    )
    for name, difference in report.get("check", {}).items():
        print(f"  onnxruntime vs PyTorch, {name}: max |difference| {difference:.2e}")
    return 0


def _params(args: argparse.Namespace) -> int:
    from msa_hf.modeling.parameter_report import parameter_table_markdown

    print(parameter_table_markdown())
    return 0
