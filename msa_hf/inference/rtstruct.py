# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""RT Structure Set output: a predicted label volume as the contours a radiotherapy planning system imports.

Planning systems (and most contouring tools) read structures as DICOM RT Structure Sets (RTSTRUCT): closed
planar polygons per slice in patient coordinates, each referencing the image it was drawn on. Each label
value present becomes one ROI, named from the given names (or "structure <value>"); its mask on each slice of
the series is traced along the pixels' edges (`processing.contours.mask_contours`), each hole joined to the
boundary around it by a cut of zero width (`keyhole_contours`: the keyhole technique), so a reader gets the
mask back exactly at pixel centres whether it takes nested contours as holes (even-odd, as planning systems
do; `data.rtstruct_labels` reads it so) or fills each polygon on its own and unites them. Needs pydicom alone.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np

from msa_hf.data.dicom_planes import DICOM_LABEL_KINDS, Structures
from msa_hf.data.structure_colours import structure_colour_bytes
from msa_hf.output_files import atomic_file

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
# copied from the source so the structure set files under its patient, study and frame of reference (the
# anatomical point the frame is measured from); the standard wants these present even where empty (type 2),
# so an attribute the source lacks is written empty
COPIED_OR_EMPTY = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
    "AccessionNumber", "ReferringPhysicianName", "PositionReferenceIndicator",
)  # fmt: skip
COPIED_IF_PRESENT = ("StudyInstanceUID", "StudyDescription", "PatientAge", "PatientWeight")


def write_rtstruct(
    source: str | Path,
    canonical: Structures,
    canonical_affine: np.ndarray,
    output: str | Path,
    names: dict[int, str] | None = None,
    model_name: str = "MSA",
    series: str | None = None,
) -> dict[int, int]:
    """Write `canonical` (a RAS+ label volume `(X, Y, Z)` of the DICOM series in folder `source`, or of the
    enhanced multi-frame file `source` is; the stack `series` chooses where there are several; or `{label
    value: RAS+ mask}`, whose structures may overlap, each ROI then whole) as an RT Structure Set referencing
    that stack's images.

    Each label value present becomes an ROI (numbered from 1 in value order, named `names[value]` or
    "structure <value>" (`dicom_structure_names`), generated semi-automatically by msa_hf and `model_name`),
    with one CLOSED_PLANAR contour per outer boundary on each slice that shows it, its holes joined to it
    (`keyhole_contours`). An ROI whose name denotes a standard concept (`structure_codes.structure_code`)
    is coded by it in its observation: category, identification code with laterality, anatomic region. The file is written whole or not at all. Returns `{label value: ROI number}`.

    Raises:
        ValueError: nothing segmented, a label volume off the series' grid, or a source whose headers lack
            what a structure set must copy.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from msa_hf import __version__
    from msa_hf.data.dicom_planes import stack_planes, structures_on_grid
    from msa_hf.data.structure_codes import structure_code, write_dicom_codes
    from msa_hf.inference.dicom_outputs import dicom_structure_names, dicom_text, series_description
    from msa_hf.processing.contours import keyhole_contours, mask_contours

    source, output = Path(source), Path(output)
    stack = stack_planes(source, series)
    structures = structures_on_grid(canonical, canonical_affine, stack.affine, stack.shape, source)
    if not structures.values:
        raise ValueError(
            f"nothing was segmented in {source}: an RT structure set needs at least one contour."
        )
    header = stack.header
    frame_of_reference = _frame_of_reference(header, source)
    now = datetime.datetime.now()

    dataset = Dataset()
    for keyword in COPIED_OR_EMPTY:
        setattr(dataset, keyword, header.data_element(keyword).value if keyword in header else "")
    for keyword in COPIED_IF_PRESENT:
        if keyword in header:
            setattr(dataset, keyword, header.data_element(keyword).value)
    if "StudyInstanceUID" not in dataset:
        raise ValueError(
            f"{source}: its headers name no StudyInstanceUID, which a structure set must share with its images. "
            "Write NIfTI instead (.nii.gz)."
        )
    dataset.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    dataset.SOPInstanceUID = generate_uid()
    dataset.Modality = DICOM_LABEL_KINDS["rtstruct"]
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SeriesNumber = int(getattr(header, "SeriesNumber", 0) or 0) + 2000
    dataset.SeriesDescription = series_description(header, "MSA contours")
    dataset.SeriesDate, dataset.SeriesTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    dataset.OperatorsName = ""
    dataset.InstanceNumber = 1
    dataset.Manufacturer = "msa_hf"
    dataset.ManufacturerModelName = dicom_text(model_name)
    dataset.SoftwareVersions = __version__
    dataset.StructureSetLabel = "MSA"
    dataset.StructureSetName = dicom_text(model_name)
    dataset.StructureSetDate = dataset.InstanceCreationDate = now.strftime("%Y%m%d")
    dataset.StructureSetTime = dataset.InstanceCreationTime = now.strftime("%H%M%S")
    dataset.SpecificCharacterSet = "ISO_IR 192"
    # the Frame of Reference module: the images' own, which the standard (and its validators) want at the top
    # level as well as inside the references below (its reference point is copied with the patient's)
    dataset.FrameOfReferenceUID = frame_of_reference

    # the images the contours lie on: the series (or the file's frames) they reference
    series_item = Dataset()
    series_item.SeriesInstanceUID = str(header.SeriesInstanceUID)
    series_item.ContourImageSequence = Sequence([_image_reference(plane) for plane in _unique_images(stack)])
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = (
        "1.2.840.10008.3.1.2.3.1"  # Detached Study Management: retired, and what readers expect there
    )
    study_item.ReferencedSOPInstanceUID = str(dataset.StudyInstanceUID)
    study_item.RTReferencedSeriesSequence = Sequence([series_item])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = frame_of_reference
    frame_item.RTReferencedStudySequence = Sequence([study_item])
    dataset.ReferencedFrameOfReferenceSequence = Sequence([frame_item])

    rois, contours_of, observations, numbers = [], [], [], {}
    roi_names = dicom_structure_names(structures.values, names)
    for number, value in enumerate(structures.values, start=1):
        numbers[value] = number
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame_of_reference
        roi.ROIName = roi_names[value]
        roi.ROIGenerationAlgorithm = "SEMIAUTOMATIC"
        roi.ROIGenerationDescription = dicom_text(f"msa_hf {__version__}, {model_name}")
        rois.append(roi)
        contours = []
        for plane, mask in zip(stack.planes, structures.mask(value), strict=True):  # (H, W) each
            if not mask.any():
                continue
            for vertices in keyhole_contours(mask_contours(mask)):
                contour = Dataset()
                contour.ContourImageSequence = Sequence([_image_reference(plane)])
                contour.ContourGeometricType = "CLOSED_PLANAR"
                contour.NumberOfContourPoints = len(vertices)
                contour.ContourData = [f"{v:.4f}" for v in plane.to_patient(vertices).ravel()]
                contours.append(contour)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        roi_contour.ROIDisplayColor = list(structure_colour_bytes(number - 1))
        roi_contour.ContourSequence = Sequence(contours)
        contours_of.append(roi_contour)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = ""  # a role in the plan (target, organ at risk): the user's to say
        observation.ROIInterpreter = ""
        code = structure_code((names or {}).get(value))
        if code is not None:  # what the ROI is, where its name says (a planning system may map it)
            write_dicom_codes(observation, code, "RTROIIdentificationCodeSequence")
        observations.append(observation)
    dataset.StructureSetROISequence = Sequence(rois)
    dataset.ROIContourSequence = Sequence(contours_of)
    dataset.RTROIObservationsSequence = Sequence(observations)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    file_dataset = pydicom.FileDataset(str(output), dataset, file_meta=meta, preamble=b"\0" * 128)
    with atomic_file(output, inputs=[source]) as staging:
        file_dataset.save_as(staging, enforce_file_format=True)
    return numbers


def _frame_of_reference(header: Any, source: Path) -> str:
    uid = str(getattr(header, "FrameOfReferenceUID", "") or "")
    if not uid:
        raise ValueError(
            f"{source}: its headers name no FrameOfReferenceUID, which places a structure set's contours on "
            "the images. Write NIfTI instead (.nii.gz)."
        )
    return uid


def _unique_images(stack: Any) -> list[Any]:
    """The stack's planes, one per image instance and frame (a multi-frame file's frames each)."""
    return list({(plane.sop_instance_uid, plane.frame): plane for plane in stack.planes}.values())


def _image_reference(plane: Any) -> Any:
    """A Contour Image Sequence item: the image (and frame) a contour lies on."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = plane.sop_class_uid
    item.ReferencedSOPInstanceUID = plane.sop_instance_uid
    if plane.frame is not None:
        item.ReferencedFrameNumber = plane.frame
    return item
