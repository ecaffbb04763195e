# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""3D Slicer's segmentation files (`.seg.nrrd`): an NRRD label map whose header names its segments.

Slicer keeps a segmentation as an NRRD file (`itk_files`) with fields of its own, `Segmentation_*` for the
whole and `Segment<N>_*` for segment N (from 0): its name, label value, layer, colour and extent. Slicer
numbers segments in the order they were added, so two files may give one structure different values: a
segmentation is read by its segments' names (`slicer_segment_names`), as a DICOM-SEG is.
"""

from __future__ import annotations

from pathlib import Path

from msa_hf.data.itk_files import ItkReadError, is_itk_file, read_itk_header


def slicer_segment_names(metadata: dict[str, str]) -> dict[int, str]:
    """The structure names of a 3D Slicer segmentation (`.seg.nrrd`) by label value, from its header
    (`Segment<N>_Name`, `Segment<N>_LabelValue`); empty for any other file. Slicer numbers segments from 0
    and gives each a label value within its layer."""
    names: dict[int, str] = {}
    index = 0
    while f"Segment{index}_Name" in metadata:
        value = metadata.get(f"Segment{index}_LabelValue", str(index + 1))
        if value.strip().lstrip("-").isdigit():
            names[int(value)] = metadata[f"Segment{index}_Name"].strip()
        index += 1
    return names


def slicer_segmentation_names(path: str | Path) -> dict[int, str]:
    """`slicer_segment_names` of the file at `path`: `{label value: segment name}` of a 3D Slicer segmentation,
    empty for any other file (a NRRD or MetaImage without segments, an unreadable one, anything else)."""
    if not is_itk_file(path) or not Path(path).is_file():
        return {}
    try:
        return slicer_segment_names(read_itk_header(path).metadata)
    except ItkReadError:  # its reader says why, when the file is read
        return {}
