# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`prepare_dataset`: a folder of PNGs, NIfTI volumes or DICOM series -> a dataset directory.

The directory holds `data/{train,validation,test}-00000-of-00001.parquet` (per-slice rows, see
`slice_dataset.py`), `classes.json`, `prepare_report.json` and a dataset card `README.md` whose YAML
declares the splits, so `load_dataset(folder)`, `load_dataset("parquet", data_dir=folder + "/data")` and
`load_prepared(folder)` all read it, and `push_to_hub` publishes it as is.

Splits are drawn by case, never by slice: neighbouring slices are near-copies, and a slice split would
leak the test set into training.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from msa_hf.data.channels import (
    ChannelChoice,
    case_channel_names,
    channel_listing,
    choose_channel_file,
    choose_volume_channel,
)
from msa_hf.data.dicom_seg_labels import (
    is_dicom_label_file,
    load_label_volume,
    overlap_code,
    overlap_regions,
    seg_series,
    segment_label_values,
    segment_names,
)
from msa_hf.data.image_files import ImageReadError, read_image, read_mask
from msa_hf.data.itk_files import is_itk_file
from msa_hf.data.label_tables import (
    LabelTableError,
    check_label_remap,
    default_class_names,
    find_label_table,
    read_label_structures,
    remap_label_values,
)
from msa_hf.data.planes import (
    PLANE_CHOICES,
    check_plane,
    choose_plane,
    display_slices,
    pixel_note,
    plane_spacing,
)
from msa_hf.data.slice_dataset import SPLITS, SliceParquetWriter, slice_row, split_file
from msa_hf.data.sources import (
    PAIRING_RULE,
    CaseFiles,
    detect_source_kind,
    find_image_pairs,
    find_volume_pairs,
)
from msa_hf.data.split_files import cases_by_split, read_split_file
from msa_hf.data.structure_files import structure_label_values
from msa_hf.data.transforms import resample_to_spacing
from msa_hf.data.volumes import (
    Volume,
    VolumeReadError,
    guess_modality,
    is_dicom_stack_source,
    label_on_image_grid,
    load_volume,
)
from msa_hf.output_files import atomic_folder

logger = logging.getLogger(__name__)

CASE_ERRORS = (ImageReadError, VolumeReadError, LabelTableError, OSError)


@dataclass
class PrepareOptions:
    """How `prepare_dataset` reads a folder.

    Attributes:
        kind: "auto", "images" (2-D files) or "volumes" (NIfTI / DICOM).
        split: train/validation/test fractions of the cases.
        seed: the case shuffle before splitting.
        split_file: the dataset's own split of its cases (`split_files.read_split_file`: TotalSegmentator's
            `meta.csv`, a table of case and split, a JSON object of lists), used instead of `split` and `seed`;
            a case it does not assign is refused before any case is read.
        channel: the channel of 4-D NIfTI files to use (e.g. 0 = FLAIR in the Decathlon's BraTS), or of cases
            with one image file per channel (nnU-Net's `case_0000`, `case_0001`; BraTS's `_flair`, `_t1`, ...;
            there None reads the first): a number, a name (`"flair"`, as the files or the dataset's
            `dataset.json` name the channels) or a `channels.ChannelChoice`. The report records the channel
            read, and a model trained on the dataset reads the same one (`MsaProcessor.channel`).
        series: the stack to read of DICOM case folders that hold several (a study's series; a key, series number
            or UID, `msa_hf.data.dicom_stacks`); None reads the series a DICOM-SEG label map references, and
            refuses a folder of several stacks with NIfTI labels.
        dicom_labels: "seg" or "rtstruct": where a case folder of a DICOM export holds both a DICOM-SEG and an
            RT structure set (`sources.dicom_study_cases`), the one to read.
        overlapping: DICOM-SEG, RT structure set, 3D Slicer segmentation (its layers) or structure-file labels
            whose structures overlap (a tumour
            inside its organ, organs inside the body outline): each structure is read as a region, a bit of the
            label map (`dicom_seg_labels.overlap_code`; at most 16 structures), rather than refused.
        modality: "CT", "MR" or "other" for NIfTI/2-D data (DICOM says it itself); None guesses CT for
            volumes whose minimum is at or below -500 (air in HU) and MR otherwise.
        mask_threshold: binarise masks at this value (soft or JPEG masks) instead of reading labels.
        target_spacing: resample volumes to this (x, y, z) spacing in mm first.
        plane: the plane volumes are cut into (`msa_hf.data.planes`): "auto" (axial, unless a case's axial
            pixels are far from square: then the plane it was acquired in, as `msa-hf predict` cuts it),
            "axial", "coronal" or "sagittal".
        keep_empty_slices: keep volume slices outside the labelled range (by default only the slices
            from the first to the last labelled one are kept; empty ones inside stay, so a window of D
            consecutive slices is truly consecutive).
        case_id_pattern: regex whose first group is the case id of a 2-D file name (e.g. `(patient\\d+)_`),
            so several images of one patient land in one split; for volumes, the patient of a volume's file
            name, whose volumes (each still a case of its own) land in one split.
        label_table: path of the label table; by default one found in the source folder.
        structures: the structures to read by name, valued 1, 2, ... in this order: a label table written
            inline, for labels that carry names (DICOM-SEG segments, RT structure set ROIs, structure files);
            not with `label_table`, nor for label maps, whose structures are values.
        remap_labels: `{value in the files: value to read it as}`, applied to every label map as it is read
            (before the label table and the {0, 255} rule of 2-D masks): for files that code structures
            unusually, such as REFUGE's 0 = cup, 128 = disc rim, 255 = background (`{255: 0, 128: 1, 0: 2}`).
        name: dataset name in the card.
        source_license: licence of the source data, for the card.
    """

    kind: str = "auto"
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    split_file: str | Path | None = None
    channel: ChannelChoice | int | str | None = None
    series: str | None = None
    dicom_labels: str | None = None
    overlapping: bool = False
    modality: str | None = None
    mask_threshold: float | None = None
    target_spacing: tuple[float, float, float] | None = None
    plane: str = "auto"
    keep_empty_slices: bool = False
    case_id_pattern: str | None = None
    label_table: str | Path | None = None
    structures: tuple[str, ...] | None = None
    remap_labels: dict[int, int] | None = None
    name: str | None = None
    source_license: str = "unknown: state the licence of your source data here"

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "images", "volumes"):
            raise ValueError(f"unknown kind {self.kind!r}; use 'auto', 'images' or 'volumes'.")
        if len(self.split) != 3 or min(self.split) < 0 or not np.isclose(sum(self.split), 1.0):
            raise ValueError(f"split must be three non-negative fractions summing to 1, got {self.split}.")
        if self.modality is not None and self.modality.upper() not in ("CT", "MR", "OTHER"):
            raise ValueError(f"unknown modality {self.modality!r}; use CT, MR or other.")
        if self.target_spacing is not None and (
            len(self.target_spacing) != 3 or not all(np.isfinite(v) and v > 0 for v in self.target_spacing)
        ):
            raise ValueError(
                f"target_spacing={self.target_spacing}: give three positive voxel sizes in mm (--target-spacing X Y Z)."
            )
        if self.mask_threshold is not None and not (
            np.isfinite(self.mask_threshold) and self.mask_threshold > 0
        ):
            raise ValueError(
                f"mask_threshold={self.mask_threshold}: give a positive value in the masks' units, e.g. 128 for "
                "8-bit masks or 0.5 for soft masks in [0, 1]."
            )
        check_plane(self.plane, PLANE_CHOICES)
        if self.structures is not None:
            names = [str(name).strip() for name in self.structures]
            if not names or not all(names) or len(set(names)) != len(names):
                raise ValueError(
                    f"structures {list(self.structures)}: name each structure once (--structures liver spleen)."
                )
            if self.label_table is not None:
                raise ValueError(
                    f"structures {names} and label table {self.label_table}: both name the structures to read; "
                    "give one of them."
                )
            self.structures = tuple(names)
        self.remap_labels = check_label_remap(self.remap_labels or {})
        if self.channel is not None and not isinstance(self.channel, ChannelChoice):
            self.channel = ChannelChoice.parse(self.channel)
        if self.case_id_pattern is not None:
            try:
                groups = re.compile(self.case_id_pattern).groups
            except re.error as error:
                raise ValueError(
                    f"case_id_pattern {self.case_id_pattern!r} is not a regular expression ({error}); escape "
                    "literal brackets with a backslash."
                ) from None
            if groups < 1:
                raise ValueError(
                    f"case_id_pattern {self.case_id_pattern!r} has no group; put the case id in parentheses, "
                    r"e.g. '(patient\d+)_'."
                )


@dataclass
class PrepareReport:
    """What `prepare_dataset` wrote and what it skipped (saved as `prepare_report.json`)."""

    output: str
    class_names: dict[int, str]
    cases: dict[str, int] = field(default_factory=dict)
    slices: dict[str, int] = field(default_factory=dict)
    skipped_cases: list[dict[str, str]] = field(default_factory=list)
    empty_masks_skipped: list[str] = field(default_factory=list)
    empty_slices_dropped: int = 0
    slices_per_class: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    regions: dict[int, list[int]] = field(default_factory=dict)  # structures that are unions of label values
    label_remap: dict[int, int] = field(default_factory=dict)  # how the source's label maps were read
    # each volume case's plane (`--plane`): its rows are that plane's slices (`planes.display_slices`)
    planes: dict[str, str] = field(default_factory=dict)
    split_file: str | None = None  # the dataset's own split the cases follow (`--split-file`)
    # the channel read of multi-channel cases (a 4-D file's, or one of a case's files by channel), and its name
    channel: int | None = None
    channel_name: str | None = None

    def summary(self) -> str:
        """A plain-text table for the terminal."""
        lines = [f"Dataset written to {self.output}", ""]
        lines += [f"Cases split as {self.split_file} assigns them.", ""] if self.split_file else []
        lines += ["| split | cases | slices |", "|---|---:|---:|"]
        lines += [f"| {s} | {self.cases.get(s, 0)} | {self.slices.get(s, 0)} |" for s in SPLITS]
        lines += ["", "| class | slices containing it |", "|---|---:|"]
        lines += [f"| {name} | {self.slices_per_class.get(name, 0)} |" for name in self.class_names.values()]
        if self.skipped_cases:
            lines += ["", f"Skipped {len(self.skipped_cases)} case(s):"]
            lines += [f"  - {c['case_id']}: {c['reason']}" for c in self.skipped_cases]
        if self.empty_masks_skipped:
            lines += ["", f"Skipped {len(self.empty_masks_skipped)} image(s) with an empty mask."]
        if self.empty_slices_dropped:
            lines += [f"Dropped {self.empty_slices_dropped} unlabelled slice(s) outside the labelled range."]
        if set(self.planes.values()) - {"axial"}:  # some cases were acquired in another plane and cut in it
            counts = Counter(self.planes.values())
            listed = ", ".join(f"{plane} {count}" for plane, count in sorted(counts.items()))
            lines += [f"Volumes cut into slices of each plane (cases): {listed}."]
        if self.channel is not None:
            named = f" ({self.channel_name})" if self.channel_name else ""
            lines += [
                f"Read channel {self.channel}{named} of multi-channel cases; models trained here read it too."
            ]
        for message in self.warnings:
            lines.append(f"warning: {message}")
        return "\n".join(lines)


def split_cases(
    case_ids: Sequence[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, list[str]]:
    """Assign whole cases to train/validation/test.

    Deterministic for a given set of ids and seed (the ids are sorted before the seeded shuffle).
    Validation and test get at least one case each when their fraction is positive and there are at
    least three cases.
    """
    ids = sorted(set(case_ids))
    order = np.random.default_rng(seed).permutation(len(ids))
    ids = [ids[i] for i in order]
    counts = [int(round(f * len(ids))) for f in fractions[1:]]
    if len(ids) >= 3:
        counts = [max(c, 1) if f > 0 else 0 for c, f in zip(counts, fractions[1:], strict=True)]
    n_validation, n_test = counts
    n_train = max(len(ids) - n_validation - n_test, 0)
    return {
        "train": sorted(ids[:n_train]),
        "validation": sorted(ids[n_train : n_train + n_validation]),
        "test": sorted(ids[n_train + n_validation :]),
    }


def _normalise_modality(modality: str) -> str:
    """ "ct"/"CT" -> "CT", "mr"/"MRI" -> "MR", anything else -> "other"."""
    modality = modality.upper()
    return {"CT": "CT", "MR": "MR", "MRI": "MR"}.get(modality, "other")


def _guess_modality(volume: Volume, options: PrepareOptions) -> str:
    if options.modality is not None:
        return _normalise_modality(options.modality)
    return guess_modality(volume)


def _volume_cases(
    cases: list[CaseFiles], options: PrepareOptions, report: PrepareReport
) -> dict[str, list[CaseFiles]]:
    """The volume cases grouped by patient, each group kept in one split: by `options.case_id_pattern`'s first
    group in the image's file name where given; else cases inside one folder named as their ids begin,
    followed by a scan's name (`_scan_of_folder_patient`), are that folder's patient (ACDC's
    `patient001/patient001_frame01.nii.gz` and `_frame12`: two scans of one heart, never one in training and
    the other in the test split), which the report says; else each case alone. An nnU-Net case with one image
    file per channel reads `options.channel` (default the first), which the report says."""
    regex = re.compile(options.case_id_pattern) if options.case_id_pattern else None
    groups: dict[str, list[CaseFiles]] = defaultdict(list)
    for case in cases:
        folder = case.image.parent.name if case.image.is_file() else ""
        if regex is not None and case.label is not None:  # an unlabelled volume is skipped whatever its group
            groups[_pattern_case_id(regex, case.image.name)].append(case)
        elif _scan_of_folder_patient(case.case_id, folder):
            groups[folder].append(case)
        else:
            groups[case.case_id].append(case)
    labelled = {
        group: [case for case in members if case.label is not None] for group, members in groups.items()
    }
    together = {group: members for group, members in labelled.items() if len(members) > 1}
    if together and regex is None:
        example, members = next(iter(together.items()))
        report.warnings.append(
            f"{sum(len(m) for m in together.values())} cases are scans of {len(together)} patients, each kept in "
            f"one split: the cases in a folder named as their ids begin (e.g. {example}: "
            f"{', '.join(case.case_id for case in members[:3])}); --case-id-pattern groups them otherwise."
        )
    several = [case for case in cases if len(case.channels) > 1]
    if several:
        names = case_channel_names(several[0])
        channels = channel_listing(names, max(several[0].channels) + 1)
        chosen = options.channel.describe() if options.channel is not None else "0"
        report.warnings.append(
            f"{len(several)} case(s) have one image file per channel (channels {channels}, e.g. "
            f"{several[0].image.name}); read channel {chosen}"
            f"{'' if options.channel is not None else ' (--channel k reads another)'}."
        )
    return groups


def _scan_of_folder_patient(case_id: str, folder: str) -> bool:
    """Whether a volume `case_id` in `folder` names one scan of the patient the folder is named for: the id is
    the folder's name, a separator, and a scan's name with a letter in it (`patient001_frame01`, `P7-baseline`),
    not a bare number (`liver/liver_12` numbers cases in a folder named for them all)."""
    prefix = case_id[: len(folder) + 1]
    rest = case_id[len(folder) + 1 :]
    return bool(folder) and prefix in (f"{folder}_", f"{folder}-") and any(c.isalpha() for c in rest)


def _case_series(case: CaseFiles, options: PrepareOptions) -> str | None:
    """The stack of a DICOM case (a folder, or an enhanced file) to read: `options.series`, else the series
    its DICOM-SEG or RT structure set was drawn on (None: the folder's only one)."""
    if options.series is not None or case.label is None or not is_dicom_stack_source(case.image):
        return options.series
    return seg_series(case.label, case.image) if is_dicom_label_file(case.label) else None


def _case_image(
    case: CaseFiles, options: PrepareOptions, report: PrepareReport, series: str | None = None
) -> Volume:
    """The case's image volume: `options.channel` of a 4-D file, or of a case's files by channel (the first
    by default), which `report` records (the first case's); the stack `series` of a DICOM folder.

    Raises:
        VolumeReadError: a channel the case does not have, a 4-D file without `options.channel`."""
    try:
        if len(case.channels) > 1:
            path, index, name = choose_channel_file(case, options.channel)
            chosen, volume_channel = (index, name), None
        else:
            path, chosen = case.image, choose_volume_channel(case.image, options.channel)
            volume_channel = chosen[0] if chosen else None
    except ValueError as error:
        raise VolumeReadError(str(error)) from None
    if chosen is not None and report.channel is None:
        report.channel, report.channel_name = chosen
    if chosen is None and options.channel is not None and options.channel.index not in (None, 0):
        volume_channel = options.channel.index  # a 3-D volume: refused by its reader, which says why
    return load_volume(path, channel=volume_channel, series=series)


def _volume_rows(
    case: CaseFiles,
    options: PrepareOptions,
    report: PrepareReport,
    seg_values: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    series = _case_series(case, options)
    image = _case_image(case, options, report, series)
    label = load_label_volume(case.label, case.image, seg_values, series, options.overlapping)
    label.array = remap_label_values(label.array, options.remap_labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        label = label_on_image_grid(image, label)  # a segmentation cropped to its structures: placed
    report.warnings += [str(w.message) for w in caught]
    modality = _guess_modality(image, options)
    image_array, label_array, spacing, affine = image.array, label.array, image.spacing, image.affine
    if options.target_spacing is not None:
        image_array = resample_to_spacing(image_array, spacing, options.target_spacing)
        label_array = resample_to_spacing(label_array, spacing, options.target_spacing, is_label=True)
        affine = affine.copy()
        affine[:3, :3] = affine[:3, :3] * (np.asarray(options.target_spacing) / np.asarray(spacing))
        spacing = tuple(float(s) for s in options.target_spacing)
    plane = choose_plane(spacing, options.plane)
    if note := pixel_note(spacing, plane, case.image):
        report.warnings.append(note)
    if not label_array.any():
        raise VolumeReadError(f"{case.label}: the label map is empty (all background).")
    images, labels = display_slices(image_array, plane), display_slices(label_array, plane)
    report.planes[case.case_id] = plane
    if options.keep_empty_slices:
        keep = range(len(labels))
    else:
        labelled = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
        keep = range(int(labelled[0]), int(labelled[-1]) + 1)
        report.empty_slices_dropped += len(labels) - len(keep)
    row_spacing = plane_spacing(spacing, plane)  # (row, column, slice) of the plane's slices
    image_dtype = np.int16 if modality == "CT" and np.array_equal(images, np.round(images)) else np.float32
    if image_dtype == np.int16 and (images.min() < -32768 or images.max() > 32767):
        image_dtype = np.float32
    return [
        slice_row(
            case.case_id,
            position,
            len(keep),
            images[k].astype(image_dtype),
            labels[k],
            row_spacing,
            "mm",
            affine,
            modality,
        )  # fmt: skip
        for position, k in enumerate(keep)
    ]


def _image_rows(
    case_id: str,
    files: list[CaseFiles],
    options: PrepareOptions,
    report: PrepareReport,
    known_labels: set[int] | None,
) -> list[dict[str, Any]]:
    rows = []
    for case in files:
        if case.label is None:
            raise ImageReadError(
                f"{case.image}: no mask found (looked for {case.image.stem}_mask.*, masks/{case.image.name} or a "
                "label_file_name in metadata.jsonl)."
            )
        image, mask = (
            read_image(case.image),
            read_mask(
                case.label,
                threshold=options.mask_threshold,
                known_labels=known_labels,
                remap=options.remap_labels,
            ),
        )
        if image.shape[:2] != mask.shape:
            raise ImageReadError(
                f"{case.label}: mask size {mask.shape} differs from image {case.image} size {image.shape[:2]}. "
                "Masks must be pixel-aligned with their image (same height and width)."
            )
        if not mask.any():
            report.empty_masks_skipped.append(str(case.label))
            continue
        if image.dtype == np.int32:  # PIL's 32-bit integer mode; 16-bit range is what PNG/TIFF hold here
            image = (
                image.astype(np.uint16)
                if image.min() >= 0 and image.max() < 65536
                else image.astype(np.float32)
            )
        modality = _normalise_modality(options.modality or "other")
        rows.append((image, mask, modality))
    return [
        slice_row(case_id, index, len(rows), image, mask, (1.0, 1.0, 1.0), "pixel", np.eye(4), modality)
        for index, (image, mask, modality) in enumerate(rows)
    ]


def _group_image_cases(cases: list[CaseFiles], pattern: str | None) -> dict[str, list[CaseFiles]]:
    groups: dict[str, list[CaseFiles]] = defaultdict(list)
    regex = re.compile(pattern) if pattern else None
    for case in cases:
        groups[case.case_id if regex is None else _pattern_case_id(regex, case.image.name)].append(case)
    return groups


def _pattern_case_id(regex: re.Pattern, file_name: str) -> str:
    """The first group of `--case-id-pattern` (`regex`) in `file_name`: the case (or, of volumes, the patient)
    the file belongs to; a `ValueError` where it does not match."""
    match = regex.search(file_name)
    if match is None or not match.groups():
        raise ValueError(
            f"case_id_pattern {regex.pattern!r} does not match {file_name} (or has no group); fix the pattern so "
            "its first group is the case id."
        )
    return match.group(1)


def _overlap_regions(
    source: Path, label_files: list[Path], table: dict[int, str] | None, options: PrepareOptions
) -> dict[int, tuple[int, ...]]:
    """`PrepareOptions.overlapping`'s regions before any case is read: each structure of `table` as every code
    holding its bit (`overlap_regions`), refused where the labels are not DICOM label objects, where the label
    values are remapped, or where the structures are too many for the bits."""
    if not label_files:
        raise ValueError(
            f"{source}: --overlapping reads DICOM-SEG, RT structure set, 3D Slicer segmentation and structure-file "
            "labels (one mask file per structure), whose structures may overlap; these labels are label maps, one "
            "value per pixel. Leave it out."
        )
    if options.remap_labels:
        raise ValueError(
            f"{source}: --overlapping reads each structure as a bit of the label map; --remap-labels has no values "
            "to remap there. Use one or the other."
        )
    values = sorted(table or {})
    for value in values:
        overlap_code(value)  # a value beyond the bits is refused with the advice
    every = range(1, 1 << max(values, default=0))
    return overlap_regions(every, values)


def _structures_need_names(source: Path) -> str:
    """What `--structures` is told for a source of label maps."""
    return (
        f"{source}: --structures picks structures by name, and these labels are label maps, whose structures are "
        'values; name the values in a label table (--label-table labels.json, {"1": "liver"}).'
    )


def _class_names(
    source: Path, options: PrepareOptions
) -> tuple[dict[int, str] | None, dict[int, tuple[int, ...]]]:
    """The label table's `{class id: name}` (None without a table) and, for a region-based table, `{class
    id: label values}` with class ids 1..N in the table's order (else `{}`: each class id is its label
    value)."""
    if options.structures:  # a label table written inline
        return dict(enumerate(options.structures, start=1)), {}
    table_path = Path(options.label_table) if options.label_table else find_label_table(source)
    if table_path is None:
        return None, {}
    return read_label_structures(table_path)


def prepare_dataset(
    source: str | Path, output: str | Path, overwrite: bool = False, **options: Any
) -> PrepareReport:
    """Convert a folder of labelled images or volumes into a dataset directory.

    Args:
        source: the folder (layouts: see `msa_hf.data.sources`).
        output: the dataset directory to write; must be empty or absent unless `overwrite`.
        overwrite: replace an existing dataset directory.
        **options: fields of `PrepareOptions` (split, seed, modality, channel, target_spacing, ...).
    Returns:
        The report (also written as `prepare_report.json`). Bad cases are skipped and listed, never fatal:
        every good case is written.
    Raises:
        ValueError: no usable case (each skipped case's reason said), or an empty train split; nothing is
            written then, and an earlier dataset in `output` stays as it was.
    """
    options = PrepareOptions(**options)
    source, output = Path(source), Path(output)
    # written to a staging folder and swapped in when complete: a failed run (a missing source, an error
    # half-way) leaves an earlier dataset in `output` as it was, and the source is never the output
    with atomic_folder(output, overwrite, inputs=[source]) as staging:
        return _prepare_into(source, staging, options, final=output)


def _prepare_into(source: Path, output: Path, options: PrepareOptions, final: Path) -> PrepareReport:
    """`prepare_dataset`'s work, writing into the (staging) folder `output` that becomes `final`."""
    kind = detect_source_kind(source) if options.kind == "auto" else options.kind
    report = PrepareReport(output=str(final), class_names={})
    table, regions = _class_names(source, options)
    report.regions = {class_id: list(values) for class_id, values in regions.items()}
    report.label_remap = dict(options.remap_labels)
    # the label values the masks may hold: a region table's, or the plain table's own
    known_values = {v for values in regions.values() for v in values} if regions else set(table or ())
    seg_values = None  # {name: label value} of labels that carry names: DICOM objects, structure files
    if kind == "volumes":
        groups = _volume_cases(find_volume_pairs(source, options.dicom_labels), options, report)
        seg_files = [
            files[0].label
            for files in groups.values()
            if files[0].label and is_dicom_label_file(files[0].label)
        ]
        # 3D Slicer segmentations name their segments too, each file numbering them its own way; under a
        # region-based table their values are the regions' own
        slicer_files = [
            files[0].label
            for files in groups.values()
            if files[0].label
            and not regions
            and is_itk_file(files[0].label)
            and segment_names(files[0].label)
        ]
        if seg_files and regions:
            raise ValueError(
                f"{source}: DICOM-SEG or RT structure set labels with a region-based label table; a segment or ROI "
                "is one structure, so give a table of one value per name (--overlapping reads overlapping ones as "
                "regions), or export the labels as NIfTI."
            )
        if seg_files or slicer_files:  # segments are numbered per file: label values come from their labels
            seg_values, note = segment_label_values([*seg_files, *slicer_files], table)
            report.warnings += [note] if note else []
            table = (
                table if table is not None else {value: name for name, value in sorted(seg_values.items())}
            )
        # folders of one mask file per structure: valued by name, as segments are
        structure_folders = [
            files[0].label for files in groups.values() if files[0].label and files[0].label.is_dir()
        ]
        if structure_folders and regions:
            raise ValueError(
                f"{source}: structure-file labels (one mask file per structure) with a region-based label table; a "
                "file is one structure, so give a table of one value per name (--overlapping reads overlapping "
                "ones as regions)."
            )
        if structure_folders:
            names, note = structure_label_values(structure_folders, table)
            report.warnings += [note] if note else []
            # the table where there was one (a DICOM object's values among it): one value per name either way
            table = table if table is not None else names
            seg_values = {name: value for value, name in names.items()}
        if options.structures and not seg_files and not slicer_files and not structure_folders:
            raise ValueError(_structures_need_names(source))
        if options.overlapping:  # every structure a region of the codes holding its bit, pruned at the end
            regions = _overlap_regions(
                source, [*seg_files, *slicer_files, *structure_folders], table, options
            )
            known_values = {code for codes in regions.values() for code in codes}
    else:
        if options.overlapping:
            raise ValueError(
                f"{source}: --overlapping reads the DICOM-SEG and RT structure set labels of volumes; these are "
                "pictures with masks. Leave it out."
            )
        if options.structures:
            raise ValueError(_structures_need_names(source))
        groups = _group_image_cases(find_image_pairs(source), options.case_id_pattern)
    if options.split_file is not None:  # the dataset's own split, so a model is tested where others test
        splits, absent = cases_by_split(groups, read_split_file(options.split_file), options.split_file)
        report.split_file = str(options.split_file)
        if absent:
            report.warnings.append(
                f"{len(absent)} case(s) of the split file are not in {source} ({', '.join(absent[:5])}"
                f"{' and more' if len(absent) > 5 else ''}); the dataset holds the others."
            )
        wanted = {split: bool(splits[split]) for split in SPLITS}
    else:
        splits = split_cases(list(groups), options.split, options.seed)
        wanted = {split: fraction > 0 for split, fraction in zip(SPLITS, options.split, strict=True)}
    split_of = {case_id: split for split, ids in splits.items() for case_id in ids}
    region_sets = {class_id: set(values) for class_id, values in regions.items()}
    seen_values: Counter[int] = Counter()
    seen_classes: Counter[int] = Counter()  # slices holding each region
    writers = {split: SliceParquetWriter(split_file(output, split)) for split in SPLITS}
    try:
        for group in tqdm(sorted(groups), desc=f"prepare {source.name}", unit="case"):
            # a 2-D case is its group's pictures; a volume is a case of its own, its patient's group kept in
            # the group's split
            members = groups[group] if kind == "volumes" else [None]
            for volume_case in members:
                case_id = volume_case.case_id if volume_case is not None else group
                try:
                    if volume_case is not None:
                        if volume_case.label is None:
                            raise VolumeReadError(
                                volume_case.problem
                                or f"{volume_case.image}: no label map found for case {case_id}. {PAIRING_RULE}"
                            )
                        rows = _volume_rows(volume_case, options, report, seg_values)
                    else:
                        rows = _image_rows(case_id, groups[group], options, report, known_values or None)
                except CASE_ERRORS as error:
                    report.skipped_cases.append({"case_id": case_id, "reason": str(error)})
                    logger.warning("skipping case %s: %s", case_id, error)
                    continue
                for row in rows:
                    seen_values.update(row["labels_present"])
                    for class_id, values in region_sets.items():  # a region counts once per slice
                        seen_classes[class_id] += bool(values & set(row["labels_present"]))
                writers[split_of[group]].write_case(rows)
                report.cases[split_of[group]] = report.cases.get(split_of[group], 0) + (1 if rows else 0)
    finally:
        for writer in writers.values():
            writer.close()
    report.slices = {split: writer.num_rows for split, writer in writers.items()}
    usable = sum(report.cases.values())
    if not sum(report.slices.values()):
        # nothing to train on: refuse, so that the staging folder is dropped and an earlier dataset in the
        # output (replaced only when a run succeeds, with --overwrite) is kept as it was
        reasons = "".join(
            f"\n  - {case['case_id']}: " + case["reason"].replace("\n", "\n    ")
            for case in report.skipped_cases[:5]
        )
        more = f"\n  ... and {len(report.skipped_cases) - 5} more" if len(report.skipped_cases) > 5 else ""
        raise ValueError(
            f"{source}: no usable case, nothing written; {len(report.skipped_cases)} skipped:{reasons}{more}"
        )
    if usable and wanted["train"] and not report.slices.get("train"):
        # splits are fixed per case id before cases are read (a case keeps its split when another is fixed),
        # so skipped cases can leave the train split empty: refuse rather than write a dataset nothing trains on
        raise ValueError(
            f"{source}: the train split would be empty ({usable} usable case(s): "
            f"{', '.join(f'{split} {report.cases.get(split, 0)}' for split in SPLITS)}; "
            f"{len(report.skipped_cases)} skipped, with reasons above). Add or fix cases, or "
            f"{'move cases to train in the split file' if options.split_file else 'pass --split 1 0 0'}."
        )
    for split in SPLITS:
        if wanted[split] and not report.slices.get(split) and split != "train":
            report.warnings.append(f"the {split} split is empty: too few usable cases for it.")
    if table is None:
        table = default_class_names(list(seen_values))
        report.warnings.append(
            f"no label table in {source} (looked for dataset.json, labels.json, labels.txt); classes are named "
            "class_<value>. Add one to name them."
        )
    if options.overlapping:  # the codes the masks hold, not every combination of bits
        regions = overlap_regions(set(seen_values), regions)
        report.regions = {class_id: list(values) for class_id, values in regions.items()}
    if regions:
        unknown = sorted(set(seen_values) - known_values)
        if unknown:
            report.warnings.append(
                f"label values {unknown} appear in the masks but in no region of the label table; no structure "
                "holds them."
            )
        report.class_names = dict(table)
        report.slices_per_class = {table[class_id]: seen_classes[class_id] for class_id in table}
    else:
        unknown = sorted(set(seen_values) - set(table))
        if unknown:
            report.warnings.append(f"label values {unknown} appear in the masks but not in the label table.")
            table.update(default_class_names(unknown))
        report.class_names = dict(sorted(table.items()))
        report.slices_per_class = {table[value]: count for value, count in sorted(seen_values.items())}
    write_dataset_metadata(
        output,
        report,
        name=options.name or source.name,
        source_description=f"Prepared by `msa-hf prepare` from a folder of {kind} ({source.name}).",
        license_notice=options.source_license,
    )
    return report


def write_dataset_metadata(
    output: Path, report: PrepareReport, name: str, source_description: str, license_notice: str
) -> None:
    """`classes.json`, `prepare_report.json` and the dataset card of a dataset directory. The report goes
    second to last and the card last, so a complete `prepare_report.json` marks a finished directory."""
    from msa_hf.data.dataset_card import render_dataset_card

    (output / "classes.json").write_text(
        json.dumps({str(k): v for k, v in report.class_names.items()}, indent=2)
    )
    if report.regions:  # structures that are unions of label values (`read_regions`)
        (output / "regions.json").write_text(
            json.dumps({str(k): v for k, v in report.regions.items()}, indent=2)
        )
    (output / "prepare_report.json").write_text(json.dumps(asdict(report), indent=2, default=str))
    card = render_dataset_card(
        name=name, report=report, source_description=source_description, license_notice=license_notice
    )
    (output / "README.md").write_text(card, encoding="utf-8")


def read_regions(folder: str | Path) -> dict[int, tuple[int, ...]]:
    """`{class id: label values}` of a prepared dataset's structures that are unions of label values (its
    `regions.json`, written from a region-based label table); `{}` where each class id is its label value."""
    path = Path(folder) / "regions.json"
    if not path.is_file():
        return {}
    return {int(k): tuple(int(v) for v in values) for k, values in json.loads(path.read_text()).items()}


def read_class_names(folder: str | Path) -> dict[int, str]:
    """`{label value: name}` of a prepared dataset directory (its `classes.json`)."""
    path = Path(folder) / "classes.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: is {folder} a dataset directory written by msa-hf prepare?"
        )
    return {int(k): v for k, v in json.loads(path.read_text()).items()}


def load_prepared(folder: str | Path, streaming: bool = False) -> Any:
    """Load a prepared dataset directory as a `DatasetDict` (or `IterableDatasetDict` when streaming).

    Empty splits are left out.
    """
    from datasets import load_dataset

    data_files = {split: str(split_file(folder, split)) for split in SPLITS}
    for split, path in list(data_files.items()):
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"{path} not found: is {folder} a dataset directory written by msa-hf prepare?"
            )
        import pyarrow
        import pyarrow.parquet as pq

        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except (pyarrow.ArrowException, OSError) as error:
            raise ValueError(
                f"{path}: cannot read this split of the dataset {folder} ({error}); run msa-hf prepare again."
            ) from None
        if rows == 0:
            del data_files[split]
    return load_dataset("parquet", data_files=data_files, streaming=streaming)
