# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""DICOM-SEG label maps: annotations made in a clinic's viewer, read onto the grid of the series they annotate.

Viewers and annotation tools (OHIF, 3D Slicer, a PACS's own) save segmentations as DICOM-SEG: one file per
annotated series, its frames referencing the series' instances, one segment per structure with a number and a
label ("liver"). `msa-hf prepare` reads such a file as the label map of the DICOM series it pairs with by name
(`images/case1/` + `labels/case1.dcm`), as it reads a NIfTI label map: each instance's frame lands on that
instance's slice of the series, so the label volume has the series' own RAS+ grid.

Segment numbers are a file's own: two files may number "liver" and "spleen" differently. A dataset's label
values therefore come from the segments' labels (`segment_label_values`): a label table in the source folder
gives each name its value, else the numbers the files agree on, else one value per name in alphabetical order.
Overlapping segments cannot be one label map: read as one they are refused by name, and read as structures
(`load_dicom_structures`, `overlap_code`) each keeps its own mask.

The rules of pairing a DICOM label object with its series (`referenced_series`, `seg_series`, `drawn_on`) and
of its names' values hold for RT Structure Sets too, whose ROIs are read by `rtstruct_labels`
(`load_dicom_labels` chooses the reader).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from msa_hf.data.dicom_planes import DICOM_LABEL_KINDS
from msa_hf.data.slicer_segmentations import is_slicer_segmentation, load_slicer_labels
from msa_hf.data.structure_codes import (
    StructureCode,
    joined_names_note,
    names_by_concept,
    values_by_concept,
)
from msa_hf.data.volumes import (
    Volume,
    VolumeReadError,
    canonical_volume,
    import_highdicom,
    is_dicom_stack_source,
    is_volume_file,
    load_volume,
)

# Structures that may overlap (a tumour inside its organ, an organ inside the body outline) are read as bits:
# structure v sets bit v - 1 of a pixel's code, so a pixel inside two structures holds both, and structure v is
# the region of the codes that have its bit (`overlap_regions`)
MAX_OVERLAPPING_STRUCTURES = 16  # the bits of a uint16 label map


class OverlappingStructuresError(VolumeReadError):
    """A DICOM label object read as one label map whose structures overlap (the message names them); read
    with `overlapping` (`load_dicom_structures` does where it must)."""


def overlap_code(value: int) -> int:
    """The bit structure `value` (from 1) sets in a pixel's code when structures may overlap."""
    if not 1 <= value <= MAX_OVERLAPPING_STRUCTURES:
        raise ValueError(
            f"structure value {value}: overlapping structures are read as the bits of a 16-bit label map, values "
            f"1 to {MAX_OVERLAPPING_STRUCTURES}; name at most {MAX_OVERLAPPING_STRUCTURES} structures to read."
        )
    return 1 << (value - 1)


def overlap_regions(codes: Any, values: Any) -> dict[int, tuple[int, ...]]:
    """`{structure value: the codes among `codes` that hold its bit}`: each structure as a region of the label
    maps written with `overlap_code`."""
    return {value: tuple(sorted(c for c in codes if c & overlap_code(value))) for value in values}


def drawn_structures(bits: np.ndarray) -> dict[int, tuple[int, ...]]:
    """`{structure value: its codes}` of the structures a bit-coded label map `bits` draws (`overlap_code`):
    each structure whose bit some pixel holds, as the region of the codes that occur with it
    (`overlap_regions`)."""
    codes = [int(code) for code in np.unique(bits) if code]
    drawn = sorted(
        {bit + 1 for code in codes for bit in range(MAX_OVERLAPPING_STRUCTURES) if code >> bit & 1}
    )
    return overlap_regions(codes, drawn)


def _dicom_modality(path: str | Path) -> str | None:
    """A DICOM file's Modality from its header (None: not a readable DICOM file)."""
    from msa_hf.data.image_files import is_dicom_file

    path = Path(path)
    if not path.is_file() or not is_dicom_file(path):
        return None
    import pydicom

    try:
        # the one tag: a folder's every slice is asked this when a DICOM export is searched for its labels
        return str(
            pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"]).get("Modality", "")
        )
    except Exception:  # noqa: BLE001 - an unreadable file is no label file; its reader says why
        return None


def is_dicom_seg_file(path: str | Path) -> bool:
    """Whether `path` is a DICOM Segmentation (Modality SEG), from its header."""
    return _dicom_modality(path) == DICOM_LABEL_KINDS["seg"]


def dicom_label_kind(path: str | Path) -> str | None:
    """ "seg" for a DICOM-SEG, "rtstruct" for an RT Structure Set (`rtstruct_labels`), else None: the kind of
    label map drawn on a DICOM series that `path` is, from its header."""
    modality = _dicom_modality(path)
    return next((kind for kind, name in DICOM_LABEL_KINDS.items() if name == modality), None)


def is_dicom_label_file(path: str | Path) -> bool:
    """Whether `path` is a label map drawn on a DICOM series: a DICOM-SEG, or an RT Structure Set
    (`rtstruct_labels`)."""
    return dicom_label_kind(path) is not None


def is_named_label_file(path: str | Path, region_based: bool = False) -> bool:
    """Whether `path` is a label map whose structures are named segments, each file numbering them its own
    way, and so read by name: a DICOM label object (`is_dicom_label_file`) or a 3D Slicer segmentation, unless
    a region-based label table describes its values (`region_based`: regions of label values, read as a label
    map's, as `prepare` reads them)."""
    return is_dicom_label_file(path) or (not region_based and is_slicer_segmentation(path))


def referenced_series(path: str | Path) -> str | None:
    """The series instance UID a DICOM-SEG or RT Structure Set file was drawn on, from its header (None when
    it names none or several)."""
    import pydicom

    from msa_hf.data.rtstruct_labels import RTSTRUCT, rtstruct_series

    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    if str(dataset.get("Modality", "")) == RTSTRUCT:
        found = rtstruct_series(dataset)
    else:
        found = {str(item.SeriesInstanceUID) for item in dataset.get("ReferencedSeriesSequence", [])}
    return found.pop() if len(found) == 1 else None


def seg_series(seg_path: str | Path, folder: str | Path) -> str | None:
    """The stack of the DICOM folder `folder` that the DICOM-SEG at `seg_path` was drawn on, as `series=`
    chooses it: None where the folder holds one stack (`load_seg_labels` then checks that it is the one); the
    series instance UID where one stack has it; the stack's key where that series holds several volumes (two
    acquisitions, the echoes of an enhanced file), chosen by the instances or frames the SEG references.

    Raises:
        VolumeReadError: the folder holds several stacks and the SEG's series is not among them, or the SEG
            references images of several of that series' volumes.
    """
    from msa_hf.data.dicom_stacks import find_stacks

    stacks = find_stacks(folder)
    if len(stacks) == 1:
        return None
    uid = referenced_series(seg_path)
    candidates = [stack for stack in stacks if stack.series_uid == uid]
    if not candidates:
        raise VolumeReadError(
            f"{seg_path}: a segmentation of series {uid}, which is not among the series in {folder}. Pair each "
            "DICOM-SEG or RT structure set with the series it was drawn on."
        )
    if len(candidates) == 1:
        return uid
    return drawn_on(seg_path, candidates, folder).key


def drawn_on(seg_path: str | Path, stacks: list[Any], where: Any) -> Any:
    """The one of `stacks` (`DicomStack`s of the series a DICOM-SEG names, found in `where`) whose images the
    SEG references: where a series holds several volumes (two acquisitions, the echoes of an enhanced file),
    the one it was drawn on.

    Raises:
        VolumeReadError: it references images of several of them, or of none.
    """
    import pydicom

    if len(stacks) == 1:
        return stacks[0]
    header = pydicom.dcmread(seg_path, stop_before_pixels=True)
    drawn = [stack for stack in stacks if _references_stack(header, stack)]
    if len(drawn) != 1:
        raise VolumeReadError(
            f"{seg_path}: its series holds {len(stacks)} volumes in {where} "
            f"({', '.join(stack.key for stack in stacks)}), and the segmentation references images of "
            f"{'several' if drawn else 'none'} of them; name the one with --series KEY."
        )
    return drawn[0]


def _references_stack(segmentation: Any, stack: Any) -> bool:
    """Whether a DICOM-SEG (or RT Structure Set) header references an image of `stack` (a `DicomStack`): one
    of its frames for an enhanced file's volume, one of its files' instances for a series'."""
    import pydicom

    from msa_hf.data.rtstruct_labels import RTSTRUCT, rtstruct_images

    images = rtstruct_images(segmentation) if str(segmentation.get("Modality", "")) == RTSTRUCT else None
    if stack.multi_frame:
        uid = str(pydicom.dcmread(stack.files[0], stop_before_pixels=True).SOPInstanceUID)
        frames = {frame + 1 for frame in stack.frame_indices} if stack.frame_indices is not None else None
        drawn = (
            _referenced_frames(segmentation, uid) if images is None else {f for u, f in images if u == uid}
        )
        return bool(drawn & frames) if frames is not None else bool(drawn)
    instances = (
        {
            str(item.ReferencedSOPInstanceUID)
            for series in segmentation.get("ReferencedSeriesSequence", [])
            for item in series.get("ReferencedInstanceSequence", [])
        }
        if images is None
        else {uid for uid, _ in images}
    )
    return any(
        str(pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
        in instances
        for file in stack.files
    )


def segment_names(path: str | Path) -> dict[int, str]:
    """`{segment number: segment label}` of a DICOM-SEG file (`{ROI number: ROI name}` of an RT Structure
    Set, its planning objects left out, `rtstruct_labels.planning_objects`; `{label value: segment name}` of a 3D
    Slicer segmentation, `slicer_segmentations.slicer_segmentation_names`, and nothing for any other volume
    file), from its header."""
    return named_structures(path).names


class NamedStructures(NamedTuple):
    """What a label file says of its structures, from one reading of its header: `names` (`segment_names`),
    the codes it gives them itself (`{name: codes}`: a DICOM-SEG's segment descriptions, `segment_codes`; an
    RT structure set's ROI observations, `rtstruct_labels.roi_codes`; a 3D Slicer segment's terminology), and
    the RT planning objects left out of `names` (`{ROI name: interpreted type}`)."""

    names: dict[int, str]
    codes: dict[str, StructureCode]
    left_out: dict[str, str]


def named_structures(path: str | Path) -> NamedStructures:
    """`NamedStructures` of the label file at `path`."""
    import pydicom

    from msa_hf.data.rtstruct_labels import RTSTRUCT, planning_objects, roi_codes, roi_names
    from msa_hf.data.slicer_segmentations import codes_by_name, header_fields, names_by_value, slicer_segments

    if is_volume_file(path):  # of label maps in volume files, only a 3D Slicer segmentation names its values
        segments = slicer_segments(header_fields(path))
        return NamedStructures(names_by_value(segments), codes_by_name(segments), {})

    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    if str(dataset.get("Modality", "")) == RTSTRUCT:
        names, objects = roi_names(dataset), planning_objects(dataset)
        kept = {number: name for number, name in names.items() if number not in objects}
        return NamedStructures(kept, roi_codes(dataset), {names[n]: kind for n, kind in objects.items()})
    names = {int(item.SegmentNumber): str(item.SegmentLabel) for item in dataset.get("SegmentSequence", [])}
    return NamedStructures(names, segment_codes(dataset), {})


def segment_codes(dataset: Any) -> dict[str, StructureCode]:
    """`{segment label: its codes}` of a DICOM-SEG's segments (`dataset`, read by pydicom;
    `structure_codes.read_dicom_codes`), for a values lookup by concept (`structure_codes.values_by_concept`)."""
    from msa_hf.data.structure_codes import read_dicom_codes

    codes = {}
    for segment in dataset.get("SegmentSequence", []):
        code = read_dicom_codes(segment, "SegmentedPropertyTypeCodeSequence")
        if code is not None:
            codes[str(segment.SegmentLabel)] = code
    return codes


def segment_label_values(
    files: list[Path], table: dict[int, str] | None
) -> tuple[dict[str, int], str | None]:
    """The label value of every segment label in `files`, and a note for the report when the values are not
    the files' own numbers. With `table` (the source's label table), its values by name; else the segment
    numbers where every file gives each label the same number and each number one label; else one value per
    label, in alphabetical order. Without a table, labels that name one structure otherwise in different
    files (`Kidney_L`, `left kidney`) are one label, as most files name it (`structure_codes.names_by_concept`;
    the note says so), which a file's reader finds by concept (`structure_codes.values_by_concept`); an RT
    structure set's planning objects are left out (`rtstruct_labels.PLANNING_OBJECTS`; the note names them)."""
    from msa_hf.data.rtstruct_labels import planning_objects_note

    if table is not None:
        return {name: value for value, name in table.items()}, None

    labels, codes, left_out = [], {}, {}
    for file in files:
        found = named_structures(file)
        labels.append(found.names)
        codes.update(found.codes)
        left_out.update(found.left_out)
    joined = names_by_concept((names.values() for names in labels), codes)
    notes = [planning_objects_note(left_out), joined_names_note(joined)]
    numbers: dict[str, set[int]] = {}
    for names in labels:
        for number, name in names.items():
            numbers.setdefault(joined.get(name, name), set()).add(number)
    # one number per label across the files, and one label per number: the files' own numbering
    own = {name: min(found) for name, found in numbers.items()}
    if all(len(found) == 1 for found in numbers.values()) and len(set(own.values())) == len(own):
        return own, "\n".join(filter(None, notes)) or None
    by_name = {name: value for value, name in enumerate(sorted(numbers), start=1)}
    notes.append(
        "the segmentation files number their segments differently; label values are given by segment label: "
        + ", ".join(f"{value} {name}" for name, value in by_name.items())
        + ". A label table (labels.json) in the source folder sets them."
    )
    return by_name, "\n".join(filter(None, notes))


def load_label_volume(
    label_path: str | Path,
    image_path: str | Path,
    seg_values: dict[str, int] | None = None,
    series: str | None = None,
    overlapping: bool = False,
) -> Volume:
    """The label map of the volume at `image_path`: a volume file (a 3D Slicer segmentation's segments valued
    by name with `seg_values`, those it does not name left out, and those that overlap as bits with
    `overlapping`: `load_slicer_labels`), a DICOM-SEG or RT Structure Set drawn on
    the DICOM series `image_path` is (the stack `series` of it; segments or ROIs valued by name with
    `seg_values`, else by their own numbers; with `overlapping`, as the bits of each pixel's code), or a folder
    of one mask file per structure (the files `seg_values` names, valued by it: `read_structure_folder`).

    Raises:
        VolumeReadError: as `load_volume`, `load_seg_labels` and `read_structure_folder`, or a DICOM-SEG for
            an image that is not a DICOM series.
    """
    label_path = Path(label_path)
    if label_path.is_dir():
        from msa_hf.data.structure_files import read_structure_folder

        names = {value: name for name, value in (seg_values or {}).items()}
        return read_structure_folder(label_path, names, overlapping, only_named=seg_values is not None)[0]
    image_path = Path(image_path)
    if is_slicer_segmentation(label_path):  # each segment valued by its name, as a DICOM-SEG's
        return load_slicer_labels(label_path, seg_values, overlapping)[0]
    if is_volume_file(label_path):
        return load_volume(label_path, is_label=True)
    _check_drawn_on_dicom(label_path, image_path)
    return load_dicom_labels(label_path, image_path, seg_values, series, overlapping)


def load_label_structures(
    label_path: str | Path,
    image_path: str | Path,
    seg_values: dict[str, int] | None = None,
    series: str | None = None,
) -> tuple[Volume, dict[int, tuple[int, ...]] | None]:
    """`load_label_volume` for a reader that takes structures however they lie: a NIfTI label map, or a DICOM
    label object read by `load_dicom_structures` or a 3D Slicer segmentation (overlapping structures as bits,
    with each one's codes)."""
    label_path, image_path = Path(label_path), Path(image_path)
    if is_slicer_segmentation(label_path):  # segments that overlap (several layers): each read whole
        volume, bits = load_slicer_labels(label_path, seg_values, overlapping=None)
        return volume, drawn_structures(volume.array) if bits else None
    if is_volume_file(label_path):
        return load_volume(label_path, is_label=True), None
    _check_drawn_on_dicom(label_path, image_path)
    return load_dicom_structures(label_path, image_path, seg_values, series)


def _check_drawn_on_dicom(label_path: Path, image_path: Path) -> None:
    if not is_dicom_stack_source(image_path):
        raise VolumeReadError(
            f"{label_path}: a DICOM label map (DICOM-SEG, RT structure set) is read onto the DICOM series it was "
            f"drawn on; the image {image_path} is not a DICOM series folder. Pair it with the series, or export "
            "the labels as NIfTI."
        )


def load_dicom_labels(
    path: str | Path,
    series_folder: str | Path,
    values: dict[str, int] | None = None,
    series: str | None = None,
    overlapping: bool = False,
) -> Volume:
    """The label map a DICOM-SEG (`load_seg_labels`) or an RT Structure Set (`load_rtstruct_labels`: ROIs
    that `values` does not name are left out) draws on the DICOM series in `series_folder`; with
    `overlapping`, its structures as the bits of each pixel's code (`overlap_code`)."""
    return _read_dicom_labels(path, series_folder, values, series, overlapping)[0]


def _read_dicom_labels(
    path: str | Path,
    series_folder: str | Path,
    values: dict[str, int] | None,
    series: str | None,
    overlapping: bool | None,
) -> tuple[Volume, bool]:
    """`load_dicom_labels`, and whether the volume holds bits (`overlap_code`) rather than label values;
    `overlapping=None` reads bits only where structures overlap, from one reading of the file and the series."""
    from msa_hf.data.rtstruct_labels import RTSTRUCT, read_rtstruct_labels

    if _dicom_modality(path) == RTSTRUCT:
        return read_rtstruct_labels(path, series_folder, values, series, overlapping)
    return _read_seg_labels(path, series_folder, values, series, overlapping)


def load_dicom_structures(
    path: str | Path,
    series_folder: str | Path,
    values: dict[str, int] | None = None,
    series: str | None = None,
) -> tuple[Volume, dict[int, tuple[int, ...]] | None]:
    """The structures a DICOM-SEG or RT Structure Set draws on the DICOM series in `series_folder`, however
    they lie: a label map and None where no two overlap (`load_dicom_labels`); where some do (a tumour inside
    its organ, as `msa-hf predict` writes prompts whose masks overlap), the bits of each pixel's code and each
    drawn structure's region of codes (`overlap_regions`), which `tasks.structure_mask` reads. A structure the
    regions leave out is not drawn.

    Raises:
        VolumeReadError: as `load_dicom_labels`; overlapping structures valued beyond
            `MAX_OVERLAPPING_STRUCTURES` (`overlap_code`'s `ValueError`).
    """
    try:
        volume, bits = _read_dicom_labels(path, series_folder, values, series, overlapping=None)
    except VolumeReadError:
        raise
    except ValueError:  # overlapping, and a value beyond the code's bits (`overlap_code`)
        raise too_many_overlapping(path, values) from None
    if not bits:
        return volume, None
    return volume, drawn_structures(volume.array)


def load_seg_labels(
    seg_path: str | Path,
    series_folder: str | Path,
    values: dict[str, int] | None = None,
    series: str | None = None,
    overlapping: bool = False,
) -> Volume:
    """The label map a DICOM-SEG file draws on the DICOM series in `series_folder` (the stack `series` of it),
    as a RAS+ label volume on that series' grid (as `load_volume(series_folder, series=series)` reads the
    image).

    Each segment's pixels take `values[segment label]` (default: the segment's own number); with `overlapping`,
    segments may overlap and each sets its bit of a pixel's code instead (`overlap_code`).

    Raises:
        VolumeReadError: not a DICOM-SEG, a SEG of another series, a segment label without a value,
            overlapping segments, or no highdicom.
    """
    return _read_seg_labels(seg_path, series_folder, values, series, overlapping)[0]


def _read_seg_labels(
    seg_path: str | Path,
    series_folder: str | Path,
    values: dict[str, int] | None,
    series: str | None,
    overlapping: bool | None,
) -> tuple[Volume, bool]:
    """`load_seg_labels`, and whether the volume holds bits; `overlapping=None`: bits where segments overlap."""
    from msa_hf.data.dicom_stacks import read_stack

    highdicom = import_highdicom("reading a DICOM-SEG label map")
    seg_path, series_folder = Path(seg_path), Path(series_folder)
    if not is_dicom_seg_file(seg_path):
        raise VolumeReadError(f"{seg_path}: not a DICOM Segmentation (Modality SEG) nor a NIfTI label map.")
    segmentation = highdicom.seg.segread(seg_path)
    images = read_stack(series_folder, series)
    # an enhanced file: its chosen frames, in position order
    enhanced, affine = images.enhanced, images.affine
    series_uid = str(images.header.SeriesInstanceUID)
    referenced = {str(item.SeriesInstanceUID) for item in segmentation.get("ReferencedSeriesSequence", [])}
    if series_uid not in referenced:
        raise VolumeReadError(
            f"{seg_path}: a segmentation of series {sorted(referenced)}, not of the series in {series_folder} "
            f"({series_uid}). Pair each DICOM-SEG with the series it was drawn on."
        )
    names = segment_names(seg_path)
    if values:  # a segment labelled otherwise than the table names it, coded as one of its structures
        values = values_by_concept(values, names.values(), segment_codes(segmentation))
    values = values or {name: number for number, name in names.items()}
    missing = sorted(name for name in names.values() if name not in values)
    if missing:
        raise VolumeReadError(
            f"{seg_path}: segments {missing} have no label value in the label table {values}; add them to it."
        )
    if enhanced is not None and enhanced.frames is not None:
        _check_drawn_on_stack(segmentation, seg_path, enhanced, series)
    # placed by the instances (or frames) they reference, not by a grid of their own; none drawn: empty
    placement = {"assert_missing_frames_are_empty": True, "ignore_spatial_locations": True}
    try:
        if enhanced is not None:
            frames = segmentation.get_pixels_by_source_frame(
                source_sop_instance_uid=str(enhanced.dataset.SOPInstanceUID),
                source_frame_numbers=[frame + 1 for frame in enhanced.order],
                segment_numbers=sorted(names),
                **placement,
            )  # (frames in position order, rows, columns, segments)
        else:
            frames = segmentation.get_pixels_by_source_instance(
                source_sop_instance_uids=[str(dataset.SOPInstanceUID) for _, dataset in images.slices],
                segment_numbers=sorted(names),
                **placement,
            )  # (instances, rows, columns, segments)
    except (ValueError, KeyError, RuntimeError) as error:
        raise VolumeReadError(
            f"{seg_path}: its frames cannot be placed on the series in {series_folder} "
            f"({type(error).__name__}: {error})."
        ) from error
    frames = np.asarray(frames).astype(bool)
    labels, bits = segments_label_map(
        frames.shape[:3],
        lambda: ((names[number], frames[..., index]) for index, number in enumerate(sorted(names))),
        values,
        overlapping,
        str(seg_path),
    )
    # as the image: voxel (i = column, j = row, k = instance), then RAS+
    return canonical_volume(labels.transpose(2, 1, 0), affine, str(seg_path), is_label=True), bits


def too_many_overlapping(path: str | Path, values: Mapping[str, int] | None) -> VolumeReadError:
    """The error of structures that overlap and are valued beyond the bits of their codes (`overlap_code`)."""
    given = sorted(set((values or {}).values())) or "its own numbers"
    return VolumeReadError(
        f"{path}: its structures overlap, and each is then read whole as one bit of a 16-bit code, "
        f"which takes label values 1 to {MAX_OVERLAPPING_STRUCTURES}; the structures are valued "
        f"{given}. Number them 1 to {MAX_OVERLAPPING_STRUCTURES} in the label table."
    )


def segments_label_map(
    shape: tuple[int, ...],
    segments: Callable[[], Iterable[tuple[str, np.ndarray]]],
    values: Mapping[str, int],
    overlapping: bool | None,
    source: str,
) -> tuple[np.ndarray, bool]:
    """The label map of named segments (`segments()` yields `(name, mask)`, each mask bool of `shape`, taken
    one at a time; called again where the map is read again as bits), each valued by its name through
    `values` (a segment it does not name is left out): one value per pixel, or with `overlapping` the bits of
    each pixel's code (`overlap_code`); `overlapping=None` reads bits only where segments overlap. Returns the
    map and whether it holds bits.

    Raises:
        OverlappingStructuresError: `overlapping=False`, and segments of different values overlap.
        ValueError: bits of a value beyond `MAX_OVERLAPPING_STRUCTURES` (`overlap_code`).
    """
    if not overlapping:
        labels = np.zeros(shape, np.uint8 if max(values.values(), default=0) <= 255 else np.uint16)
        owners: dict[int, str] = {}
        for name, mask in segments():
            if name not in values:
                continue
            value = values[name]
            under = labels[mask]
            others = under[(under != 0) & (under != value)]
            if others.size:
                if overlapping is None:  # read again, as bits
                    break
                earlier = owners[int(np.bincount(others).argmax())]
                raise OverlappingStructuresError(
                    f"{source}: segments {[earlier, name]} overlap ({others.size} pixels), so they cannot be one "
                    "label map. Read each whole (msa-hf prepare --overlapping; score and predict "
                    "--prompts-from-labels do), remove the overlap in your viewer, or keep one of them."
                )
            labels[mask] = value
            owners.setdefault(value, name)
        else:
            return labels, False
    bits = np.zeros(shape, np.uint16)
    for name, mask in segments():
        if name in values:
            bits[mask] |= overlap_code(values[name])
    return bits, True


def _referenced_frames(segmentation: Any, sop_instance_uid: str) -> set[int]:
    """The frame numbers (from 1) of the source instance `sop_instance_uid` that a DICOM-SEG's frames were
    derived from."""
    return {
        int(item.ReferencedFrameNumber)
        for group in segmentation.get("PerFrameFunctionalGroupsSequence", [])
        for derivation in group.get("DerivationImageSequence", [])
        for item in derivation.get("SourceImageSequence", [])
        if str(item.ReferencedSOPInstanceUID) == sop_instance_uid and item.get("ReferencedFrameNumber")
    }


def _check_drawn_on_stack(segmentation: Any, seg_path: Path, enhanced: Any, series: str | None) -> None:
    """Refuse a DICOM-SEG drawn on another of the volumes an enhanced file holds at the same positions: read
    onto this one, its frames would find none of theirs and the labels would come out empty."""
    from msa_hf.data.dicom_stacks import find_stacks

    drawn = _referenced_frames(segmentation, str(enhanced.dataset.SOPInstanceUID))
    wanted = {frame + 1 for frame in enhanced.frames}
    if not drawn or drawn & wanted:
        return
    on = [s.key for s in find_stacks(enhanced.file) if {f + 1 for f in s.frame_indices or ()} & drawn]
    raise VolumeReadError(
        f"{seg_path}: drawn on {' and '.join(on) or 'other frames'} of {enhanced.file.name}, not on "
        f"{series or 'the chosen stack'}; pair it with that volume (--series {on[0] if on else 'KEY'})."
    )
