# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""DICOM-SEG output: a predicted label volume written as a DICOM Segmentation of the series it was made from.

Hospitals' viewers and PACS read segmentations as DICOM-SEG objects that reference the source series'
instances. The label volume is mapped back onto the series' own grid (each instance's rows and columns, in
the slice order `dicom_series_slices` gives) and written with `highdicom` (the `dicom` extra:
`pip install "msa_hf[dicom]"`) as a binary segmentation, one segment per label value present, numbered from 1
in value order and labelled with the given names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from msa_hf.output_files import atomic_file

SOFTWARE = "msa_hf"


def _highdicom():
    from msa_hf.data.volumes import import_highdicom

    return import_highdicom("writing DICOM-SEG")


def labels_on_series_grid(
    folder: Path,
    canonical: np.ndarray,
    canonical_affine: np.ndarray,
    slices: Any = None,
    series: str | None = None,
) -> np.ndarray:
    """A RAS+ label volume `(X, Y, Z)` (as `load_volume` gives the series) as `(instances, rows, columns)`,
    instance k being the k-th slice of `dicom_series_slices(folder, series)` (pass its result as `slices` when
    it is already read: the series is then not read again)."""
    from msa_hf.data.volumes import dicom_series_slices

    found, affine = slices if slices is not None else dicom_series_slices(folder, series)
    return _labels_on_grid(
        canonical,
        canonical_affine,
        affine,
        (int(found[0][1].Columns), int(found[0][1].Rows), len(found)),
        folder,
    )


def _labels_on_grid(
    canonical: np.ndarray,
    canonical_affine: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    folder: Any,
) -> np.ndarray:
    """A RAS+ label volume `(X, Y, Z)` on a DICOM grid of `shape` (columns, rows, slices) and RAS `affine`, as
    `(slices, rows, columns)`."""
    from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

    transform = ornt_transform(io_orientation(canonical_affine), io_orientation(affine))
    grid = apply_orientation(canonical, transform)  # (columns, rows, slices)
    if grid.shape != shape:
        raise ValueError(
            f"the label volume {canonical.shape} does not lie on the grid of the series in {folder}."
        )
    return np.ascontiguousarray(grid.transpose(2, 1, 0))


def _sources_and_labels(
    folder: Path, series: str | None, canonical: np.ndarray, canonical_affine: np.ndarray
) -> tuple[list[Any], np.ndarray]:
    """The source images a DICOM-SEG references and the label volume as its frames `(frames, rows, columns)`,
    frame k on source frame k: a series' instances in position order, or an enhanced multi-frame file's own
    frames (in the file's frame order, which highdicom maps frame to frame)."""
    from msa_hf.data.dicom_stacks import enhanced_grid
    from msa_hf.data.volumes import dicom_series_slices

    enhanced = enhanced_grid(folder, series, pixels=True)  # `folder` may be an enhanced file itself
    check_seg_source(folder, series, None if enhanced is None else enhanced.frames)
    if enhanced is None:
        slices = dicom_series_slices(folder, series)  # read once: the grid for the labels, the sources
        return [dataset for _, dataset in slices[0]], labels_on_series_grid(
            folder, canonical, canonical_affine, slices
        )
    dataset, order = enhanced.dataset, enhanced.order
    in_position_order = _labels_on_grid(canonical, canonical_affine, enhanced.affine, enhanced.shape, folder)
    # one frame per frame of the file: the stack's hold the labels (position k is frame order[k]); the frames
    # of the file's other volumes stay empty, and empty frames are left out of the segmentation
    frames = np.zeros((int(dataset.NumberOfFrames), *in_position_order.shape[1:]), in_position_order.dtype)
    frames[order] = in_position_order
    return [dataset], frames


def check_seg_source(source: str | Path, series: str | None, frame_indices: tuple[int, ...] | None) -> None:
    """Refuse a DICOM-SEG of one volume of an enhanced file that holds several at the same positions (an echo,
    a phase: the chosen stack names `frame_indices`, `DicomStack.frame_indices`): a segmentation's frames are
    matched to the source's by position, and there each position is several frames."""
    if frame_indices is not None:
        raise ValueError(
            f"{source}: {series or 'the chosen stack'} is one of several volumes in one enhanced DICOM file, at "
            "the same positions as the others, and a DICOM-SEG cannot say which of them it segments. Write the "
            "mask as NIfTI (.nii.gz), or export that volume as a series of its own first."
        )


def series_description(source: Any) -> str:
    """What a PACS lists the segmentation series as: `MSA segmentation of <the source series' description>`,
    within the 64 characters DICOM allows."""
    described = str(getattr(source, "SeriesDescription", "") or "").strip()
    return (f"MSA segmentation of {described}" if described else "MSA segmentation")[:64]


def write_dicom_seg(
    folder: str | Path,
    canonical: np.ndarray,
    canonical_affine: np.ndarray,
    output: str | Path,
    names: dict[int, str] | None = None,
    model_name: str = "MSA",
    series: str | None = None,
) -> dict[int, int]:
    """Write `canonical` (a RAS+ label volume of the series in `folder`, or of the stack `series` chooses
    there: `msa_hf.data.dicom_stacks`) as a DICOM-SEG file referencing that series' instances (or the frames
    of an enhanced multi-frame file, which `folder` may also name itself).

    Each label value present becomes a segment (numbered from 1 in value order, labelled `names[value]` or
    "structure <value>"), marked semi-automatic (a prompted model) and attributed to msa_hf and `model_name`.
    Empty frames are left out, as the standard allows. The file is written whole or not at all. Returns
    `{label value: segment number}`.
    """
    highdicom = _highdicom()
    from pydicom.sr.codedict import codes

    from msa_hf import __version__

    folder, output = Path(folder), Path(output)
    sources, labels = _sources_and_labels(folder, series, canonical, canonical_affine)
    values = [int(v) for v in np.unique(labels) if v != 0]
    if not values:
        raise ValueError(
            f"nothing was segmented in {folder}: a DICOM-SEG needs at least one non-empty segment."
        )
    numbers = {value: number for number, value in enumerate(values, start=1)}
    segment_map = np.zeros(labels.shape, np.uint8 if len(values) < 256 else np.uint16)
    for value, number in numbers.items():
        segment_map[labels == value] = number
    algorithm = highdicom.AlgorithmIdentificationSequence(
        name=SOFTWARE, version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        highdicom.seg.SegmentDescription(
            segment_number=number,
            segment_label=(names or {}).get(value, f"structure {value}"),
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm,
        )
        for value, number in numbers.items()
    ]
    try:
        segmentation = highdicom.seg.Segmentation(
            source_images=sources,
            pixel_array=segment_map,
            segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=highdicom.UID(),
            series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
            sop_instance_uid=highdicom.UID(),
            instance_number=1,
            manufacturer=SOFTWARE,
            manufacturer_model_name=model_name[:64],
            software_versions=__version__,
            device_serial_number="none",
            series_description=series_description(sources[0]),
        )
    except (AttributeError, ValueError, TypeError) as error:
        raise ValueError(
            f"{folder}: cannot make a DICOM-SEG of this series ({type(error).__name__}: {error}); its headers may "
            "lack attributes a segmentation must copy (patient and study). Write NIfTI instead (.nii.gz)."
        ) from error
    with atomic_file(output, inputs=[folder]) as staging:
        segmentation.save_as(staging)
    return numbers
