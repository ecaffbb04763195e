# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""3D Slicer's segmentation files (`.seg.nrrd`): an NRRD label map whose header names its segments.

Slicer keeps a segmentation as an NRRD file (`itk_files`) with fields of its own, `Segmentation_*` for the
whole and `Segment<N>_*` for segment N (from 0): its name, label value, layer, colour and extent. Slicer
numbers segments in the order they were added, so two files may give one structure different values: a
segmentation is read by its segments' names (`slicer_segment_names`), as a DICOM-SEG is. A label map written
as `.seg.nrrd` (`write_slicer_segmentation`) carries those fields, so Slicer opens it as a segmentation whose
segments are named and coloured, not as a scalar volume to be converted; other NRRD readers read it as the
label map it is.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from msa_hf.data.itk_files import (
    ItkReadError,
    is_itk_file,
    read_itk_header,
    read_itk_voxels,
    write_itk_volume,
)

if TYPE_CHECKING:
    from pydicom.sr.coding import Code

    from msa_hf.data.structure_codes import StructureCode
    from msa_hf.data.volumes import Volume

SLICER_SEGMENTATION_SUFFIX = ".seg.nrrd"
EMPTY_EXTENT = "0 -1 0 -1 0 -1"  # how Slicer records the extent of a segment with no voxel
# what Slicer reads a file's voxels as: a binary label map (its other kinds, fractional maps, are not written)
BINARY_LABELMAP = "Binary labelmap"
# Slicer's terminology lists of the DICOM standard's segmentation codes (CID 7150 and its types; anatomic
# regions): a segment's `TerminologyEntry` names its codes' lists
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


def is_slicer_segmentation_path(path: str | Path) -> bool:
    """Whether `path` is named as 3D Slicer names a segmentation (`case.seg.nrrd`)."""
    return Path(path).name.lower().endswith(SLICER_SEGMENTATION_SUFFIX)


@dataclass(frozen=True)
class SlicerSegment:
    """One segment of a 3D Slicer segmentation: its name, the layer (component) it lies in, the value its
    voxels hold there, and the standard codes its terminology gives it (`read_terminology_entry`)."""

    name: str
    layer: int
    label_value: int
    code: StructureCode | None = None


def slicer_segments(metadata: Mapping[str, str]) -> list[SlicerSegment]:
    """The segments a 3D Slicer segmentation's header lists (`Segment<N>_Name`, `_Layer`, `_LabelValue`), in
    its order; none for any other file. A segment without a layer lies in the first, one without a label value
    holds its position from 1 (as files of older Slicer versions)."""
    segments = []
    index = 0
    while f"Segment{index}_Name" in metadata:
        value = metadata.get(f"Segment{index}_LabelValue", str(index + 1)).strip()
        layer = metadata.get(f"Segment{index}_Layer", "0").strip()
        if value.isdigit() and layer.isdigit():
            code = read_terminology_entry(metadata.get(f"Segment{index}_Tags", ""))
            segments.append(
                SlicerSegment(metadata[f"Segment{index}_Name"].strip(), int(layer), int(value), code)
            )
        index += 1
    return segments


def slicer_segment_names(metadata: Mapping[str, str]) -> dict[int, str]:
    """The structure names of a 3D Slicer segmentation by the value each is read with, from its header; empty
    for any other file. Its label value; where layers (of segments that overlap) number their segments alike,
    as Slicer numbers each from 1, its position from 1, the value Slicer's export to a labelmap gives it."""
    return names_by_value(slicer_segments(metadata))


def codes_by_name(segments: list[SlicerSegment]) -> dict[str, StructureCode]:
    """`{segment name: code}` of the segments whose terminology codes a structure."""
    return {segment.name: segment.code for segment in segments if segment.code is not None}


def names_by_value(segments: list[SlicerSegment]) -> dict[int, str]:
    """`slicer_segment_names` of segments already read from a header (`slicer_segments`)."""
    values = [segment.label_value for segment in segments]
    if len(set(values)) < len(values):  # layers numbering their segments alike (Slicer's own, from 1 each)
        return {index: segment.name for index, segment in enumerate(segments, start=1)}
    return {segment.label_value: segment.name for segment in segments}


def slicer_segmentation_names(path: str | Path) -> dict[int, str]:
    """`slicer_segment_names` of the file at `path`: `{value: segment name}` of a 3D Slicer segmentation,
    empty for any other file (a NRRD or MetaImage without segments, an unreadable one, anything else)."""
    return slicer_segment_names(header_fields(path))


def header_fields(path: str | Path) -> Mapping[str, str]:
    """The header fields of the NRRD or MetaImage file at `path` (where a 3D Slicer segmentation lists its
    segments); empty for any other file or an unreadable one (its reader says why, when the file is read)."""
    if not is_itk_file(path) or not Path(path).is_file():
        return {}
    try:
        return read_itk_header(path).metadata
    except ItkReadError:
        return {}


def is_slicer_segmentation(path: str | Path) -> bool:
    """Whether `path` is a 3D Slicer segmentation: an NRRD file whose header lists segments (whatever its
    name; `is_slicer_segmentation_path` is the name alone)."""
    return bool(slicer_segmentation_names(path))


def load_slicer_labels(
    path: str | Path, values: Mapping[str, int] | None = None, overlapping: bool | None = False
) -> tuple[Volume, bool]:
    """The structures of a 3D Slicer segmentation as a RAS+ label volume, each segment valued by its name
    through `values` (`{name: value}`; a segment it does not name is left out; default: the file's own,
    `slicer_segment_names`), and whether the volume holds bits: segments that overlap (several layers) as the
    bits of each pixel's code with `overlapping`, where they overlap with `overlapping=None`
    (`dicom_seg_labels.segments_label_map`).

    Raises:
        VolumeReadError: not readable, a segment in a layer the file lacks, or with `overlapping=False`
            segments that overlap (`OverlappingStructuresError`).
    """
    from msa_hf.data.dicom_seg_labels import segments_label_map, too_many_overlapping
    from msa_hf.data.label_tables import remap_label_values
    from msa_hf.data.size_limits import InputTooLargeError, check_voxel_count
    from msa_hf.data.structure_codes import values_by_concept
    from msa_hf.data.volumes import VolumeReadError, canonical_volume

    try:
        header = read_itk_header(path)
        check_voxel_count(header.shape, str(path))
        voxels = read_itk_voxels(path)
    except (ItkReadError, InputTooLargeError) as error:
        raise VolumeReadError(str(error)) from error
    segments = slicer_segments(header.metadata)
    own = {name: value for value, name in names_by_value(segments).items()}
    # a segment named otherwise than the table names its structure (Kidney_L, left kidney; by its terminology)
    codes = codes_by_name(segments)
    values = (
        own if values is None else values_by_concept(values, [segment.name for segment in segments], codes)
    )
    layers = voxels if voxels.ndim == 4 else voxels[..., None]
    if voxels.ndim == 3 and not overlapping:  # one value per voxel already: each value becomes its name's
        remap = {segment.label_value: values.get(segment.name, 0) for segment in segments}
        return canonical_volume(remap_label_values(voxels, remap), header.affine, str(path), True), False
    beyond = [segment.name for segment in segments if segment.layer >= layers.shape[3]]
    if beyond:
        raise VolumeReadError(
            f"{path}: segments {beyond} lie in layers the file does not hold (it holds {layers.shape[3]}); "
            "save the segmentation again in Slicer."
        )
    try:
        labels, bits = segments_label_map(
            layers.shape[:3],
            lambda: (
                (segment.name, layers[..., segment.layer] == segment.label_value) for segment in segments
            ),
            values,
            overlapping,
            str(path),
        )
    except VolumeReadError:
        raise
    except ValueError:  # overlapping, and a value beyond the code's bits
        raise too_many_overlapping(path, values) from None
    return canonical_volume(labels, header.affine, str(path), is_label=True), bits


def slicer_layers(masks: Mapping[int, np.ndarray]) -> np.ndarray:
    """Structures that may overlap (`{label value: mask}`, bool masks of one shape `(I, J, K)`) as the layers a
    3D Slicer segmentation keeps them in, `(I, J, K, L)`: each structure, in value order, in the first layer
    where it overlaps none already there (a new one where it overlaps in all), holding its own value; so a
    structure lies in one layer, and as few layers as the overlaps need (one where none overlap)."""
    shape = next(iter(masks.values())).shape
    top = max(masks, default=0)
    layers = [np.zeros(shape, np.uint8 if top <= 255 else np.uint16)]
    for value in sorted(masks):
        mask = masks[value]
        layer = next((layer for layer in layers if not layer[mask].any()), None)
        if layer is None:
            layers.append(layer := np.zeros_like(layers[0]))
        layer[mask] = value
    return np.stack(layers, axis=-1)


def slicer_segmentation_fields(labels: np.ndarray, names: Mapping[int, str]) -> dict[str, str]:
    """The header fields that make the label map `labels` `(I, J, K)`, or its layers `(I, J, K, L)`
    (`slicer_layers`: a structure's value in one layer), integers with 0 the background, a 3D Slicer
    segmentation: one segment per structure of `names` (`{label value: name}`, as written: every structure,
    also one with no voxel) and per other value present (named "structure <value>"), in value order, each
    with its name, label value, layer, a colour (`structure_colour`) and its extent in voxels (`min max` of
    I, J and K; Slicer's `0 -1 ...` for an empty one), and the standard codes its name denotes, where it
    denotes some (`structure_codes`), as its terminology (`terminology_entry`)."""
    from msa_hf.data.label_tables import output_structure_names
    from msa_hf.data.structure_codes import structure_code
    from msa_hf.data.structure_colours import structure_colour

    layers = labels if labels.ndim == 4 else labels[..., None]
    named = {int(value): _header_text(str(name or "")) for value, name in names.items()}
    present = {int(value) for value in np.unique(layers) if value}
    segments = output_structure_names(sorted(present | set(named)), named)
    fields = {
        "Segmentation_MasterRepresentation": BINARY_LABELMAP,  # Slicer before 5.4 reads this name
        "Segmentation_SourceRepresentation": BINARY_LABELMAP,
        "Segmentation_ContainedRepresentationNames": f"{BINARY_LABELMAP}|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    for index, (value, name) in enumerate(segments.items()):
        # a structure lies in one layer (an empty one in the first): its voxels there give its extent
        masks = (layers[..., i] == value for i in range(layers.shape[3]))
        layer, mask = next(((i, m) for i, m in enumerate(masks) if m.any()), (0, None))
        fields.update(
            {
                f"Segment{index}_ID": f"Segment_{value}",
                f"Segment{index}_Name": name,
                f"Segment{index}_NameAutoGenerated": "0" if named.get(value) else "1",
                f"Segment{index}_Color": " ".join(f"{c:g}" for c in structure_colour(index)),
                f"Segment{index}_ColorAutoGenerated": "1",
                f"Segment{index}_Extent": EMPTY_EXTENT if mask is None else _extent(mask),
                f"Segment{index}_Layer": str(layer),
                f"Segment{index}_LabelValue": str(value),
            }
        )
        code = structure_code(named.get(value))
        if code is not None:
            fields[f"Segment{index}_Tags"] = f"TerminologyEntry:{terminology_entry(code)}|"
    return fields


def terminology_entry(code: StructureCode) -> str:
    """3D Slicer's `TerminologyEntry` of a segment coded `code`: the context, category, type and type
    modifier, then the anatomic context, region and region modifier, `~` apart, each code as
    `scheme^value^meaning` (empty: `^^`). The codes are the DICOM standard's (`structure_codes`), so the
    contexts are Slicer's DICOM master lists."""

    def coded(concept: Code | None) -> str:
        if concept is None:
            return "^^"
        return "^".join((concept.scheme_designator, concept.value, concept.meaning))

    return "~".join(
        (
            TERMINOLOGY_CONTEXT,
            coded(code.category),
            coded(code.type),
            coded(code.laterality),
            ANATOMIC_CONTEXT,
            coded(code.region),
            coded(code.region_laterality),
        )
    )


def read_terminology_entry(tags: str) -> StructureCode | None:
    """The codes of a segment's `Segment<N>_Tags` field (`|`-separated `key:value` tags) from its
    `TerminologyEntry` tag, as `terminology_entry` writes it and 3D Slicer does, whatever the context (Slicer's
    own anatomy lists use the standard's codes too): category, type, type modifier (the laterality), anatomic
    region and its modifier. None without the tag, with an empty category or type, or without pydicom."""
    entry = next(
        (tag.partition(":")[2] for tag in tags.split("|") if tag.strip().startswith("TerminologyEntry:")),
        None,
    )
    parts = entry.split("~") if entry else []
    if len(parts) < 3:
        return None
    try:
        from pydicom.sr.coding import Code
    except ImportError:
        return None
    from msa_hf.data.structure_codes import StructureCode

    def coded(index: int) -> Code | None:
        scheme, _, rest = (parts[index] if index < len(parts) else "").partition("^")
        value, _, meaning = rest.partition("^")
        return (
            Code(value.strip(), scheme.strip(), meaning.strip()) if scheme.strip() and value.strip() else None
        )

    category, kind = coded(1), coded(2)
    if category is None or kind is None:
        return None
    return StructureCode(category, kind, coded(3), coded(5), coded(6))


def write_slicer_segmentation(
    labels: np.ndarray, affine: np.ndarray, path: str | Path, names: Mapping[int, str] | None = None
) -> None:
    """Write the label map `labels` `(I, J, K)`, or its layers `(I, J, K, L)` (`slicer_layers`), on the RAS
    affine `(4, 4)` as a 3D Slicer segmentation (`.seg.nrrd`): an NRRD label map (layers along its first
    axis, of kind `list`, as Slicer writes them) with its segments named by `names` (`{label value: name}`;
    `slicer_segmentation_fields`).

    Raises:
        ValueError: `labels` are not integers (a float map is no segmentation: write it as `.nrrd`).
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "ui":
        raise ValueError(
            f"{path}: a 3D Slicer segmentation holds label values, not {labels.dtype} values; write a float map "
            "as .nrrd."
        )
    write_itk_volume(labels, affine, path, slicer_segmentation_fields(labels, names or {}))
    if labels.ndim == 4:  # ITK calls the layers' axis a vector; Slicer (and slicerio) read it as a list
        _layers_as_list(Path(path))


def _layers_as_list(path: Path) -> None:
    """Rename the first axis' kind in an attached NRRD header from `vector` to `list`. The data start after
    the header's first empty line wherever it ends, so the header may change length."""
    content = path.read_bytes()
    header, blank, data = content.partition(b"\n\n")
    lines = [
        b"kinds: list" + line.removeprefix(b"kinds: vector") if line.startswith(b"kinds: vector") else line
        for line in header.split(b"\n")
    ]
    path.write_bytes(b"\n".join(lines) + blank + data)


def _header_text(text: str) -> str:
    """`text` as one header line holds it: control characters (a line break would end the field) as spaces."""
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in text).strip()


def _extent(mask: np.ndarray) -> str:
    """`minI maxI minJ maxJ minK maxK` of the voxels of `mask` `(I, J, K)`, which holds some."""
    bounds = []
    for axis in range(3):
        filled = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        bounds += [int(filled[0]), int(filled[-1])]
    return " ".join(map(str, bounds))
