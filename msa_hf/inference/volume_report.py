# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Volumetry a PACS keeps: each segmented structure's volume as a DICOM Structured Report.

A clinic reads a liver's volume before resection, or a tumour's at each follow-up, from a report filed with the
study, not from a file beside it. DICOM's Measurement Report (TID 1500, as a Comprehensive 3D SR) holds
measurements per region of interest; a volumetric one (TID 1411) references its region as a segment of a
DICOM Segmentation. `write_volume_report` writes one such group per segment of a DICOM-SEG that `predict`
wrote: the segment's own codes as the finding (what it is; an abnormal structure's region as its site), its
volume in millilitres (voxels counted times the voxel's true volume, as the summary's `volume_ml`), msa_hf and
the model as the observing device and the algorithm. Tools that read TID 1500 (3D Slicer's
QuantitativeReporting through dcmqi, PACS with measurement support) list the volumes by structure beside the
segmentation.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msa_hf.output_files import atomic_file

MILLILITRE = ("ml", "UCUM", "milliliter")  # UCUM's millilitre, as DICOM's measurement units code it
# the procedure a report measures (CID 100), by the images' modality; "Imaging procedure" for any other
PROCEDURES = {
    "CT": "CTUnspecifiedBodyRegion",
    "MR": "MRIUnspecifiedBodyRegion",
    "PT": "PETUnspecifiedBodyRegion",
    "NM": "NMUnspecifiedBodyRegion",
}


def write_volume_report(
    segmentation: str | Path,
    source: str | Path,
    volumes_ml: Mapping[int, float],
    output: str | Path,
    model_name: str = "MSA",
    series: str | None = None,
) -> None:
    """Write the volumes `volumes_ml` (`{segment number: mL}`) of the DICOM-SEG `segmentation`'s segments, drawn
    on the DICOM series (or enhanced file) `source` (its stack `series`), as a DICOM Measurement Report
    (Comprehensive 3D SR, TID 1500) at `output`: one volumetric group per segment, referencing the segment
    and the images it lies on, its finding the segment's codes, measured by msa_hf and `model_name`. Written
    whole or not at all.

    Raises:
        ValueError: `segmentation` is not a DICOM-SEG, or a volume names a segment it does not hold.
    """
    import highdicom
    import pydicom
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    from msa_hf import __version__
    from msa_hf.data.structure_codes import read_dicom_codes
    from msa_hf.inference.dicom_outputs import dicom_text, series_description

    segmentation, output = Path(segmentation), Path(output)
    seg = pydicom.dcmread(segmentation, stop_before_pixels=True)  # its segments and frames' references
    if str(seg.get("Modality", "")) != "SEG":
        raise ValueError(
            f"{segmentation}: not a DICOM-SEG; a volume report references a segmentation's segments."
        )
    segments = {int(item.SegmentNumber): item for item in seg.SegmentSequence}
    absent = sorted(set(volumes_ml) - set(segments))
    if absent:
        raise ValueError(f"{segmentation}: holds no segment {absent}; it has segments {sorted(segments)}.")
    images = _source_headers(Path(source), series)
    algorithm = highdicom.sr.AlgorithmIdentification(name="msa_hf", version=__version__)
    groups = []
    for number, millilitres in sorted(volumes_ml.items()):
        segment = segments[number]
        code = read_dicom_codes(segment, "SegmentedPropertyTypeCodeSequence")
        sites = []
        if code is not None and code.region is not None:  # an abnormal structure: the organ it lies in
            sites.append(highdicom.sr.FindingSite(code.region, laterality=code.region_laterality))
        elif code is not None and code.laterality is not None:  # a side of a paired organ
            sites.append(highdicom.sr.FindingSite(code.type, laterality=code.laterality))
        groups.append(
            highdicom.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=highdicom.sr.TrackingIdentifier(
                    uid=highdicom.UID(), identifier=dicom_text(str(segment.SegmentLabel))
                ),
                referenced_segment=_referenced_segment(seg, number),
                finding_type=code.type if code is not None else None,
                finding_category=code.category if code is not None else None,
                finding_sites=sites or None,
                algorithm_id=algorithm,
                measurements=[
                    highdicom.sr.Measurement(
                        name=codes.SCT.Volume,
                        value=round(float(millilitres), 4),
                        unit=Code(*MILLILITRE),
                        algorithm_id=algorithm,
                    )
                ],
            )
        )
    device = highdicom.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=highdicom.sr.DeviceObserverIdentifyingAttributes(
            uid=highdicom.UID(), name="msa_hf", manufacturer_name="msa_hf", model_name=dicom_text(model_name)
        ),
    )
    modality = str(images[0].get("Modality", ""))
    procedure = getattr(codes.cid100, PROCEDURES.get(modality, "ImagingProcedure"))
    report = highdicom.sr.MeasurementReport(
        observation_context=highdicom.sr.ObservationContext(observer_device_context=device),
        procedure_reported=procedure,
        imaging_measurements=groups,
    )
    now = datetime.datetime.now()
    document = highdicom.sr.Comprehensive3DSR(
        evidence=[seg, *images],
        content=report,
        series_instance_uid=highdicom.UID(),
        series_number=int(getattr(images[0], "SeriesNumber", 0) or 0) + 3000,
        sop_instance_uid=highdicom.UID(),
        instance_number=1,
        manufacturer="msa_hf",
        manufacturer_model_name=dicom_text(model_name),
        software_versions=__version__,
        series_description=series_description(images[0], "MSA volumes"),
        content_date=now.date(),
        content_time=now.time(),
    )
    with atomic_file(output, inputs=[segmentation, Path(source)]) as staging:
        document.save_as(staging, enforce_file_format=True)


def _source_headers(source: Path, series: str | None) -> list[Any]:
    """The headers of the images the stack `series` of `source` reads (a series' slices, or an enhanced file):
    the evidence a report lists beside the segmentation, as its segments' source images."""
    from msa_hf.data.dicom_stacks import read_stack

    images = read_stack(source, series)
    return (
        [images.enhanced.dataset]
        if images.enhanced is not None
        else [dataset for _, dataset in images.slices]
    )


def _referenced_segment(segmentation: Any, number: int) -> Any:
    """highdicom's reference to segment `number` of the DICOM-SEG dataset `segmentation` with the images its
    frames were derived from (each frame's Derivation Image Sequence); its segment identified per frame or,
    where the file holds one segment, in the shared functional groups, which highdicom's own
    `ReferencedSegment.from_segmentation` does not read. The source series where no frame names its images."""
    import highdicom

    shared = segmentation.SharedFunctionalGroupsSequence[0]
    images: dict[tuple[str, str, int | None], None] = {}
    for frame in segmentation.get("PerFrameFunctionalGroupsSequence", []):
        identified = frame if "SegmentIdentificationSequence" in frame else shared
        if int(identified.SegmentIdentificationSequence[0].ReferencedSegmentNumber) != number:
            continue
        for derivation in frame.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                at = int(source.ReferencedFrameNumber) if "ReferencedFrameNumber" in source else None
                images[(str(source.ReferencedSOPClassUID), str(source.ReferencedSOPInstanceUID), at)] = None
    reference = {
        "sop_class_uid": str(segmentation.SOPClassUID),
        "sop_instance_uid": str(segmentation.SOPInstanceUID),
    }
    if not images:
        series = str(segmentation.ReferencedSeriesSequence[0].SeriesInstanceUID)
        return highdicom.sr.ReferencedSegment(
            **reference, segment_number=number, source_series=highdicom.sr.SourceSeriesForSegmentation(series)
        )
    sources = [
        highdicom.sr.SourceImageForSegmentation(kind, uid, [at] if at is not None else None)
        for kind, uid, at in images
    ]
    return highdicom.sr.ReferencedSegment(**reference, segment_number=number, source_images=sources)
