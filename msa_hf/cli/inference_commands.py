# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`msa-hf evaluate` (a model on a prepared dataset, by protocol), `msa-hf score` (mask files against label maps)
and `msa-hf predict` (a file with prompts)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from msa_hf.command_line import label_remap, positive_int, space_or_comma_list
from msa_hf.data.channels import ChannelChoice
from msa_hf.inference.dicom_outputs import DICOM_OUTPUTS


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register these commands on `msa-hf`'s subcommands."""
    from msa_hf.data.planes import PLANE_CHOICES
    from msa_hf.evaluation.decoding import PROTOCOLS, VOLUME_PROTOCOLS
    from msa_hf.inference.prompt_frames import PROMPT_FRAMES

    evaluate = commands.add_parser(
        "evaluate", help="Score a model on a prepared dataset with the paper's protocols."
    )
    evaluate.add_argument("model", help="model folder (save_pretrained), Hub id, .pth, or 'tiny'")
    evaluate.add_argument(
        "--dataset",
        default="data/mni152-objects",
        help="dataset directory written by msa-hf prepare (or make data)",
    )
    evaluate.add_argument("--split", default="test", help="split to score: train, validation or test")
    evaluate.add_argument(
        "--protocols", nargs="+", default=None, choices=[*PROTOCOLS, *VOLUME_PROTOCOLS],
        help="prompt protocols to score: per slice (box, points1, points3, points10, iterative; default for 2-D "
             "models: all) or on whole volumes (volume_points1: a click on every slice; volume_propagation: one "
             "click propagated through the volume, then corrections; default for depth-branch models: both, "
             "and open to 2-D models on a dataset of volumes, beside per-slice ones)",
    )  # fmt: skip
    evaluate.add_argument(
        "--clicks", type=positive_int, default=None,
        help="clicks of the iterative protocol (default 5) and of volume_propagation: the first click and the "
             "corrections after it (default 3)",
    )  # fmt: skip
    evaluate.add_argument(
        "--classes", nargs="+", default=None, help="structures to score, by name or label value"
    )
    evaluate.add_argument(
        "--stride", type=positive_int, default=None, help="3-D models: window stride (default: D)"
    )
    evaluate.add_output_dir("folder for tables, CSVs and pictures (default: print only)", required=False)
    evaluate.rename("--output", "--output-dir")
    evaluate.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier evaluation's tables in --output-dir",
    )
    evaluate.add_argument(
        "--batch-size", type=positive_int, default=None,
        help="images encoded at once on the device by the per-slice protocols (default 16), or slices of a volume "
             "by volume_propagation (default: 8 on a GPU, one depth window on the CPU)",
    )  # fmt: skip
    _add_resample_slices_argument(evaluate, "each case", "onto the case's own slices and scored there")
    _add_placement_arguments(evaluate)
    evaluate.set_defaults(run=_evaluate)

    score = commands.add_parser(
        "score",
        help="Score mask files (msa-hf predict's or any tool's) against reference label maps: Dice, IoU, HD95, "
        "NSD per case and structure.",
    )
    score.add_argument(
        "predictions",
        help="a folder of masks (NIfTI, DICOM-SEG, RT structure sets, PNG/TIFF/BMP), a quoted glob "
        "('out/*.nii.gz') or one mask file; or a manifest of pairs whose names do not tell: a CSV with the columns prediction and label "
        "(and case_id), or a JSON list of such objects, paths from its folder (then no LABELS)",
    )
    score.add_argument(
        "labels",
        nargs="?",
        default=None,
        help="the folder of reference label maps, paired with the predictions by name as prepare pairs images "
        "(case_0000.nii.gz -> case.nii.gz); or one label map for one prediction",
    )
    score.add_argument(
        "--classes", nargs="+", default=None,
        help="structures to score, by name or label value (default: every value in the masks)",
    )  # fmt: skip
    score.add_argument(
        "--label-table",
        default=None,
        help="names of the label values (dataset.json, labels.json, labels.txt, ...; default: the one in the "
        "labels folder or the folder above it)",
    )
    score.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="NSD's tolerance, in mm for volumes and pixels for 2-D masks (default: msa-hf evaluate's, 2)",
    )
    score.add_argument(
        "--images",
        default=None,
        help="DICOM-SEG masks: the folder holding the DICOM series they were drawn on (a study, a PACS export, "
        "a folder of series folders)",
    )
    score.add_argument(
        "--remap-labels", nargs="+", default=None, metavar="FROM=TO",
        help="read the label maps' value FROM as TO, as msa-hf prepare --remap-labels does (REFUGE: 255=0 128=1 0=2)",
    )  # fmt: skip
    score.add_output_dir("folder for scores.csv and scores.md (default: print only)", required=False)
    score.add_argument("--overwrite", action="store_true", help="replace earlier scores in --output-dir")
    score.set_defaults(run=_score)

    predict = commands.add_parser(
        "predict",
        help="Segment a PNG/JPEG/TIFF or DICOM image, a NIfTI volume or a DICOM series with points/boxes; or "
        "many inputs at once (a folder, a glob or a manifest) with one model load.",
    )
    predict.add_argument("model", help="model folder, Hub id, .pth, or 'tiny'")
    predict.add_argument(
        "input",
        help="image file, one DICOM image, .nii/.nii.gz, a DICOM series folder or a .zip of it (a PACS export); "
        "many: a folder of images or NIfTI "
        "files, a quoted glob ('scans/*.nii.gz'), or a CSV/JSON manifest (input, prompts, labels, output, series)",
    )
    predict.add_argument(
        "output",
        help="mask to write: .png for images, .nii.gz for volumes, .dcm (DICOM-SEG) for a DICOM series; for many "
        "inputs, a folder",
    )
    predict.add_argument("--point", nargs=2, type=float, action="append", default=[], metavar=("X", "Y"),
                         help="positive click (x = column, y = row); repeat for more")  # fmt: skip
    predict.add_argument("--negative", nargs=2, type=float, action="append", default=[], metavar=("X", "Y"),
                         help="negative click")  # fmt: skip
    predict.add_argument("--box", nargs=4, type=float, default=None, metavar=("X0", "Y0", "X1", "Y1"))
    predict.add_argument("--slice", type=int, default=None, help="axial slice of a volume")
    predict.add_argument(
        "--series", default=None, metavar="KEY",
        help="a DICOM folder holding several series (a study, a PACS export): the one to segment, by the key "
             "its listing gives (a series number such as 2, or 3/EchoNumbers=2 where one series holds several "
             "acquisitions) or its series instance UID; without it, such a folder is refused with the listing. "
             "Many inputs: the same for every DICOM folder or enhanced file (a manifest's series column chooses per input)",
    )  # fmt: skip
    predict.add_argument(
        "--name",
        default=None,
        help="the structure's name (the segment label of a DICOM-SEG output, the ROI name of an RT structure set)",
    )
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
        "--prompts-from-labels", default=None, metavar="DIR",
        help="many inputs: take prompts from each input's label map in DIR, paired by file name as `prepare` "
             "pairs them (case_0000.nii.gz -> case.nii.gz); a box or a click per structure, per slice of a "
             "volume, written with the structure's label value; a label map may be a folder of one mask file "
             "per structure named like the input. DIR may be the input folder itself where that is a DICOM "
             "download of one folder per patient, each holding its series and the DICOM-SEG or RT structure set "
             "drawn on one, or a dataset that keeps each case's label map beside its image (TotalSegmentator's "
             "structure folders, KiTS's case folders, LiTS's volume-N beside segmentation-N, BraTS's sequences "
             "beside their _seg, the first sequence read)",
    )  # fmt: skip
    predict.add_argument(
        "--dicom-labels", choices=DICOM_OUTPUTS, default=None,
        help="with --prompts-from-labels on a DICOM download of patient folders: where a folder holds both a "
             "DICOM-SEG and an RT structure set, the one to prompt from",
    )  # fmt: skip
    predict.add_argument(
        "--prompt-kind", choices=["box", "click"], default="box",
        help="with --prompts-from-labels or manifest labels: the structure's tight box, or one click on its most "
             "interior pixel (default: box)",
    )  # fmt: skip
    predict.add_argument(
        "--remap-labels", nargs="+", default=None, metavar="FROM=TO",
        help="with --prompts-from-labels or manifest labels: read the label maps' value FROM as TO, as msa-hf "
             "prepare --remap-labels does (REFUGE: 255=0 128=1 0=2)",
    )  # fmt: skip
    predict.add_argument(
        "--save-probabilities", default=None, metavar="PATH",
        help="also write each mask's probability as float32: .tif/.tiff (one page per map) for an image, "
             ".nii/.nii.gz on the input's grid for a volume",
    )  # fmt: skip
    predict.add_argument(
        "--volume-report", default=None, metavar="PATH",
        help="with a DICOM-SEG output (OUTPUT.dcm of a DICOM series): also write each structure's volume (mL) as "
             "a DICOM Structured Report (measurement report, SR) at PATH (.dcm) that references the segments, "
             "as a PACS lists them; sent with the segmentation by --send-to. Many inputs: a folder, each "
             "DICOM-SEG's report <name>_volumes.dcm there",
    )  # fmt: skip
    predict.add_argument(
        "--dicom-output", choices=DICOM_OUTPUTS, default=None,
        help="a DICOM series' .dcm output: seg = a DICOM Segmentation (viewers, PACS), rtstruct = an RT "
             "Structure Set, the contours a radiotherapy planning system imports (default: seg). Many inputs: "
             "each DICOM series' mask is written so, as <name>.dcm",
    )  # fmt: skip
    predict.add_argument(
        "--structure-files", action="store_true",
        help="write OUTPUT as a folder of one binary mask per structure, each whole where structures overlap (a "
             "tumour inside its organ): <name>.nii.gz for a volume, <name>.png for an image (--name or the "
             "prompts' names; label_<value> without one). Many inputs: a folder per input",
    )  # fmt: skip
    predict.add_argument(
        "--multimask", action="store_true",
        help="SAM's three masks per prompt: the mask file takes the best by score, every score is printed, "
             "--save-probabilities keeps all three (not with --propagate)",
    )  # fmt: skip
    predict.add_argument(
        "--batch-size", type=positive_int, default=None,
        help="images (many inputs) or volume slices encoded at once on the device (default: 8 images; volume "
             "slices 8 at a time on a GPU, one at a time (one depth window) on the CPU, where a batch saves "
             "nothing and a propagation may never need the slices ahead)",
    )  # fmt: skip
    predict.add_argument(
        "--prompt-frame", choices=PROMPT_FRAMES, default="display",
        help="a volume's --slice/--point/--box (or --prompts): display = the axial slices msa-hf and its demo "
             "show (RAS+, slice 0 inferior); voxel = the input's own grid: a NIfTI file's voxel indices i j on slice "
             "k, as numpy, ITK-SNAP and 3D Slicer (IJK) give them, or a DICOM series' column i and row j on the "
             "image of InstanceNumber k, as a viewer shows them",
    )  # fmt: skip
    predict.add_argument(
        "--overwrite", action="store_true",
        help="replace a mask (or probability) file that exists at the output; for many inputs, those in the "
             "output folder",
    )  # fmt: skip
    predict.add_argument(
        "--plane", choices=PLANE_CHOICES, default="auto",
        help="the plane a volume is cut into for the 2-D model: auto = axial, unless the axial pixels' sides "
             "differ more than twofold (a scan acquired sagittally or coronally: a knee, a spine), then the plane "
             "with the squarest pixels, the one it was acquired in; with --prompt-frame voxel, the input's own "
             "plane. --slice, --point and --box (display frame) are that plane's slices and pixels",
    )  # fmt: skip
    predict.add_argument(
        "--channel", default=None, metavar="K_OR_NAME",
        help="the channel to read of 4-D NIfTI inputs (the Decathlon's BraTS: 4 sequences in one file) and of "
             "cases with one file per sequence: a number, or a name as the dataset names them (flair). Default: "
             "the channel the model was trained on (msa-hf prepare --channel), matched by name where both name "
             "their channels",
    )  # fmt: skip
    _add_resample_slices_argument(predict, "a volume", "onto the input's slices")
    _add_placement_arguments(predict)
    _add_sending_arguments(
        predict, "--send-to", "also send each DICOM-SEG or RT structure set written to ",
        ". The files are written first and kept; where the node cannot take them, `msa-hf send` sends them "
        "again",
    )  # fmt: skip
    predict.set_defaults(run=_predict)

    send = commands.add_parser(
        "send",
        help="Send DICOM files (msa-hf predict's DICOM-SEG or RT structure sets, or any) to a DICOM node: a "
             "PACS, a viewer, a planning system's import node.",
    )  # fmt: skip
    send.add_argument(
        "paths", nargs="+", metavar="PATH", help="DICOM files, or folders of them (not their sub-folders)"
    )
    _add_sending_arguments(send, "--to", "send them to ", "", required=True)
    send.set_defaults(run=_send)


def _add_sending_arguments(
    parser: argparse.ArgumentParser, flag: str, lead: str, tail: str, required: bool = False
) -> None:
    """`flag` AE_TITLE@HOST:PORT (the DICOM node to send to; its help between `lead` and `tail`) and
    `--calling-ae`."""
    from msa_hf.inference.dicom_send import DEFAULT_CALLING_AE
    from msa_hf.inference.dicomweb_store import TOKEN_VARIABLE

    parser.add_argument(
        flag, metavar="AE_TITLE@HOST:PORT|URL", default=None, required=required, dest="send_to",
        help=f"{lead}the DICOM node (a PACS, a viewer, a planning system's import node) with this AE title, host "
             "and port, as it is configured (C-STORE; needs the dicom extra), or the DICOMweb service at this "
             "root URL, a web or cloud PACS (STOW-RS; a bearer token from the environment variable "
             f"{TOKEN_VARIABLE}){tail}",
    )  # fmt: skip
    parser.add_argument(
        "--calling-ae", metavar="AE_TITLE", default=DEFAULT_CALLING_AE,
        help=f"the AE title to call from, which a node that admits callers by title must know (default: "
             f"{DEFAULT_CALLING_AE})",
    )  # fmt: skip


def _sending_node(args: argparse.Namespace):
    """The node `--send-to`/`--to` names (None without one), checked before anything runs."""
    from msa_hf.inference.dicom_send import DicomNode, check_ae_title, import_pynetdicom, parse_destination

    if args.send_to is None:
        return None
    node = parse_destination(args.send_to, "--to" if args.command == "send" else "--send-to")
    if isinstance(node, DicomNode):
        check_ae_title(args.calling_ae, "--calling-ae")
        import_pynetdicom()
    return node


def _send_written(paths: list[Path], node: Any, args: argparse.Namespace, just_written: bool = True) -> None:
    """Send the DICOM objects `paths` to `node`, saying so; a failure of objects `just_written` says how to send
    them again."""
    from msa_hf.inference.dicom_send import DicomSendError, send_dicom_files

    try:
        sent = send_dicom_files(paths, node, args.calling_ae)
    except DicomSendError as error:
        if not just_written:
            raise
        again = " ".join(str(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
        raise DicomSendError(f"{error} Send them again with: msa-hf send {again} --to {node}") from None
    print(f"sent: {sent} DICOM object{'s' if sent != 1 else ''} to {node}")


def _send(args: argparse.Namespace) -> int:
    from msa_hf.inference.dicom_send import dicom_files_in

    node = _sending_node(args)
    _send_written(dicom_files_in(args.paths), node, args, just_written=False)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from msa_hf.evaluation.decoding import VOLUME_PROTOCOLS
    from msa_hf.evaluation.protocols import PROTOCOLS, evaluate_model, evaluate_volumes, markdown_table
    from msa_hf.evaluation.results_files import evaluation_files, write_results
    from msa_hf.inference.loading import load_for_inference
    from msa_hf.output_files import check_new_outputs

    named = args.protocols or []
    volume_protocols = [p for p in named if p in VOLUME_PROTOCOLS]
    slice_protocols = [p for p in named if p not in VOLUME_PROTOCOLS]
    if args.output:  # before the model loads; the other files in the folder are the user's and stay
        # whole volumes or per slice: not known until the model loads
        protocols = [*VOLUME_PROTOCOLS, *(args.protocols or PROTOCOLS)]
        check_new_outputs(evaluation_files(args.output, protocols), args.overwrite)
    classes = space_or_comma_list(args.classes)
    args.classes = ",".join(classes) if classes else None
    model, processor = load_for_inference(args.model)
    _say_precision_tip(args, model)
    depth_branch = bool(model.config.use_depth_branch)
    if depth_branch and slice_protocols:
        raise ValueError(
            f"a depth-branch model is scored on whole volumes (--protocols {' '.join(VOLUME_PROTOCOLS)}); "
            f"--protocols {' '.join(slice_protocols)} are for 2-D models."
        )
    # a depth-branch model: whole volumes; a 2-D model: per slice, and whole volumes where --protocols asks
    run_volumes = volume_protocols or (list(VOLUME_PROTOCOLS) if depth_branch else [])
    run_slices = [] if depth_branch else slice_protocols or ([] if volume_protocols else list(PROTOCOLS))
    if args.stride is not None and "volume_points1" not in run_volumes:
        raise ValueError(
            "--stride sets the window stride of volume_points1 (3-D windows); it is not run here."
        )
    if args.clicks is not None and "volume_propagation" not in run_volumes and "iterative" not in run_slices:
        raise ValueError(
            f"--clicks sets the rounds of the iterative protocol and of volume_propagation; --protocols "
            f"{' '.join(run_slices + run_volumes)} has neither."
        )
    # whole volumes first: a dataset of pictures is refused before the per-slice run writes anything
    volumes = None
    if run_volumes:
        corrections = {} if args.clicks is None else {"corrections": args.clicks - 1}
        volumes = evaluate_volumes(
            model, args.dataset, args.split, stride=args.stride, classes=args.classes,
            output_dir=None if run_slices else args.output, window=processor.window, device=args.device,
            dtype=args.dtype, compile_encoder=args.compile, slice_spacing=processor.slice_spacing,
            resample_slices=args.resample_slices, protocols=run_volumes, batch_size=args.batch_size, **corrections,
        )  # fmt: skip
        print(markdown_table(volumes["tables"]))
        if "volume_propagation" in volumes:
            _print_rounds(
                "volume_propagation: Dice after the first click and each correction",
                volumes["volume_propagation"],
            )
        for note in volumes["notes"]:
            print(f"note: {note}")
    per_slice = None
    if run_slices:
        clicks = {} if args.clicks is None else {"clicks": args.clicks}  # else evaluate_model's default
        per_slice = evaluate_model(
            model, args.dataset, args.split, run_slices, args.output, classes=args.classes, window=processor.window,
            batch_size=args.batch_size or 16, device=args.device, dtype=args.dtype, compile_encoder=args.compile,
            **clicks,
        )  # fmt: skip
        print(markdown_table(per_slice["tables"]))
        if "iterative" in per_slice:
            _print_rounds("iterative: Dice per click", per_slice["iterative"])
    if volumes is not None and per_slice is not None and args.output:
        # one results.json and results.md for both kinds: the per-slice run wrote its CSVs and pictures,
        # the whole-volume protocols add theirs
        report = {
            **per_slice,
            **{k: v for k, v in volumes.items() if k not in ("tables", "scores", "split")},
        }
        report["tables"] = {**per_slice["tables"], **volumes["tables"]}
        description = (
            f"{args.split} split, per case then averaged; {', '.join(run_slices)}: slice-prompted; "
            f"{', '.join(run_volumes)}: whole volumes"
        )
        write_results(
            args.output,
            report,
            volumes["scores"],
            description,
            inputs=[args.dataset],
            notes=volumes["notes"],
        )
    if args.output:
        pictures = ", overlays.png, dice_vs_clicks.png" if run_slices else ""
        print(f"written: {args.output} (results.md, results.json, cases_*.csv{pictures})")
    return 0


def _print_rounds(what: str, rounds: dict) -> None:
    """One line of an interactive protocol's report (`iterative`, `volume_propagation`): the mean Dice after
    each click and the mean clicks to reach 0.85 and 0.90."""
    curve = ", ".join(f"{d:.3f}" for d in rounds["dice_per_click"])
    never = len(rounds["dice_per_click"]) + 1
    print(f"{what} {curve}; mean clicks to 0.85: {rounds['clicks_to_0.85']:.2f}, to 0.90: "
          f"{rounds['clicks_to_0.90']:.2f} (a case that never gets there counts {never})")  # fmt: skip


def _score(args: argparse.Namespace) -> int:
    from msa_hf.evaluation.case_scores import NSD_TOLERANCE_MM
    from msa_hf.evaluation.mask_files import (
        SCORE_FILES,
        is_score_manifest,
        manifest_pairs,
        score_mask_files,
        score_table,
        write_scores,
    )
    from msa_hf.output_files import check_new_outputs, check_not_an_input

    args.tolerance = NSD_TOLERANCE_MM if args.tolerance is None else args.tolerance
    if not args.tolerance > 0:
        raise ValueError(f"--tolerance {args.tolerance}: NSD's tolerance is a positive distance.")
    inputs = [Path(args.labels)] if args.labels else []
    if is_score_manifest(args.predictions):  # its label maps are the inputs the scores must not replace
        inputs = [Path(args.predictions), *(pair.label for pair in manifest_pairs(args.predictions))]
    if args.output:  # before anything is read; the other files in the folder are the user's and stay
        check_not_an_input(args.output, inputs)
        check_new_outputs([Path(args.output) / name for name in SCORE_FILES], args.overwrite)
    scores, unit = score_mask_files(
        args.predictions, args.labels, space_or_comma_list(args.classes), args.label_table, args.tolerance,
        args.images, label_remap(args.remap_labels),
    )  # fmt: skip
    cases = len({s.case_id for s in scores})
    against = f" scored against {args.labels}" if args.labels else "'s pairs scored"
    description = f"{args.predictions}{against}: {cases} cases, per case then averaged"
    print(description + "\n\n" + score_table(scores, unit, args.tolerance))
    if args.output:
        write_scores(args.output, scores, unit, description, inputs=inputs, tolerance=args.tolerance)
        print(f"written: {args.output} ({', '.join(SCORE_FILES)})")
    return 0


def _predict_zipped(args: argparse.Namespace) -> int:
    """`msa-hf predict MODEL export.zip OUTPUT`: the zip's DICOM files unpacked into a temporary folder
    (`dicom_zips.unpacked_zip`), predicted as that folder is, the zip named where a message names the folder."""
    from msa_hf.data.dicom_zips import unpacked_zip

    zipped = args.input
    with unpacked_zip(zipped) as folder:
        try:
            return _predict(argparse.Namespace(**{**vars(args), "input": str(folder)}))
        except ValueError as error:
            raise ValueError(str(error).replace(str(folder), zipped)) from None


def _predict(args: argparse.Namespace) -> int:
    from msa_hf.data.dicom_zips import is_zip
    from msa_hf.data.structure_files import check_structure_folder_output
    from msa_hf.inference.cpu_memory import keep_freed_memory
    from msa_hf.inference.loading import load_for_inference
    from msa_hf.inference.predictor import (
        Prompt,
        check_prediction_request,
        is_dicom_output,
        predict_file,
        read_prompts,
    )
    from msa_hf.inference.prompt_frames import voxel_frame
    from msa_hf.output_files import check_new_outputs

    if is_zip(args.input):  # a DICOM series or study zipped, as a PACS exports it
        return _predict_zipped(args)
    if args.channel is not None:  # a number or a name; refused here, before the model loads
        ChannelChoice.parse(args.channel)
    keep_freed_memory()  # many prompts on one image: per-click buffers stay mapped (msa_hf.inference.cpu_memory)
    from msa_hf.inference.batch import is_batch_source

    batch = is_batch_source(args.input, args.prompts_from_labels)
    given = bool(args.prompts or args.point or args.negative or args.box or args.text)
    if args.prompts:
        prompts = read_prompts(args.prompts)
    elif batch and not given:
        prompts = None  # from the manifest or the label maps
    else:
        if not given:
            raise ValueError(
                "no prompt: give --point X Y (and --negative X Y), --box X0 Y0 X1 Y1, --text, or a --prompts "
                "file."
            )
        points = [list(p) for p in args.point] + [list(p) for p in args.negative]
        labels = [1] * len(args.point) + [0] * len(args.negative)
        prompts = [
            Prompt(
                points=points or None, labels=labels or None, box=args.box, slice=args.slice,
                propagate=args.propagate, text=args.text, name=args.name,
            )
        ]  # fmt: skip
    if batch:
        if args.prompt_frame != "display":
            raise ValueError(
                "--prompt-frame voxel is for one volume at a time (voxel indices belong to one input's grid)."
            )
        return _predict_many(args, prompts)
    if args.prompts_from_labels or args.remap_labels or args.dicom_labels:
        raise ValueError(
            "--prompts-from-labels, --remap-labels and --dicom-labels are for many inputs (a folder, a glob or a "
            "manifest)."
        )
    # None: prompts are display prompts; voxel prompts name the input's own slices, so its plane is theirs
    to_display = voxel_frame(args.input, args.prompt_frame, args.series, args.plane)
    plane = args.plane if to_display is None else to_display.plane
    if to_display is not None:
        prompts = [to_display.prompt(prompt) for prompt in prompts]
    # before the model loads
    check_prediction_request(
        args.input,
        args.output,
        prompts,
        args.save_probabilities,
        args.multimask,
        args.series,
        args.dicom_output,
        args.structure_files,
        args.volume_report,
    )
    if args.structure_files:
        check_structure_folder_output(args.output)
    extra = [path for path in (args.save_probabilities, args.volume_report) if path]
    check_new_outputs([args.output, *extra], args.overwrite)
    node = _sending_node(args)
    if node is not None and not is_dicom_output(args.output):
        raise ValueError(
            f"--send-to {node}: a DICOM node takes DICOM objects; {args.output} is not one. Name the output .dcm "
            "(a DICOM-SEG, or --dicom-output rtstruct) for a DICOM series, or leave --send-to out."
        )
    model, processor = load_for_inference(args.model)
    _say_precision_tip(args, model)
    summary = predict_file(
        model, args.input, args.output, prompts, window=processor.window, compile_encoder=args.compile,
        device=args.device, dtype=args.dtype, probabilities_path=args.save_probabilities,
        multimask=args.multimask, batch_size=args.batch_size, series=args.series,
        slice_spacing=processor.slice_spacing if args.resample_slices else None, plane=plane,
        trained_planes=processor.planes, dicom_output=args.dicom_output or "seg",
        structure_files=args.structure_files, channel=_channel(args, processor),
        volume_report=args.volume_report,
    )  # fmt: skip
    if "series" in summary:
        print(f"DICOM series {summary['series']}")
    if "channel" in summary:
        print(f"channel {summary['channel']} of the 4-D input")
    if summary.get("plane", "axial") != "axial":  # slice numbers and pixels below are that plane's
        print(f"{summary['plane']} slices (the plane the scan was acquired in; --plane chooses another)")
    if "resampled" in summary:
        print(f"{summary['resampled']} (its depth branch's training spacing); masks on the input's slices")
    # slices are printed in the frame the prompts were given in
    to_file = to_display.file_slice if to_display is not None else (lambda z: z)
    for mask in summary["masks"]:
        where = f" slice {to_file(mask['slice'])}" if "slice" in mask else ""
        if "slices" in mask:
            first, last = sorted(to_file(z) for z in mask["slices"])
            where += f" (propagated to slices {first}-{last})"
        size = (
            f"{mask['pixels']} voxels, {mask['volume_ml']:g} mL"
            if "volume_ml" in mask
            else f"{mask['pixels']} pixels"
        )
        print(f"label {mask['label']}{where}: {size}, predicted IoU {mask['score']:.3f}")
        if "scores" in mask:
            print(f"  three masks, predicted IoU {', '.join(f'{v:.3f}' for v in mask['scores'])}")
    from msa_hf.inference.dicom_outputs import DICOM_OUTPUT_NAMES

    as_dicom = f" ({DICOM_OUTPUT_NAMES[args.dicom_output or 'seg']})" if is_dicom_output(args.output) else ""
    if "structure_files" in summary:
        files = ", ".join(summary["structure_files"].values())
        print(f"written: {summary['output']} (one mask per structure: {files})")
    else:
        print(f"written: {summary['output']}{as_dicom}")
    if "codes" in summary:  # what a viewer or PACS shows and searches each structure as
        print("coded as (the DICOM standard's concept each name denotes):")
        for value, code in summary["codes"].items():
            print(f"  label {value}: {code}")
    if "volume_report" in summary:
        volumes = ", ".join(f"label {value} {ml:g} mL" for value, ml in summary["volumes_ml"].items())
        print(f"written: {summary['volume_report']} (a DICOM SR of the structures' volumes: {volumes})")
    if "probabilities" in summary:
        print(f"written: {summary['probabilities']} (probabilities)")
    if node is not None:
        reports = [Path(summary["volume_report"])] if "volume_report" in summary else []
        _send_written([Path(summary["output"]), *reports], node, args)
    return 0


def _channel(args: argparse.Namespace, processor: Any) -> ChannelChoice | None:
    """The channel to read of multi-channel inputs: `--channel`, else the one the model was trained on."""
    return ChannelChoice.parse(args.channel) if args.channel is not None else processor.channel_choice()


def _predict_many(args: argparse.Namespace, prompts: list | None) -> int:
    """`msa-hf predict MODEL SOURCE OUTPUT_DIR`: every input of SOURCE with one model load (shared out over
    the processes of an `accelerate launch`); exit status 1 when an input failed (the others are written)."""
    from msa_hf.data.structure_files import check_structure_folder_output
    from msa_hf.inference.batch import (
        LABEL_TABLE_FILE,
        SUMMARY_FILES,
        collect_items,
        named_label_table,
        run_batch,
        write_label_table,
    )
    from msa_hf.inference.loading import load_for_inference
    from msa_hf.inference.predictor import is_dicom_output
    from msa_hf.output_files import check_new_outputs

    items = collect_items(  # every input, output and prompt source is known before the model loads
        args.input, args.output, prompts, args.prompts_from_labels, args.save_probabilities, args.series,
        label_remap(args.remap_labels), args.dicom_output, args.dicom_labels, args.structure_files,
        args.volume_report,
    )  # fmt: skip
    summaries = [Path(args.output) / name for name in SUMMARY_FILES]
    table = named_label_table(items)  # the masks' values by the label objects' or structure files' names
    if table:
        summaries.append(Path(args.output) / LABEL_TABLE_FILE)
    written = [
        path
        for item in items
        for path in (item.output, item.probabilities, item.volume_report)
        if path is not None
    ]
    for item in items if args.structure_files else ():
        check_structure_folder_output(item.output)
    check_new_outputs([*written, *summaries], args.overwrite)
    node = _sending_node(args)
    if node is not None and not any(is_dicom_output(item.output) for item in items):
        raise ValueError(
            f"--send-to {node}: a DICOM node takes DICOM objects, and none of these inputs' masks is one; give "
            "--dicom-output seg or rtstruct for DICOM series, or leave --send-to out."
        )
    model, processor = load_for_inference(args.model)
    _say_precision_tip(args, model)
    slice_spacing = processor.slice_spacing if args.resample_slices else None
    if slice_spacing is not None:
        print(
            f"the model's depth branch was trained on slices {slice_spacing:g} mm apart: volumes at another "
            "spacing are resampled to it, their masks mapped back onto their own slices"
        )
    result = run_batch(
        model, items, args.output, window=processor.window, kind=args.prompt_kind, device=args.device,
        dtype=args.dtype, multimask=args.multimask, batch_size=args.batch_size, compile_encoder=args.compile,
        slice_spacing=slice_spacing, plane=args.plane, trained_planes=processor.planes,
        channel=_channel(args, processor),
    )  # fmt: skip
    if result is None:  # another process of a launch: the main one writes the summary
        return 0
    text, rows = result
    print(text)
    extra = ""
    if table:
        extra = f" --label-table {write_label_table(table, args.output)}"
    print(f"written: {args.output} (masks, summary.csv, summary.md{', labels.json' if table else ''})")
    if args.prompts_from_labels:  # the masks and their references: what scoring them takes
        print(
            "to score the masks against the label maps: "
            f"msa-hf score {args.output} {args.prompts_from_labels}{extra}"
        )
    dicom = [Path(row["output"]) for row in rows if row["status"] == "ok" and is_dicom_output(row["output"])]
    reports = {item.output: item.volume_report for item in items if item.volume_report is not None}
    reported = [reports[path] for path in dicom if path in reports]  # of the segmentations written
    if reported:
        print(
            f"written: {len(reported)} volume report(s) in {args.volume_report} (<name>_volumes.dcm, DICOM SR)"
        )
    dicom += reported
    if node is not None and dicom:  # the inputs that failed have nothing to send; they are in the summary
        _send_written(dicom, node, args)
    return 1 if any(row["status"] != "ok" for row in rows) else 0


def _add_resample_slices_argument(parser: argparse.ArgumentParser, shown: str, back: str) -> None:
    """`--resample-slices/--no-resample-slices`: a depth-branch model sees `shown` (a volume, each case) at its
    training slice spacing, and the masks come `back` (where they go)."""
    parser.add_argument(
        "--resample-slices", action=argparse.BooleanOptionalAction, default=True,
        help=f"a depth-branch model trained on volumes at one slice spacing (its processor records it): show it "
             f"{shown} at another spacing resampled along the slice axis to that spacing, the masks mapped back "
             f"{back} (default: on; --no-resample-slices shows it the slices as they are)",
    )  # fmt: skip


def _say_precision_tip(args: argparse.Namespace, model: Any) -> None:
    """On stderr, once: `cpu_precision_tip` for this command's --device, --dtype and model."""
    from msa_hf.inference.placement import cpu_precision_tip

    tip = cpu_precision_tip(args.device, args.dtype, model)
    if tip:
        print(f"note: {tip}", file=sys.stderr)


def _add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None,
        help="torch.compile the image encoder; its first call waits for the compilation (default: on a GPU "
             "when the job encodes enough images or slices to repay it, several thousand; off on the CPU). "
             "Needs torch 2.7 or newer",
    )  # fmt: skip
    parser.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda when a GPU is visible, else cpu)"
    )
    parser.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16", "float16"],
        help="image encoder precision (default: bfloat16 autocast on CUDA, float32 on the CPU; bfloat16 also "
             "pays on a CPU that computes it natively, Intel AMX or AVX512-BF16: about 2.3x faster there for "
             "a ViT-B or larger)",
    )  # fmt: skip
