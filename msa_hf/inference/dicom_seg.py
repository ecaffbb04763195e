# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""DICOM-SEG output: a predicted label volume written as a DICOM Segmentation of the series it was made from.

Hospitals' viewers and PACS read segmentations as DICOM-SEG objects that reference the source series'
instances. The label volume is mapped back onto the series' own grid (each instance's rows and columns, in
the slice order `dicom_stacks.read_stack` gives) and written with `highdicom` (the `dicom` extra:
`pip install "msa_hf[dicom]"`) as a binary segmentation, one segment per label value present, numbered from 1
in value order, labelled with the given names and coded by them (`structure_codes`). Given each structure's
own mask, segments may overlap (a tumour inside its organ), each kept whole, as a label volume cannot keep
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from msa_hf.data.dicom_planes import GridStructures, Structures
from msa_hf.data.structure_colours import structure_colour_bytes
from msa_hf.output_files import atomic_file

SOFTWARE = "msa_hf"


def _highdicom():
    from msa_hf.data.volumes import import_highdicom

    return import_highdicom("writing DICOM-SEG")


def labels_on_series_grid(
    folder: Path, canonical: np.ndarray, canonical_affine: np.ndarray, series: str | None = None
) -> np.ndarray:
    """A RAS+ label volume `(X, Y, Z)` (as `load_volume` gives the series) as `(slices, rows, columns)` on the
    chosen stack of `folder` (`dicom_stacks.read_stack`): slice k is its k-th instance in position order, or
    an enhanced file's k-th chosen frame."""
    from msa_hf.data.dicom_planes import labels_on_grid
    from msa_hf.data.dicom_stacks import read_stack

    images = read_stack(folder, series)
    return labels_on_grid(canonical, canonical_affine, images.affine, images.shape, folder)


@dataclass(frozen=True)
class _SegSource:
    """What a DICOM-SEG of one stack is built from (`_seg_source`): the `sources` it references, the label
    `values` of its segments (segment k + 1 is `values[k]`), its `frames` (`segment_pixels`), the `geometry`
    given to highdicom where the frames do not map one to one onto the source's, and the source frame numbers
    (from 1) the frames may reference (`referenced`; None: whichever highdicom matches)."""

    sources: list[Any]
    values: tuple[int, ...]
    frames: np.ndarray
    geometry: dict[str, Any] = field(default_factory=dict)
    referenced: frozenset[int] | None = None


def segment_pixels(structures: GridStructures) -> np.ndarray:
    """highdicom's pixel array of a binary segmentation whose segment k + 1 is `structures.values[k]`: one
    array `(frames, rows, columns)` of segment numbers where no two segments share a pixel (uint8, or uint16
    beyond 255 segments; a label map's values looked up, no mask made), else `(frames, rows, columns,
    segments)` of 0 and 1, where a pixel may be in several."""
    values = structures.values
    dtype = np.uint8 if len(values) < 256 else np.uint16
    if structures.labels is not None:  # segment k + 1 where the label map holds values[k]
        numbers = np.zeros(int(structures.labels.max()) + 1, dtype)
        numbers[list(values)] = np.arange(1, len(values) + 1)
        return numbers[structures.labels]
    masks = [structures.mask(value) for value in values]
    covered = np.zeros(masks[0].shape, np.uint16)
    for mask in masks:
        covered += mask
    if covered.max() > 1:  # overlapping segments: one channel each
        return np.stack(masks, axis=-1).astype(np.uint8)
    numbers = np.zeros(masks[0].shape, dtype)
    for number, mask in enumerate(masks, start=1):
        numbers[mask] = number
    return numbers


def _seg_source(
    folder: Path, series: str | None, canonical: Structures, canonical_affine: np.ndarray
) -> _SegSource:
    """The source images a DICOM-SEG references and the structures as its frames: a series' instances in
    position order (frame k on instance k); an enhanced multi-frame file's own frames (in the file's frame
    order, which highdicom maps frame to frame); or, for one of several volumes that an enhanced file holds at
    the same positions (an echo, a phase), that volume's frames in position order, placed by their positions
    and referencing that volume's frames alone."""
    from msa_hf.data.dicom_planes import structures_on_grid
    from msa_hf.data.dicom_stacks import read_stack

    images = read_stack(folder, series, pixels=True)  # `folder` may be an enhanced file itself
    structures = structures_on_grid(canonical, canonical_affine, images.affine, images.shape, folder)
    if not structures.values:
        raise ValueError(
            f"nothing was segmented in {folder}: a DICOM-SEG needs at least one non-empty segment."
        )
    values = structures.values
    in_position_order = segment_pixels(structures)
    enhanced = images.enhanced
    if enhanced is None:
        return _SegSource([dataset for _, dataset in images.slices], values, in_position_order)
    dataset, order = enhanced.dataset, enhanced.order
    if enhanced.frames is not None:
        # the file holds other volumes at the same positions: highdicom cannot match frames to frames by
        # position there, so the frames are placed explicitly and keep only their own volume's references
        return _SegSource(
            [dataset],
            values,
            in_position_order,
            _frame_geometry(enhanced),
            frozenset(frame + 1 for frame in enhanced.frames),
        )
    # one frame per frame of the file, in the file's order
    frames = np.zeros((int(dataset.NumberOfFrames), *in_position_order.shape[1:]), in_position_order.dtype)
    frames[order] = in_position_order
    return _SegSource([dataset], values, frames)


def _frame_geometry(enhanced: Any) -> dict[str, Any]:
    """highdicom's `plane_positions`, `plane_orientation` and `pixel_measures` for segmentation frames that lie
    on the frames of an enhanced file's chosen stack (`EnhancedGrid`), in position order: each frame's own
    position, the first's orientation and pixel spacing (the stack is one grid: `enhanced_frame_grid`), and
    the slice thickness (else the distance between positions)."""
    highdicom = _highdicom()
    from msa_hf.data.dicom_planes import enhanced_planes
    from msa_hf.data.volumes import frame_value

    patient = highdicom.CoordinateSystemNames.PATIENT
    planes = enhanced_planes(enhanced)
    first = planes[0]
    thickness = frame_value(enhanced.dataset, enhanced.order[0], "PixelMeasuresSequence", "SliceThickness")
    if thickness is None:
        thickness = float(np.linalg.norm(planes[1].position - first.position)) if len(planes) > 1 else 1.0
    return {
        "plane_positions": [highdicom.PlanePositionSequence(patient, plane.position) for plane in planes],
        "plane_orientation": highdicom.PlaneOrientationSequence(
            patient, [*first.row_cosine, *first.column_cosine]
        ),
        "pixel_measures": highdicom.PixelMeasuresSequence(list(first.spacing), float(thickness)),
    }


def _keep_references(segmentation: Any, referenced: frozenset[int]) -> None:
    """Each segmentation frame referencing the source frames `referenced` alone: highdicom references every
    source frame at a frame's position, which in a file of several volumes includes the other volumes'."""
    for group in segmentation.PerFrameFunctionalGroupsSequence:
        for derivation in group.get("DerivationImageSequence", []):
            derivation.SourceImageSequence = [
                item
                for item in derivation.SourceImageSequence
                if int(item.get("ReferencedFrameNumber", 0) or 0) in referenced
            ]


def _segment_description(number: int, label: str, name: str | None, algorithm: Any) -> Any:
    """highdicom's description of segment `number`, labelled `label`: the standard concept its structure's
    `name` denotes (`structure_codes.structure_code`; Tissue where none), a type's laterality as its
    modifier and an abnormal structure's anatomic region with the region's laterality; coloured as the
    structure's other written files colour it (`structure_colours`); semi-automatic, made by `algorithm`."""
    highdicom = _highdicom()
    from msa_hf.data.structure_codes import generic_code, structure_code

    code = structure_code(name) or generic_code()
    description = highdicom.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=code.category,
        segmented_property_type=code.type,
        algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=[code.region] if code.region is not None else None,
        display_color=highdicom.color.CIELabColor.from_rgb(*structure_colour_bytes(number - 1)),
    )
    if code.laterality is not None:
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            highdicom.sr.CodedConcept.from_code(code.laterality)
        ]
    if code.region_laterality is not None:
        description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [
            highdicom.sr.CodedConcept.from_code(code.region_laterality)
        ]
    return description


def write_dicom_seg(
    folder: str | Path,
    canonical: Structures,
    canonical_affine: np.ndarray,
    output: str | Path,
    names: dict[int, str] | None = None,
    model_name: str = "MSA",
    series: str | None = None,
) -> dict[int, int]:
    """Write `canonical` (a RAS+ label volume of the series in `folder`, or of the stack `series` chooses
    there: `msa_hf.data.dicom_stacks`; or `{label value: RAS+ mask}`, whose structures may overlap) as a
    DICOM-SEG file referencing that series' instances (or the frames of an enhanced multi-frame file, which
    `folder` may also name itself).

    Each label value present becomes a segment, whole where it overlaps another (`segment_pixels`), numbered
    from 1 in value order, labelled `names[value]` (or "structure <value>"; `dicom_structure_names`), coded
    and coloured by it (`_segment_description`), marked semi-automatic (a prompted model) and attributed to
    msa_hf and `model_name`.
    Empty frames are left out, as the standard allows. The file is written whole or not at all. Returns
    `{label value: segment number}`.
    """
    highdicom = _highdicom()
    from pydicom.sr.codedict import codes

    from msa_hf import __version__
    from msa_hf.inference.dicom_outputs import dicom_structure_names, dicom_text, series_description

    folder, output = Path(folder), Path(output)
    source = _seg_source(folder, series, canonical, canonical_affine)
    sources = source.sources
    numbers = {value: number for number, value in enumerate(source.values, start=1)}
    labels = dicom_structure_names(numbers, names)
    algorithm = highdicom.AlgorithmIdentificationSequence(
        name=SOFTWARE, version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        _segment_description(number, labels[value], (names or {}).get(value), algorithm)
        for value, number in numbers.items()
    ]
    try:
        segmentation = highdicom.seg.Segmentation(
            source_images=sources,
            pixel_array=source.frames,
            segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=highdicom.UID(),
            series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
            sop_instance_uid=highdicom.UID(),
            instance_number=1,
            manufacturer=SOFTWARE,
            manufacturer_model_name=dicom_text(model_name),
            software_versions=__version__,
            device_serial_number="none",
            series_description=series_description(sources[0], "MSA segmentation"),
            # UTF-8, as the RT structure set: names in any script, and the patient's copied whatever the
            # source's own character set (without one, a segment label beyond ASCII is invalid)
            specific_character_set="ISO_IR 192",
            **source.geometry,
        )
    except (AttributeError, ValueError, TypeError) as error:
        raise ValueError(
            f"{folder}: cannot make a DICOM-SEG of this series ({type(error).__name__}: {error}); its headers may "
            "lack attributes a segmentation must copy (patient and study). Write NIfTI instead (.nii.gz)."
        ) from error
    if source.referenced is not None:
        _keep_references(segmentation, source.referenced)
    with atomic_file(output, inputs=[folder]) as staging:
        segmentation.save_as(staging)
    return numbers
