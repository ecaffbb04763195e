# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`msa-hf prepare` (labelled images or volumes into a dataset directory) and `msa-hf build-default-data`."""

from __future__ import annotations

import argparse

from msa_hf.command_line import label_remap
from msa_hf.data.dicom_planes import DICOM_LABEL_KINDS

DEFAULT_OBJECTS_DIR = "data/mni152-objects"


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register these commands on `msa-hf`'s subcommands."""
    from msa_hf.data.planes import PLANE_CHOICES

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
        "--split", type=float, nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"),
        help="fractions of the cases (default 0.8 0.1 0.1)",
    )  # fmt: skip
    prepare.add_argument("--seed", type=int, default=0, help="seed of the case split")
    prepare.add_argument(
        "--split-file", default=None, metavar="FILE",
        help="the dataset's own split of its cases instead of --split: TotalSegmentator's meta.csv, a table of a "
             "case column and a split column (train, val, test), or JSON {\"train\": [...], \"validation\": [...], "
             "\"test\": [...]}; every case must be in it",
    )  # fmt: skip
    prepare.add_argument(
        "--channel", default=None, metavar="K_OR_NAME",
        help="channel to use, by number or name (flair): of 4-D NIfTI images, or of cases with one file per "
             "channel (nnU-Net's case_0000, case_0001; BraTS's _flair, _t1, ...; there the default is the first); "
             "models trained on the dataset read the same channel",
    )  # fmt: skip
    prepare.add_argument(
        "--series", default=None, metavar="KEY",
        help="DICOM case folders holding several series (a PACS export): the one to read in every case, by its "
             "key, series number or UID, as msa-hf predict lists them (default: the series a DICOM-SEG label "
             "map was drawn on)",
    )  # fmt: skip
    prepare.add_argument(
        "--dicom-labels", choices=tuple(DICOM_LABEL_KINDS), default=None,
        help="one folder per patient holding its DICOM series and label objects (a PACS or TCIA download): "
             "where a folder holds both a DICOM-SEG and an RT structure set, the one to read",
    )  # fmt: skip
    prepare.add_argument(
        "--overlapping", action="store_true",
        help="DICOM-SEG, RT structure set or structure-file labels (one mask file per structure) whose "
             "structures overlap (a tumour inside its organ, organs inside the body outline): read each as a "
             "region of its own (at most 16) rather than refusing",
    )  # fmt: skip
    prepare.add_argument("--modality", choices=("CT", "MR", "other"), default=None, help="default: guessed")
    prepare.add_argument(
        "--mask-threshold", type=float, default=None, help="binarise soft/JPEG masks at this value"
    )
    prepare.add_argument("--target-spacing", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                         help="resample volumes to this spacing in mm")  # fmt: skip
    prepare.add_argument(
        "--plane", choices=PLANE_CHOICES, default="auto",
        help="the plane volumes are cut into: auto = axial, unless a case's axial pixels' sides differ more than "
             "twofold (acquired sagittally or coronally), then the plane it was acquired in, as msa-hf predict "
             "cuts it",
    )  # fmt: skip
    prepare.add_argument(
        "--keep-empty-slices", action="store_true", help="keep slices outside the labelled range"
    )
    prepare.add_argument(
        "--case-id-pattern",
        default=None,
        help="regex; its first group is a 2-D file's case id, or the patient of a volume's file name, whose "
        "volumes are kept in one split (default for volumes: those in a folder named as their case ids begin, "
        "ACDC's patient001/patient001_frame01.nii.gz)",
    )
    prepare.add_argument("--label-table", default=None, help="label table (default: one found in the source)")
    prepare.add_argument(
        "--structures", nargs="+", default=None, metavar="NAME",
        help="the structures to read by name, valued 1, 2, ... in this order, instead of a label table: DICOM-SEG "
             "segments, RT structure set ROIs or structure files (liver.nii.gz) named so; the others are left out",
    )  # fmt: skip
    prepare.add_argument(
        "--remap-labels", nargs="+", default=None, metavar="FROM=TO",
        help="read label value FROM in the label maps as TO, all at once, before the label table: for files "
             "that code structures unusually (REFUGE's 0 = cup, 128 = disc rim, 255 = background: 255=0 128=1 0=2)",
    )  # fmt: skip
    prepare.add_argument("--name", default=None, help="dataset name for the card")
    prepare.add_argument("--license", default="unknown: state the licence of your source data here",
                         help="licence / attribution of the source data, written into the card")  # fmt: skip
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing dataset directory")
    prepare.set_defaults(run=_prepare)

    default_data = commands.add_parser(
        "build-default-data",
        help="Build the embedded default dataset (the MNI152 template's brain structures, from nilearn).",
    )
    default_data.add_output_dir(
        "dataset directory to write (with --targets tissue: data/mni152-tissue unless given)",
        default=DEFAULT_OBJECTS_DIR, positional=True,
    )  # fmt: skip
    default_data.add_argument(
        "--targets", choices=("objects", "tissue"), default="objects",
        help="objects: ventricles, left/right deep grey and white matter; tissue: CSF, grey and white matter",
    )  # fmt: skip
    default_data.add_argument("--overwrite", action="store_true")
    default_data.set_defaults(run=_build_default_data)


def _prepare(args: argparse.Namespace) -> int:
    from msa_hf.data import prepare_dataset

    if args.split and args.split_file:
        raise ValueError(
            f"--split {' '.join(f'{v:g}' for v in args.split)} and --split-file {args.split_file}: the file "
            "assigns every case its split; give one of them."
        )
    report = prepare_dataset(
        args.source,
        args.output,
        overwrite=args.overwrite,
        kind=args.kind,
        split=tuple(args.split) if args.split else (0.8, 0.1, 0.1),
        split_file=args.split_file,
        seed=args.seed,
        channel=args.channel,
        series=args.series,
        dicom_labels=args.dicom_labels,
        overlapping=args.overlapping,
        modality=args.modality,
        mask_threshold=args.mask_threshold,
        target_spacing=tuple(args.target_spacing) if args.target_spacing else None,
        plane=args.plane,
        keep_empty_slices=args.keep_empty_slices,
        case_id_pattern=args.case_id_pattern,
        label_table=args.label_table,
        structures=tuple(args.structures) if args.structures else None,
        remap_labels=label_remap(args.remap_labels),
        name=args.name,
        source_license=args.license,
    )
    print(report.summary())
    return 0


def _build_default_data(args: argparse.Namespace) -> int:
    from msa_hf.data import build_mni152_tissue_dataset
    from msa_hf.data.mni152_objects import build_mni152_objects_dataset

    build = build_mni152_objects_dataset if args.targets == "objects" else build_mni152_tissue_dataset
    output = (
        "data/mni152-tissue"
        if args.targets == "tissue" and args.output == DEFAULT_OBJECTS_DIR
        else args.output
    )
    report = build(output, overwrite=args.overwrite)
    print(report.summary())
    return 0
