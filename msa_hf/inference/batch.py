# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Batch inference: `msa-hf predict MODEL SOURCE OUTPUT_DIR` over many inputs with one model load.

SOURCE is a folder of images or volumes, a glob (`"scans/*.nii.gz"`), or a manifest: a CSV with an `input`
column, or a JSON list of objects, each naming an input and optionally its `prompts` (a prompts file, or the
prompts themselves in JSON), a reference `labels` map to take prompts from, an `output` name and the `series`
of a DICOM folder that holds several (`msa_hf.data.dicom_stacks`). Relative
paths in a manifest are read from the manifest's folder.

Prompts come from the manifest row, from the command line (the same prompts for every input), or from a
reference label map (`prompts_from_label_map`: a box or a click per structure, per slice of a volume, with the
structure's own label value in the output), which is how a test set is re-segmented for scoring.

Each input is written as `OUTPUT_DIR/<name>` (its mask) whole or not at all; an input that fails is reported
in the summary and skipped, the rest are written. Under `accelerate launch`, the inputs are shared out across
the processes and one summary (`summary.csv`, `summary.md`) is written by the main one.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from msa_hf.data.channels import ChannelChoice, choose_channel_file
from msa_hf.data.sources import CaseFiles
from msa_hf.inference.image_encoding import encode_pictures, image_to_pixel_values
from msa_hf.inference.placement import compile_by_default, resolve_placement
from msa_hf.inference.predictor import (
    Prompt,
    SegmentationPredictor,
    check_prediction_request,
    input_kind,
    predict_file,
    read_picture,
    read_prompts,
    segment_picture,
)

PromptKind = Literal["box", "click"]
MANIFEST_SUFFIXES = (".csv", ".json")
MANIFEST_KEYS = ("input", "prompts", "labels", "output", "series")
SUMMARY_FILES = ("summary.csv", "summary.md")  # written into the output folder beside the masks
# the names of the masks' values, beside them, where prompts came from DICOM label objects or structure files
LABEL_TABLE_FILE = "labels.json"
SUMMARY_COLUMNS = (
    "input",
    "output",
    "status",
    "masks",
    "pixels",
    "volume_ml",
    "structures_ml",
    "plane",
    "mean_score",
    "seconds",
    "process",
    "warnings",
    "error",
)


@dataclass
class BatchItem:
    """One input of a batch: where it is, where its mask goes, and where its prompts come from (`prompts`,
    else `labels`, a reference label map on the input's grid); `probabilities` is its probability file."""

    input: Path
    output: Path
    prompts: list[Prompt] | None = None
    labels: Path | None = None
    probabilities: Path | None = None
    series: str | None = None  # the stack of a DICOM folder that holds several (`msa_hf.data.dicom_stacks`)
    label_remap: dict[int, int] | None = None  # how `labels` codes its values (`prepare --remap-labels`)
    dicom_output: str = "seg"  # what a `.dcm` output is written as (`dicom_outputs.DICOM_OUTPUTS`)
    # `labels` a DICOM label object or a folder of structure files: its structures valued by name, alike in every
    # case (`collect_items`)
    label_values: dict[str, int] | None = None
    structure_files: bool = False  # `output` a folder of one mask per structure (`predict_file`)
    # a case with one image file per channel (BraTS's sequences): `input` is read as the file of the run's
    # channel (`channels.choose_channel_file`), its first file until then
    channel_case: CaseFiles | None = None
    # prompted from `labels`: whether it names its structures, and the regions of a region-based table beside
    # it (`_label_regions`, read once)
    label_regions: tuple[bool, dict[int, tuple[int, ...]]] | None = None
    volume_report: Path | None = None  # the DICOM SR of the structures' volumes beside a DICOM-SEG output


def is_glob(source: str) -> bool:
    """Whether `source` is a glob pattern (`"scans/*.nii.gz"`) rather than a path."""
    return any(character in source for character in "*?[")


def _supported_files(folder: Path) -> list[Path]:
    from msa_hf.data.image_files import is_image_file
    from msa_hf.data.sources import visible_files
    from msa_hf.data.volumes import is_volume_file

    return [p for p in visible_files(folder) if is_volume_file(p) or is_image_file(p)]


def is_batch_source(source: str | Path, labels_dir: str | Path | None = None) -> bool:
    """Whether `source` names many inputs: a glob, a `.csv`/`.json` manifest, or a folder holding images or
    volume files (NIfTI, NRRD, MetaImage; a folder of DICOM files is one series, a single input); or, with `labels_dir` the same
    folder, a DICOM download of one folder per patient whose label objects give the prompts
    (`collect_items` reads which)."""
    source = str(source)
    if is_glob(source) and not Path(source).exists():
        return True
    path = Path(source)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return True
    if not path.is_dir():
        return False
    same_folder = labels_dir is not None and Path(labels_dir).resolve() == path.resolve()
    if same_folder and any(child.is_dir() for child in path.iterdir()):  # a download of patient folders
        return True
    return bool(_supported_files(path))


def output_name(
    input_path: Path, dicom_output: str | None = None, label_map: bool = True, stem: str | None = None
) -> str:
    """The mask's file name for an input: a volume file -> `<name>` in its own format (`volume_output_suffix`:
    `.nii.gz`, `.mha`, and `.seg.nrrd`, a 3D Slicer segmentation, unless the mask is no `label_map` of named
    structures but regions painted by value: `.nrrd`); a DICOM series or an enhanced multi-frame DICOM file ->
    `<name>.nii.gz`, or with `dicom_output` (a DICOM object to write, `dicom_outputs`) `<name>.dcm`; images ->
    `.png`. `<name>` is the input's own, or `stem` (a case folder's image file is named for its case)."""
    from msa_hf.data.volumes import (
        is_enhanced_dicom_file,
        is_volume_file,
        volume_file_stem,
        volume_output_suffix,
    )

    suffix = ".dcm" if dicom_output else ".nii.gz"
    if is_volume_file(input_path):
        return f"{stem or volume_file_stem(input_path)}{volume_output_suffix(input_path, label_map)}"
    if input_path.is_dir():
        return f"{stem or input_path.name}{suffix}"
    if is_enhanced_dicom_file(input_path):
        return f"{stem or input_path.stem}{suffix}"
    return f"{stem or input_path.stem}.png"


PROBABILITIES_SUFFIX = "_probabilities"  # `case_probabilities.nii.gz` beside `case.nii.gz`


def _probabilities_name(mask_name: str) -> str:
    """The probabilities' file name beside a mask: a volume's in the mask's format (a 3D Slicer segmentation's,
    `case.seg.nrrd`, as plain NRRD: `case_probabilities.nrrd`), an image's as TIFF."""
    from msa_hf.data.slicer_segmentations import SLICER_SEGMENTATION_SUFFIX, is_slicer_segmentation_path
    from msa_hf.data.volumes import is_volume_file, volume_file_stem, volume_file_suffix

    if is_slicer_segmentation_path(mask_name):
        return f"{mask_name[: -len(SLICER_SEGMENTATION_SUFFIX)]}{PROBABILITIES_SUFFIX}.nrrd"
    if is_volume_file(mask_name):
        return f"{volume_file_stem(mask_name)}{PROBABILITIES_SUFFIX}{volume_file_suffix(mask_name)}"
    return f"{Path(mask_name).stem}{PROBABILITIES_SUFFIX}.tif"


def is_probabilities_file(path: str | Path) -> bool:
    """Whether `path` is named as `predict` names the probabilities it writes beside many masks."""
    from msa_hf.data.volumes import is_volume_file, volume_file_stem

    stem = volume_file_stem(path) if is_volume_file(path) else Path(path).stem
    return stem.endswith(PROBABILITIES_SUFFIX) and (is_volume_file(path) or Path(path).suffix == ".tif")


def _manifest_rows(manifest: Path) -> list[dict[str, Any]]:
    from msa_hf.data.sources import read_manifest

    rows = read_manifest(
        manifest,
        'rows with an "input" column (CSV) or a JSON list of objects like {"input": "case1.nii.gz", "prompts": '
        '"case1.json"}',
    )
    for index, row in enumerate(rows):
        unknown = sorted(set(row) - set(MANIFEST_KEYS))
        if unknown or not row.get("input"):
            raise ValueError(
                f"manifest {manifest}: row {index} {'has unknown columns ' + str(unknown) if unknown else 'names no input'}"
                f"; columns are {list(MANIFEST_KEYS)}, input required."
            )
    return rows


def _row_prompts(value: Any, base: Path, where: str) -> list[Prompt] | None:
    """A manifest row's `prompts`: empty, a JSON list inline, or a prompts file (relative to `base`)."""
    if value in (None, ""):
        return None
    if isinstance(value, str) and not value.lstrip().startswith("["):
        return read_prompts(base / value)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: prompts are not JSON ({error}).") from error
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: prompts must be a non-empty list or a prompts file.")
    prompts = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: prompt {index} is not an object.")
        try:
            prompts.append(Prompt(**entry))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: prompt {index}: {error}") from None
    return prompts


def collect_items(
    source: str | Path,
    output_dir: str | Path,
    prompts: list[Prompt] | None = None,
    labels_dir: str | Path | None = None,
    probabilities_dir: str | Path | None = None,
    series: str | None = None,
    label_remap: dict[int, int] | None = None,
    dicom_output: str | None = None,
    dicom_labels: str | None = None,
    structure_files: bool = False,
    volume_reports_dir: str | Path | None = None,
) -> list[BatchItem]:
    """The inputs `source` names (see the module docstring), each with its output path in `output_dir` and its
    prompts: the manifest row's, else `prompts` (the same for every input), else its label map in `labels_dir`
    (`LabelIndex`: the same file name, or the name they share, as `msa-hf prepare` pairs them). A DICOM folder
    (or an enhanced multi-frame file) reads the stack its manifest row's `series` names, else `series` (the same
    for every input), else, with a DICOM-SEG label map, the one it was drawn on. With `dicom_output`
    (`dicom_outputs.DICOM_OUTPUTS`), a DICOM input's mask is that DICOM object, `<name>.dcm`, as is a manifest
    row's `.dcm` output (a DICOM-SEG without it); other inputs' masks stay NIfTI or PNG. With `structure_files`,
    each input's output is a folder of one mask per structure, named as its mask would be without the suffix
    (or as the manifest row's output says). Raises
    `ValueError` before anything runs when no input is found, when an input has no prompt source (no label
    map in `labels_dir` included), or when two inputs would write the same output. `label_remap` reads the
    label maps' values as `prepare --remap-labels` does.

    `labels_dir` may be `source` itself where that is a DICOM download of one folder per patient
    (`sources.dicom_study_cases`): each patient folder is an input, prompted from the label object inside it
    (`dicom_labels`, "seg" or "rtstruct", choosing where a folder holds both) and read on the series that
    object was drawn on; its mask is `<patient>.nii.gz` (or `.dcm`). Or a dataset that keeps each case's label map beside its
    image (`sources.labelled_case_folders`: TotalSegmentator's structure folders, KiTS's case folders, LiTS's
    `volume-N` beside `segmentation-N`, BraTS's sequences beside their `_seg`, whose sequence of the run's
    channel is read: `predict_batch`):
    each labelled case's image is an input prompted from its label map, its mask `<case>.nii.gz` (a folder
    `<case>` with `structure_files`).

    With `volume_reports_dir`, each input whose mask is a DICOM-SEG also gets a report of its structures'
    volumes (`volume_report`), `<name>_volumes.dcm` there; refused where no input's mask is one."""
    from msa_hf.data.dicom_seg_labels import is_dicom_label_file, seg_series, segment_label_values
    from msa_hf.data.label_tables import check_label_remap
    from msa_hf.data.sources import (
        PAIRING_RULE,
        LabelIndex,
        dicom_study_cases,
        labelled_case_folders,
        listed_names,
    )
    from msa_hf.data.volumes import (
        VOLUME_FILE_NAMES,
        is_dicom_stack_source,
        is_volume_file,
        volume_file_stem,
    )

    label_remap = check_label_remap(label_remap or {})
    source, output_dir = str(source), Path(output_dir)
    if structure_files and dicom_output is not None:
        raise ValueError(
            f"--dicom-output {dicom_output} with --structure-files: a DICOM-SEG or RT structure set keeps each "
            "structure whole already; one file per structure is for NIfTI and PNG masks. Give one of them."
        )
    if output_dir.is_file():
        raise ValueError(f"output {output_dir}: a batch writes a folder of masks; this is a file.")
    labels_dir = Path(labels_dir) if labels_dir else None
    if labels_dir is not None and not labels_dir.is_dir():
        raise ValueError(f"--prompts-from-labels {labels_dir}: not a folder of label maps.")
    same_folder = (
        labels_dir is not None and Path(source).is_dir() and labels_dir.resolve() == Path(source).resolve()
    )
    # a DICOM download of one folder per patient: each patient is an input, prompted from the label object
    # inside its folder, read on the series that object was drawn on; or a dataset of one folder per case
    # holding its image and its structure files (TotalSegmentator's)
    studies = dicom_study_cases(Path(source), dicom_labels) if same_folder else []
    if same_folder and not studies and dicom_labels is None:
        studies = labelled_case_folders(Path(source))
    if dicom_labels is not None and not studies:
        raise ValueError(
            f"--dicom-labels {dicom_labels}: for --prompts-from-labels on a DICOM download of patient folders "
            "(the input folder itself); leave it out here."
        )
    if same_folder and not studies:
        raise ValueError(
            f"--prompts-from-labels {labels_dir}: that is the folder of the inputs; every file in it would be "
            "segmented, label maps included. Keep the label maps in a folder of their own (or give a DICOM "
            "download of one folder per patient, each holding its series and the DICOM-SEG or RT structure set "
            "drawn on one, or a dataset that keeps each case's label map beside its image: TotalSegmentator's "
            "structure folders, KiTS's case folders, LiTS's volume-N beside segmentation-N)."
        )
    problems = [case.problem for case in studies if case.problem]
    if problems:
        raise ValueError(f"--prompts-from-labels {labels_dir}: {' '.join(problems)}")
    if studies:
        labelled = [case for case in studies if case.label is not None]
        label_index = LabelIndex([case.label for case in labelled], [case.case_id for case in labelled])
    else:
        label_index = LabelIndex.in_folder(labels_dir) if labels_dir is not None else None
    unpaired: list[Path] = []  # inputs that take their prompts from the label folder and find no label map
    rows: list[dict[str, Any]]
    base = Path(".")
    if Path(source).suffix.lower() in MANIFEST_SUFFIXES:
        manifest = Path(source)
        if not manifest.is_file():
            raise ValueError(f"manifest {manifest}: no such file.")
        base = manifest.parent
        rows = _manifest_rows(manifest)
    else:
        if studies:
            found = [case.image for case in studies]
        elif is_glob(source):
            found = sorted(Path(p) for p in glob.glob(source))
        else:
            found = _supported_files(Path(source))
        if not found:
            raise ValueError(
                f"{source}: no images (PNG/JPEG/TIFF/BMP) or volumes ({VOLUME_FILE_NAMES}) found."
            )
        rows = [{"input": str(path)} for path in found]
        for row, case in zip(rows, studies, strict=False):  # a case folder's image file: named for the case
            if not case.image.is_dir() and case.label is not None:
                row["named_for_case"] = case.case_id  # its mask is named for the case, not for the image file
                row["labels"] = str(case.label)
            if len(case.channels) > 1:
                row["channel_case"] = case
    items = []
    for index, row in enumerate(rows):
        input_path = base / str(row["input"])
        where = f"input {index} ({input_path})"
        row_prompts = _row_prompts(row.get("prompts"), base, where)
        labels = base / str(row["labels"]) if row.get("labels") else None
        if labels is None and row_prompts is None and prompts is None and label_index is not None:
            labels = label_index.find(input_path)[0]
            if labels is None:
                unpaired.append(input_path)
                continue
        if row_prompts is None and prompts is None and labels is None:
            raise ValueError(
                f"{where}: no prompts. Give --box/--point/--prompts for every input, --prompts-from-labels DIR, "
                "or prompts/labels in the manifest."
            )
        # prompted from its label map: whether it names its structures, and a region-based table's regions
        label_regions = _label_regions(labels) if labels is not None and row_prompts is None else None
        # a region-based table's regions (whole tumour, core) are painted into one label map by value, not kept
        # whole as a Slicer segmentation's layers
        painted = label_regions is not None and bool(label_regions[1])
        default_name = output_name(
            input_path, dicom_output, label_map=not painted, stem=row.get("named_for_case")
        )
        # a folder of structure files is named for its input, without the mask's suffix (`.seg.nrrd` whole)
        folder = row.get("named_for_case") or volume_file_stem(
            input_path if is_volume_file(input_path) else Path(default_name)
        )
        name = str(row.get("output") or (folder if structure_files else default_name))
        output = output_dir / name
        # the command's series is for the DICOM folders and files among the inputs; a row's own for its input
        row_series = str(row["series"]) if row.get("series") not in (None, "") else None
        stacks = is_dicom_stack_source(input_path)
        row_series = row_series or (series if stacks else None)
        if row_series is None and labels is not None and stacks and is_dicom_label_file(labels):
            row_series = seg_series(labels, input_path)  # a study's series that its DICOM-SEG was drawn on
        items.append(
            BatchItem(
                input=input_path,
                output=output,
                prompts=row_prompts if row_prompts is not None else (prompts if labels is None else None),
                labels=labels,
                probabilities=Path(probabilities_dir)
                / _probabilities_name(default_name if structure_files else name)
                if probabilities_dir
                else None,
                series=row_series,
                label_remap=label_remap,
                dicom_output=dicom_output or "seg",
                structure_files=structure_files,
                channel_case=row.get("channel_case"),
                label_regions=label_regions,
            )
        )
    if dicom_output is not None and not any(is_dicom_stack_source(item.input) for item in items):
        from msa_hf.inference.dicom_outputs import DICOM_OUTPUT_NAMES, check_dicom_output

        raise ValueError(
            f"--dicom-output {dicom_output}: none of the inputs is a DICOM series, whose mask "
            f"{DICOM_OUTPUT_NAMES[check_dicom_output(dicom_output)]} would reference; leave it out."
        )
    if unpaired:
        raise ValueError(
            f"--prompts-from-labels {labels_dir}: no label map for {len(unpaired)} of {len(rows)} inputs "
            f"({listed_names(unpaired)}). {PAIRING_RULE} Give the other inputs as a glob, or name each input's label map in a "
            "manifest's labels column."
        )
    # prompted from label objects of named segments (DICOM's, 3D Slicer's): one value per structure name for all
    # of them (the objects' own segment or ROI numbers where they agree, else alphabetical), so a structure's
    # masks carry it in every case
    from_dicom = [item for item in items if item.label_regions is not None and item.label_regions[0]]
    if from_dicom:
        values, _ = segment_label_values([item.labels for item in from_dicom], None)
        for item in from_dicom:
            item.label_values = values
    # prompted from folders of one mask per structure: valued by the label table beside them, else by file name
    # across all of them, so a structure carries one value in every case
    from_folders = [
        item for item in items if item.prompts is None and item.labels is not None and item.labels.is_dir()
    ]
    if from_folders:
        from msa_hf.data.label_tables import label_folder_structures
        from msa_hf.data.structure_files import structure_label_values

        table = label_folder_structures(from_folders[0].labels.parent)[0] or None
        names, _ = structure_label_values([item.labels for item in from_folders], table)
        for item in from_folders:
            item.label_values = {name: value for value, name in names.items()}
    if volume_reports_dir is not None:
        _add_volume_reports(items, Path(volume_reports_dir))
    seen: dict[Path, Path] = {}
    for item in items:
        if item.output in seen:
            raise ValueError(
                f"{seen[item.output]} and {item.input} would both be written to {item.output}; give them "
                "different names (a manifest's output column)."
            )
        seen[item.output] = item.input
    return items


def prompts_from_label_map(
    labels_path: str | Path,
    kind: PromptKind,
    volume: bool,
    rng: np.random.Generator | None = None,
    image_path: str | Path | None = None,
    series: str | None = None,
    regions: Mapping[int, Sequence[int]] | None = None,
    label_remap: dict[int, int] | None = None,
    plane: str = "auto",
    seg_values: dict[str, int] | None = None,
    names: Mapping[int, str] | None = None,
    grid: tuple[np.ndarray, tuple[int, int, int]] | None = None,
) -> list[Prompt]:
    """One prompt per structure of a reference label map: its tight box (`kind="box"`) or one click on its
    most interior pixel (`"click"`), carrying the structure's label value. For a volume, one per structure and
    slice that shows it, in display-slice coordinates of `plane` as `msa-hf predict` cuts the volume
    (`planes.choose_plane`: the label map lies on its image's grid, so both choose alike); a volume's
    label map may be a DICOM-SEG or RT structure set drawn on the DICOM series `image_path` (its stack `series`;
    values: the segment or ROI numbers, or by name through `seg_values`), whose structures may overlap (each
    prompted on its own mask: `load_dicom_structures`). With `regions` (a region-based label table beside the
    labels: `{class id: label values}`), the structures are the regions, each prompted on the union of its
    values and written with the value that paints it into label space (`region_paint_values`).
    `label_remap` reads the label map's values as `prepare --remap-labels` does. `names` (`{label value, or
    a region's class id: name}`) names each structure's prompts (what a DICOM output or a structure file is
    called). A volume file's label map that lies on a part of its image's grid (a 3D Slicer segmentation
    cropped to its structures) is placed on the whole grid: `grid`, the image's RAS+ `(affine, (X, Y, Z))` where
    known (`check_label_map_grid`), else read from `image_path`'s headers."""
    from msa_hf.data.dicom_seg_labels import load_label_structures
    from msa_hf.data.image_files import read_mask
    from msa_hf.data.label_tables import remap_label_values, remap_structure_codes
    from msa_hf.data.planes import choose_plane, display_slices
    from msa_hf.data.tasks import region_paint_values, structure_mask
    from msa_hf.data.volumes import is_volume_file, load_volume, placed_on_grid, volume_grid
    from msa_hf.processing.prompts import box_from_mask, sample_point_prompt

    rng = rng or np.random.default_rng(0)
    labels_path = Path(labels_path)
    if not labels_path.exists():
        raise ValueError(f"label map {labels_path}: no such file.")
    if labels_path.is_dir():  # one mask file per structure, valued by name: each structure whole
        from msa_hf.data.structure_files import read_structure_folder

        if regions:
            raise ValueError(
                f"label map {labels_path}: a folder of one mask per structure, and a region-based label table "
                "describes label values; give a table of one value per structure name."
            )
        by_value = {value: name for name, value in (seg_values or {}).items()} or dict(names or {})
        label, codes = read_structure_folder(labels_path, by_value)
        array = label.array if volume else label
        regions = remap_structure_codes(codes, label_remap or {})
        slices = display_slices(array, choose_plane(label.spacing, plane)) if volume else array[None]
    elif volume:
        label, codes = (
            (load_volume(labels_path, is_label=True), None)
            if image_path is None
            else load_label_structures(labels_path, image_path, seg_values, series)
        )
        if image_path is not None and is_volume_file(labels_path):  # cropped to its structures: placed
            grid_affine, grid_shape = grid or volume_grid(image_path, series)
            if label.array.shape != grid_shape:
                label = placed_on_grid(label, grid_shape, grid_affine) or label
        if codes is not None:  # overlapping structures: each is the region of its codes
            if regions:
                raise ValueError(
                    f"label map {labels_path}: its structures overlap, and a region-based label table describes "
                    "label values; give a table of one value per structure name."
                )
            regions = remap_structure_codes(codes, label_remap or {})
        array = label.array if codes is not None else remap_label_values(label.array, label_remap or {})
        slices = display_slices(array, choose_plane(label.spacing, plane))
    else:  # as msa-hf prepare reads masks: {0, 255} is one structure, other values are labels
        slices, codes = read_mask(labels_path, remap=label_remap)[None], None
    prompts = []
    values = [int(v) for v in np.unique(slices) if v != 0]
    if not values:
        raise ValueError(f"label map {labels_path}: no structure in it (all zero).")
    # a region-based table's regions are written by the values that paint them; overlapping structures by their own
    painted = region_paint_values(regions) if regions and codes is None else {}
    for structure in sorted(regions) if regions else values:
        value, name = painted.get(structure, structure), (names or {}).get(structure)
        for index, labelled in enumerate(slices):
            mask = structure_mask(labelled, structure, regions)
            if not mask.any():
                continue
            where = {"slice": index} if volume else {}
            where |= {"name": name} if name else {}
            if kind == "box":
                prompts.append(Prompt(box=[float(v) for v in box_from_mask(mask)], value=value, **where))
            else:
                click = sample_point_prompt(mask, 1, 0, rng, "interior")
                prompts.append(Prompt(points=click.points.tolist(), labels=[1], value=value, **where))
    return prompts


def _encoded_images(path: Path, series: str | None = None) -> int:
    """How many pictures predicting `path` encodes at most: its slices for a volume, else one (from headers;
    an unreadable input counts one and fails later, in its own row)."""
    try:
        shape = _grid_shape(Path(path), series)
    except Exception:  # noqa: BLE001 - only an estimate for the compile decision
        return 1
    return int(shape[2]) if len(shape) == 3 else 1


def _grid_shape(path: Path, series: str | None = None) -> tuple[int, ...]:
    """The RAS+ shape of a volume (NIfTI, a DICOM series or an enhanced multi-frame file), or the (height,
    width) of an image, from headers: no pixel is decoded (the input is read once, by `predict_file`)."""
    from PIL import Image

    from msa_hf.data.volumes import is_dicom_stack_source, is_volume_file, volume_grid

    if is_dicom_stack_source(path) or is_volume_file(path):
        return volume_grid(path, series)[1]
    with Image.open(path) as image:
        return (image.height, image.width)


def named_label_table(items: list[BatchItem]) -> dict[int, str] | None:
    """`{label value: structure name}` of the masks prompted from DICOM label objects or folders of structure
    files (`label_values`, set by `collect_items`): what `msa-hf score --label-table` needs to pair the masks'
    values with the objects' or files' names. None where no item is prompted so."""
    values = next((item.label_values for item in items if item.label_values is not None), None)
    return (
        None
        if values is None
        else {value: name for name, value in sorted(values.items(), key=lambda kv: kv[1])}
    )


def write_label_table(table: dict[int, str], output_dir: str | Path) -> Path:
    """`table` as `output_dir/labels.json` (`{"1": "GTV-1"}`, the form `msa-hf score --label-table` reads),
    written whole or not at all."""
    from msa_hf.output_files import atomic_file

    path = Path(output_dir) / LABEL_TABLE_FILE
    with atomic_file(path) as staging:
        Path(staging).write_text(json.dumps({str(value): name for value, name in table.items()}, indent=1))
    return path


def check_label_map_grid(item: BatchItem) -> tuple[np.ndarray, tuple[int, int, int]] | None:
    """A reference label map must be on its input's grid (volumes) or of its size (images); a volume file
    may also lie on a part of its volume's grid (`volumes.sub_grid_offset`: a 3D Slicer segmentation cropped to
    its structures). Returns the input's RAS+ grid `(affine, (X, Y, Z))` where a label map file of a volume
    was checked against it (what `prompts_from_label_map` places it on), else None. From headers alone."""
    if item.labels is None:
        return None
    if not item.labels.exists():
        raise ValueError(f"label map {item.labels}: no such file.")
    from msa_hf.data.dicom_seg_labels import is_dicom_label_file
    from msa_hf.data.structure_files import structure_files
    from msa_hf.data.volumes import is_dicom_stack_source, is_volume_file, sub_grid_offset, volume_grid

    if is_dicom_label_file(
        item.labels
    ):  # placed by the images it references: read onto the series, or refused
        return None
    if is_volume_file(item.labels) and (is_volume_file(item.input) or is_dicom_stack_source(item.input)):
        (affine, labels), grid = volume_grid(item.labels), volume_grid(item.input, item.series)
        if labels == grid[1] or sub_grid_offset(affine, labels, *grid) is not None:
            return grid
        image = grid[1]
    else:
        # a folder of one mask per structure: its files' grid (each checked against the first where read)
        first = structure_files(item.labels)[:1] if item.labels.is_dir() else [item.labels]
        if not first:
            raise ValueError(f"label map {item.labels}: a folder, and not one of structure masks.")
        image, labels = _grid_shape(item.input, item.series), _grid_shape(first[0])
        if image == labels:
            return None
    raise ValueError(f"label map {item.labels} has shape {labels}, its input {item.input} {image}.")


def predict_batch(
    model: Any,
    items: list[BatchItem],
    window: str | tuple[float, float] | None = None,
    kind: PromptKind = "box",
    device: Any = None,
    dtype: Any = None,
    multimask: bool = False,
    show_progress: bool = True,
    batch_size: int | None = None,
    compile_encoder: bool | None = None,
    slice_spacing: float | None = None,
    plane: str = "auto",
    trained_planes: tuple[str, ...] | None = None,
    channel: ChannelChoice | None = None,
) -> list[dict[str, Any]]:
    """Segment every item with the already-loaded `model`; returns one summary row per item (`SUMMARY_COLUMNS`).
    A failing item gets status "failed" and its error, and the others go on.

    Images (and single DICOM images) are read `batch_size` at a time (default 8) and encoded together in
    one encoder call, then each is decoded and written; a volume encodes its own slices in groups
    (`VolumePredictor.encoding_batch`, with `batch_size` when given). `compile_encoder` compiles the image
    encoder once for all inputs (None: where it pays, `compile_by_default`, counting each image and each
    volume slice). `slice_spacing`: a depth-branch model's training slice spacing, to which volumes are
    resampled, `plane` the plane volumes are cut into and `trained_planes` the model's (`predict_file`'s).
    `channel`: the channel read of multi-channel inputs, 4-D files and cases with one file per channel (the
    model's, `MsaProcessor.channel_choice`, unless told otherwise); an input of several channels without one
    fails, saying how to give it."""
    from tqdm.auto import tqdm

    compile_encoder = compile_by_default(
        compile_encoder,
        resolve_placement(device, dtype),
        lambda: sum(_encoded_images(i.input, i.series) for i in items),
    )
    # one placement (and one compilation, in place) for all inputs
    predictor = SegmentationPredictor(model, window, compile_encoder, device, dtype)
    group_size = batch_size or DEFAULT_PICTURE_BATCH
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(items), desc="predict", disable=not show_progress) as progress:
        for start in range(0, len(items), group_size):
            group = items[start : start + group_size]
            pictures: list[_Picture] = []
            for item in group:
                row = _row(item)
                rows.append(row)
                started = time.time()
                try:
                    if item.channel_case is not None:  # the file of the channel: the row names it
                        chosen = choose_channel_file(item.channel_case, channel)[0]
                        item = dataclasses.replace(item, input=chosen, channel_case=None)
                        row["input"] = str(chosen)
                    prompts = _item_prompts(item, kind, plane)
                    input_kind = check_prediction_request(
                        item.input,
                        item.output,
                        prompts,
                        item.probabilities,
                        multimask,
                        item.series,
                        item.dicom_output,
                        item.structure_files,
                        item.volume_report,
                    )
                    if input_kind == "volume":
                        summary = predict_file(
                            model, item.input, item.output, prompts, window=window, device=device,
                            dtype=dtype, probabilities_path=item.probabilities, multimask=multimask,
                            batch_size=batch_size, series=item.series, slice_spacing=slice_spacing, plane=plane,
                            trained_planes=trained_planes, dicom_output=item.dicom_output,
                            structure_files=item.structure_files, channel=channel,
                            volume_report=item.volume_report,
                        )  # fmt: skip
                        _succeeded(row, summary, time.time() - started)
                        progress.update()
                    else:
                        image, modality = read_picture(item.input, input_kind)
                        pixels = image_to_pixel_values(image, predictor.image_size, modality, window)
                        seconds = time.time() - started
                        pictures.append(_Picture(item, row, prompts, image.shape[:2], pixels, seconds))
                except Exception as error:  # reported and skipped: one bad input must not lose the others
                    _failed(row, error, time.time() - started)
                    progress.update()
            for picture in _encoded(predictor, pictures, group_size):
                started = time.time()
                try:
                    if isinstance(picture.embedding, Exception):
                        raise picture.embedding
                    predictor.set_image_embedding(picture.embedding, picture.size)
                    summary = segment_picture(
                        predictor, picture.item.input, picture.item.output, picture.prompts,
                        picture.item.probabilities, multimask, picture.item.structure_files,
                    )  # fmt: skip
                    _succeeded(picture.row, summary, picture.seconds + time.time() - started)
                except Exception as error:
                    _failed(picture.row, error, picture.seconds + time.time() - started)
                progress.update()
    return rows


DEFAULT_PICTURE_BATCH = (
    8  # images per encoder call in a batch run (about 0.1 GB of activations each at 1024 px)
)


@dataclass
class _Picture:
    """A 2-D input read and ready to encode: its item, summary row, prompts, `(H, W)` and `(3, S, S)` pixels;
    `seconds` adds up its own time (reading, then its share of the group's encoding)."""

    item: BatchItem
    row: dict[str, Any]
    prompts: list[Prompt]
    size: tuple[int, int]
    pixel_values: Any
    seconds: float
    embedding: Any = None  # `(1, C, h, w)`, or the exception its encoding raised


def _encoded(predictor: SegmentationPredictor, pictures: list[_Picture], batch_size: int) -> list[_Picture]:
    """`pictures` with their embeddings, all in one encoder call; if that call fails, each picture is encoded
    alone so that only the one that fails is lost."""
    import torch

    if not pictures:
        return pictures
    started = time.time()
    try:
        stacked = torch.stack([picture.pixel_values for picture in pictures])
        embeddings = encode_pictures(predictor.model, stacked, batch_size, predictor.placement)
        for picture, embedding in zip(pictures, embeddings, strict=True):
            picture.embedding = embedding[None]
    except Exception:
        for picture in pictures:
            try:
                picture.embedding = encode_pictures(
                    predictor.model, picture.pixel_values[None], 1, predictor.placement
                )
            except Exception as error:
                picture.embedding = error
    share = (time.time() - started) / len(pictures)
    for picture in pictures:
        picture.seconds += share
        picture.pixel_values = None  # the pixels are no longer needed
    return pictures


def _item_prompts(item: BatchItem, kind: PromptKind, plane: str = "auto") -> list[Prompt]:
    """The item's prompts: its own, else taken from its reference label map."""
    if item.prompts is not None:
        return item.prompts
    grid = check_label_map_grid(item)
    volume = input_kind(item.input) == "volume"  # as predict_file reads the input
    named_segments, regions = item.label_regions or _label_regions(item.labels)
    return prompts_from_label_map(
        item.labels,
        kind,
        volume,
        image_path=item.input if volume else None,
        series=item.series,
        grid=grid,
        regions=regions,
        label_remap=item.label_remap,
        plane=plane,
        seg_values=item.label_values,
        names=_label_map_names(item, named_segments),
    )


def _label_regions(labels: Path) -> tuple[bool, dict[int, tuple[int, ...]]]:
    """Whether a reference label map's structures are named segments, read by name
    (`dicom_seg_labels.is_named_label_file`: a DICOM label object, a 3D Slicer segmentation), and else the
    regions of a region-based label table beside the label maps (`{}` for any other table: each label value
    is a structure, as without one)."""
    from msa_hf.data.dicom_seg_labels import is_dicom_label_file, is_named_label_file
    from msa_hf.data.label_tables import regions_beside

    regions = {} if is_dicom_label_file(labels) else regions_beside(labels)
    named = is_named_label_file(labels, region_based=bool(regions))
    return named, {} if named else regions


def _add_volume_reports(items: list[BatchItem], folder: Path) -> None:
    """Give each item whose mask is a DICOM-SEG its volume report, `<name>_volumes.dcm` in `folder`.

    Raises:
        ValueError: `folder` named as a file, or no item's mask a DICOM-SEG.
    """
    from msa_hf.inference.predictor import is_dicom_output

    if folder.suffix.lower() == ".dcm" or folder.is_file():
        raise ValueError(
            f"--volume-report {folder}: for many inputs, a folder to write each DICOM-SEG's volume report in "
            "(<name>_volumes.dcm)."
        )
    segmentations = [
        item
        for item in items
        if is_dicom_output(item.output) and item.dicom_output == "seg" and not item.structure_files
    ]
    if not segmentations:
        raise ValueError(
            f"--volume-report {folder}: a volume report references a DICOM-SEG's segments, and none of these "
            "inputs' masks is one; give DICOM series with --dicom-output seg, or leave it out."
        )
    for item in segmentations:
        item.volume_report = folder / f"{item.output.stem}_volumes.dcm"


def _label_map_names(item: BatchItem, named_segments: bool) -> dict[int, str]:
    """The names of the structures `item`'s label map draws (`{label value, or region class id: name}`):
    a label object's of named segments (DICOM's, 3D Slicer's) or a structure folder's by the values its names
    were given, else the label table beside the label maps; `{}` without either, or where the table cannot
    be read (the masks are then named by value; a table that matters is read, and its faults said, where it
    is used)."""
    from msa_hf.data.label_tables import label_folder_structures

    if named_segments or item.labels.is_dir():  # valued by name in `collect_items`
        return {value: name for name, value in (item.label_values or {}).items()}
    try:
        return label_folder_structures(item.labels)[0]
    except (OSError, ValueError):  # `LabelTableError` too
        return {}


def _row(item: BatchItem) -> dict[str, Any]:
    return {"input": str(item.input), "output": str(item.output)}


def _succeeded(row: dict[str, Any], summary: dict[str, Any], seconds: float) -> None:
    masks = summary["masks"]
    row.update(
        status="ok", masks=len(masks), pixels=sum(m["pixels"] for m in masks),
        # a volume's masks in mL (what a volumetry report reads); pictures have no voxel size
        volume_ml=round(sum(m["volume_ml"] for m in masks), 4) if masks and "volume_ml" in masks[0] else "",
        # each structure's whole volume as written (`label value=mL`), where its masks overlap or add up
        structures_ml=" ".join(f"{value}={ml:g}" for value, ml in summary.get("volumes_ml", {}).items()),
        plane=summary.get("plane", ""),  # the plane a volume was cut into (its slice numbers are that plane's)
        mean_score=round(float(np.mean([m["score"] for m in masks])), 4), error="", seconds=round(seconds, 2),
        # what the input's summary noted (pixels far from square, an unseen plane, masks painted over others)
        warnings=" ".join(summary.get("warnings", [])),
    )  # fmt: skip


def _failed(row: dict[str, Any], error: Exception, seconds: float) -> None:
    row.update(
        status="failed", masks=0, pixels=0, volume_ml="", structures_ml="", plane="", mean_score="", error=f"{type(error).__name__}: {error}",
        seconds=round(seconds, 2), warnings="",
    )  # fmt: skip


def write_summary(rows: list[dict[str, Any]], output_dir: str | Path) -> str:
    """`summary.csv` and `summary.md` in `output_dir` (one row per input, in input order); returns the Markdown.

    The Markdown gives a volume's structures as written (`structures_ml`), what a reader takes its mL for;
    `summary.csv` also has the sum of its masks' volumes (`volume_ml`), which counts twice where two prompts'
    masks overlap.
    """
    from msa_hf.output_files import atomic_file

    output_dir = Path(output_dir)
    with (
        atomic_file(output_dir / SUMMARY_FILES[0]) as staging,
        staging.open("w", newline="", encoding="utf-8") as handle,
    ):
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    failed = sum(row["status"] != "ok" for row in rows)
    noted = sum(bool(row.get("warnings")) for row in rows)
    lines = [
        f"{len(rows) - failed} of {len(rows)} inputs segmented"
        + (f", {failed} failed" if failed else "")
        + (f"; {noted} with warnings (summary.csv's warnings column)" if noted else "")
        + ".",
        "",
        "| input | output | status | masks | pixels | mL per structure | plane | mean score | seconds |",
        "|---|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        status = row["status"] if row["status"] == "ok" else f"failed: {row['error']}"
        output = Path(row["output"]).name if row["status"] == "ok" else "–"
        lines.append(
            f"| {Path(row['input']).name} | {output} | {status.replace('|', '/')} | {row['masks']} | {row['pixels']} "
            f"| {row['structures_ml']} | {row['plane']} | {row['mean_score']} | {row['seconds']} |"
        )
    text = "\n".join(lines)
    with atomic_file(output_dir / SUMMARY_FILES[1]) as staging:
        staging.write_text(text + "\n", encoding="utf-8")
    return text


def run_batch(
    model: Any,
    items: list[BatchItem],
    output_dir: str | Path,
    window: str | tuple[float, float] | None = None,
    kind: PromptKind = "box",
    device: Any = None,
    dtype: Any = None,
    multimask: bool = False,
    batch_size: int | None = None,
    compile_encoder: bool | None = None,
    slice_spacing: float | None = None,
    plane: str = "auto",
    trained_planes: tuple[str, ...] | None = None,
    channel: ChannelChoice | None = None,
) -> tuple[str, list[dict[str, Any]]] | None:
    """`predict_batch` shared out over the processes of an `accelerate launch` (input i goes to process
    i mod N, on that process's device unless `device` is given), then one summary written by the main process.
    Returns the summary's Markdown and rows on the main process, None on the others."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # as Accelerator does: a launch on CPUs (ACCELERATE_USE_CPU, no GPU, or --device cpu) joins its processes
    # over gloo; without the flag, each CPU process would take itself for the only one
    on_cpu = (
        parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available() or str(device) == "cpu"
    )
    state = PartialState(cpu=on_cpu)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # nothing is written until every process has looked at the outputs (msa-hf predict refuses existing ones
    # without --overwrite): a process that started later would otherwise find another's first mask
    state.wait_for_everyone()
    if device is None and state.num_processes > 1:
        device = state.device
    indices = list(range(state.process_index, len(items), state.num_processes))
    rows = predict_batch(
        model, [items[i] for i in indices], window, kind, device, dtype, multimask,
        show_progress=state.is_local_main_process, batch_size=batch_size, compile_encoder=compile_encoder,
        slice_spacing=slice_spacing, plane=plane, trained_planes=trained_planes, channel=channel,
    )  # fmt: skip
    for row in rows:
        row["process"] = state.process_index
    part = output_dir / f".summary-part-{state.process_index}.json"
    part.write_text(json.dumps(list(zip(indices, rows, strict=True))))
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    by_index: dict[int, dict[str, Any]] = {}
    for rank in range(state.num_processes):
        path = output_dir / f".summary-part-{rank}.json"
        by_index.update({index: row for index, row in json.loads(path.read_text())})
        path.unlink()
    ordered = [by_index[i] for i in range(len(items))]
    return write_summary(ordered, output_dir), ordered
