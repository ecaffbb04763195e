# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""RT Structure Set label maps: the contours of radiotherapy planning, read onto the grid of their series.

Radiotherapy datasets (and planning systems' exports) annotate CT and MR series as RT Structure Sets
(RTSTRUCT): per structure (ROI, named "Liver", "PTV", "BODY"), closed polygons on the slices, in patient
coordinates, each referencing the image it was drawn on. `msa-hf prepare`, `--prompts-from-labels` and
`score` read such a file as a label map of the series it pairs with, as they read a DICOM-SEG
(`dicom_seg_labels`): each contour lands on its image's slice (by its reference, else by its position along
the slice normal) and is filled at pixel centres by nesting (`processing.contours.fill_nested_contours`: a
contour inside another is a hole, as planning systems read them; contours that overlap without one holding the
other, two strokes over one organ, are united).

A structure set usually holds more than the targets (the body outline, planning margins, the couch), and
those overlap the organs. A label table that names ROIs chooses them: ROIs it does not name are left out.
Without one, every ROI is read but the planning objects its observations type as such (`PLANNING_OBJECTS`:
the body outline, the couch, markers, bolus, dose-shaping regions; `planning_objects`), and ROIs that still
overlap are refused by name with that advice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from msa_hf.data.dicom_planes import DICOM_LABEL_KINDS
from msa_hf.data.volumes import Volume, VolumeReadError, canonical_volume

if TYPE_CHECKING:
    from msa_hf.data.structure_codes import StructureCode

RTSTRUCT = DICOM_LABEL_KINDS["rtstruct"]  # the Modality of an RT Structure Set
# RT ROI Interpreted Types of what a plan places around the anatomy rather than anatomy or a target: the
# external body outline, the couch and immobilisation, markers and reference points, bolus, brachytherapy
# devices, and regions that shape or measure the dose. They overlap the organs, so without a label table
# they are left out (a table that names one reads it).
PLANNING_OBJECTS = frozenset(
    {
        "EXTERNAL", "SUPPORT", "FIXATION", "MARKER", "REGISTRATION", "ISOCENTER", "BOLUS", "BRACHY_CHANNEL",
        "BRACHY_ACCESSORY", "BRACHY_SRC_APP", "BRACHY_CHNL_SHLD", "DOSE_REGION", "CONTROL", "DOSE_MEASUREMENT",
    }
)  # fmt: skip


def roi_names(dataset: Any) -> dict[int, str]:
    """`{ROI number: ROI name}` of an RT Structure Set dataset (its header)."""
    return {
        int(item.ROINumber): str(item.get("ROIName", f"ROI {item.ROINumber}"))
        for item in dataset.get("StructureSetROISequence", [])
    }


def planning_objects(dataset: Any) -> dict[int, str]:
    """`{ROI number: its interpreted type}` of an RT Structure Set's ROIs that its observations type as planning
    objects (`PLANNING_OBJECTS`: the body outline EXTERNAL, the couch SUPPORT, ...)."""
    return {
        int(item.ReferencedROINumber): str(item.RTROIInterpretedType).strip().upper()
        for item in dataset.get("RTROIObservationsSequence", [])
        if "ReferencedROINumber" in item
        and str(item.get("RTROIInterpretedType", "") or "").strip().upper() in PLANNING_OBJECTS
    }


def planning_objects_note(left_out: Mapping[str, str]) -> str | None:
    """A report's note of the planning objects left out (`{ROI name: interpreted type}`), or None."""
    if not left_out:
        return None
    listed = ", ".join(f"{name} ({kind})" for name, kind in sorted(left_out.items()))
    return (
        f"RT structure set ROIs typed as planning objects were left out: {listed}. A label table (labels.json) "
        "that names one reads it."
    )


def roi_codes(dataset: Any) -> dict[str, StructureCode]:
    """`{ROI name: its codes}` of an RT Structure Set's ROIs that its observations code
    (`structure_codes.read_dicom_codes`: category, identification code with laterality, anatomic region), for
    a values lookup by concept (`structure_codes.values_by_concept`)."""
    from msa_hf.data.structure_codes import read_dicom_codes

    names = roi_names(dataset)
    codes = {}
    for observation in dataset.get("RTROIObservationsSequence", []):
        code = read_dicom_codes(observation, "RTROIIdentificationCodeSequence")
        name = names.get(int(observation.get("ReferencedROINumber", -1)))
        if code is not None and name is not None:
            codes[name] = code
    return codes


def rtstruct_series(dataset: Any) -> set[str]:
    """The series instance UIDs an RT Structure Set's contours are drawn on (its referenced frame of
    reference's studies' series)."""
    return {
        str(series.SeriesInstanceUID)
        for frame in dataset.get("ReferencedFrameOfReferenceSequence", [])
        for study in frame.get("RTReferencedStudySequence", [])
        for series in study.get("RTReferencedSeriesSequence", [])
    }


def rtstruct_images(dataset: Any) -> set[tuple[str, int | None]]:
    """The images (SOP instance UID, frame number or None) an RT Structure Set's contours reference."""
    return {
        (
            str(image.ReferencedSOPInstanceUID),
            int(image.ReferencedFrameNumber) if "ReferencedFrameNumber" in image else None,
        )
        for roi in dataset.get("ROIContourSequence", [])
        for contour in roi.get("ContourSequence", [])
        for image in contour.get("ContourImageSequence", [])
    }


def load_rtstruct_labels(
    path: str | Path,
    series_folder: str | Path,
    values: dict[str, int] | None = None,
    series: str | None = None,
    overlapping: bool = False,
) -> Volume:
    """The label map an RT Structure Set at `path` draws on the DICOM series in `series_folder` (or the
    enhanced multi-frame file it is; the stack `series` of it), as a RAS+ label volume on that series' grid
    (as `load_volume(series_folder, series=series)` reads the image).

    Each ROI named in `values` (`{ROI name: label value}`) takes its value; ROIs it does not name are left
    out. Without `values`, every ROI but the planning objects (`planning_objects`) takes its own number. Only closed planar contours are read. With
    `overlapping`, ROIs may overlap, each setting its bit of a pixel's code (`dicom_seg_labels.overlap_code`).

    Raises:
        VolumeReadError: not a structure set, one drawn on another series, a contour on no slice of the
            series, or two ROIs read that overlap.
    """
    return read_rtstruct_labels(path, series_folder, values, series, overlapping)[0]


def read_rtstruct_labels(
    path: str | Path,
    series_folder: str | Path,
    values: dict[str, int] | None,
    series: str | None,
    overlapping: bool | None,
) -> tuple[Volume, bool]:
    """`load_rtstruct_labels`, and whether the volume holds bits (`overlap_code`) rather than label values;
    `overlapping=None` reads bits only where ROIs of different values overlap (the file and the series read
    once: the ROIs are filled again, as bits, from the first overlap)."""
    import pydicom

    from msa_hf.data.dicom_planes import stack_planes
    from msa_hf.data.dicom_seg_labels import OverlappingStructuresError
    from msa_hf.data.structure_codes import values_by_concept

    path, series_folder = Path(path), Path(series_folder)
    dataset = pydicom.dcmread(path)
    if str(dataset.get("Modality", "")) != RTSTRUCT:
        raise VolumeReadError(f"{path}: not an RT Structure Set (Modality RTSTRUCT).")
    stack = stack_planes(series_folder, series)
    series_uid = str(stack.header.SeriesInstanceUID)
    drawn_on = rtstruct_series(dataset)
    if drawn_on and series_uid not in drawn_on:
        raise VolumeReadError(
            f"{path}: a structure set of series {sorted(drawn_on)}, not of the series in {series_folder} "
            f"({series_uid}). Pair each RT structure set with the series it was drawn on."
        )
    names, objects = roi_names(dataset), planning_objects(dataset)
    if values:  # an ROI named otherwise than the table names its structure (Kidney_L, left kidney)
        values = values_by_concept(values, names.values(), roi_codes(dataset))
    chosen = (
        {number: values[name] for number, name in names.items() if name in values}
        if values is not None
        else {number: number for number in names if number not in objects}
    )
    if not chosen and objects and len(objects) == len(names):  # nothing but the body outline, the couch, ...
        listed = ", ".join(f"{names[n]} ({kind})" for n, kind in sorted(objects.items()))
        raise VolumeReadError(
            f"{path}: its ROIs are all planning objects ({listed}), which are read only where a label table "
            'names them (labels.json, {"1": "BODY"}).'
        )
    if not chosen:
        raise VolumeReadError(
            f"{path}: none of its ROIs ({', '.join(sorted(names.values())) or 'none'}) is named in the label "
            f"table ({', '.join(sorted(values or {}))}); name the structures as the structure set does."
        )
    bits = bool(overlapping)  # None: label values, until two ROIs overlap
    try:
        return _fill_rois(dataset, chosen, names, stack, path, series_folder, bits), bits
    except OverlappingStructuresError:
        if overlapping is not None:
            raise
    return _fill_rois(dataset, chosen, names, stack, path, series_folder, True), True


def _fill_rois(
    dataset: Any,
    chosen: dict[int, int],
    names: dict[int, str],
    stack: Any,
    path: Path,
    series_folder: Path,
    overlapping: bool,
) -> Volume:
    """The `chosen` ROIs (`{ROI number: label value}`) of the structure set `dataset` filled on the planes of
    `stack` as a RAS+ label volume: label values (ROIs of different values overlapping refused,
    `OverlappingStructuresError`), or with `overlapping` the bits of each pixel's code."""
    from msa_hf.data.dicom_seg_labels import OverlappingStructuresError, overlap_code
    from msa_hf.processing.contours import fill_nested_contours

    planes = stack.planes
    index = {(plane.sop_instance_uid, plane.frame): k for k, plane in enumerate(planes)}
    depths = _depths(planes)  # where a contour that names no image is placed
    columns, rows, count = stack.shape
    dtype = np.uint8 if max(chosen.values(), default=0) <= 255 and not overlapping else np.uint16
    labels = np.zeros((count, rows, columns), dtype)
    read: set[int] = set()  # the ROIs drawn so far, for naming an overlap
    for roi in dataset.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        if number not in chosen:
            continue
        by_plane: dict[int, list[np.ndarray]] = {}
        for contour in roi.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "")) != "CLOSED_PLANAR":
                continue
            points = np.asarray(contour.ContourData, np.float64).reshape(-1, 3)
            k = _plane_of(contour, points, index, depths, planes[0].normal)
            if k is None:
                raise VolumeReadError(
                    f"{path}: a contour of ROI {names.get(number, number)!r} lies on no slice of the series in "
                    f"{series_folder}; pair the structure set with the series it was drawn on."
                )
            by_plane.setdefault(k, []).append(planes[k].to_pixels(points))
        value = chosen[number]
        for k, contours in by_plane.items():
            inside = fill_nested_contours(contours, (rows, columns))
            if overlapping:
                labels[k][inside] |= overlap_code(value)
                continue
            # ROIs given one value (two lobes, one organ) may overlap; ROIs of different values may not
            both = inside & (labels[k] != 0) & (labels[k] != value)
            if both.any():
                taken = int(labels[k][both][0])
                other = next(names[n] for n in sorted(chosen) if chosen[n] == taken and n in read)
                raise OverlappingStructuresError(
                    f"{path}: ROIs {other!r} and {names.get(number, number)!r} overlap ({int(both.sum())} pixels "
                    f"on slice {k}), so they cannot be one label map. Name the ROIs to read in a label table "
                    '(labels.json, {"1": "liver"}; ROIs it leaves out, such as the body outline, are not read).'
                )
            labels[k][inside] = value
        read.add(number)
    # as the image: voxel (i = column, j = row, k = plane), then RAS+
    return canonical_volume(labels.transpose(2, 1, 0), stack.affine, str(path), is_label=True)


def _depths(planes: list[Any]) -> tuple[np.ndarray, float]:
    """Each slice's position along the stack's normal `(slices,)` (mm) and the smallest step between two."""
    normal = planes[0].normal
    depths = np.array([plane.position @ normal for plane in planes])
    return depths, float(np.min(np.abs(np.diff(depths)))) if len(depths) > 1 else 1.0


def _plane_of(
    contour: Any, points: np.ndarray, index: dict, depths: tuple[np.ndarray, float], normal: np.ndarray
) -> int | None:
    """The slice a contour lies on: the image it references (`index`: `(SOP instance UID, frame)` -> slice),
    else the slice whose position along `normal` its points lie at, within a tenth of the smallest step
    (`depths`, `_depths`)."""
    for image in contour.get("ContourImageSequence", []):
        frame = int(image.ReferencedFrameNumber) if "ReferencedFrameNumber" in image else None
        found = index.get((str(image.ReferencedSOPInstanceUID), frame))
        if found is not None:
            return found
    along, step = depths
    depth = float(points.mean(axis=0) @ normal)
    nearest = int(np.argmin(np.abs(along - depth)))
    return nearest if abs(along[nearest] - depth) <= 0.1 * step else None
