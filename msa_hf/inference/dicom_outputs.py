# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The DICOM objects a DICOM series' mask may be written as, and the one place that chooses the writer.

`seg`: a DICOM Segmentation (`dicom_seg`), which viewers and PACS show over the series; `rtstruct`: an RT
Structure Set (`rtstruct`), the contours radiotherapy planning systems import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from msa_hf.data.dicom_planes import DICOM_LABEL_KINDS, Structures

DICOM_OUTPUTS = tuple(DICOM_LABEL_KINDS)  # what a mask may be written as: the kinds read as labels
DICOM_OUTPUT_NAMES = {"seg": "a DICOM-SEG", "rtstruct": "an RT structure set"}  # as a message says them
# a segment label or ROI name is a DICOM LO value: at most 64 characters, which validators (and fixed-size
# readers) count in bytes, so a name is kept to 64 bytes of UTF-8
DICOM_NAME_BYTES = 64


def dicom_text(text: str) -> str:
    """`text` as a DICOM LO value holds it (a description, a model's name): at most `DICOM_NAME_BYTES` bytes."""
    from msa_hf.data.label_tables import utf8_prefix

    return utf8_prefix(text, DICOM_NAME_BYTES)


def series_description(source: Any, what: str) -> str:
    """What a PACS lists a written series as: `<what> of <the source series' description>` ("MSA
    segmentation of Abdomen axial"), or `what` where the source has none; as `dicom_text` holds it."""
    described = str(getattr(source, "SeriesDescription", "") or "").strip()
    return dicom_text(f"{what} of {described}" if described else what)


def dicom_structure_names(values: Iterable[int], names: Mapping[int, str] | None) -> dict[int, str]:
    """`{label value: name}` as a DICOM object labels its structures (segment labels, ROI names):
    `label_tables.output_structure_names`, at most the 64 bytes of UTF-8 a DICOM LO value holds (planning
    systems also refuse two structures of one name)."""
    from msa_hf.data.label_tables import output_structure_names

    return output_structure_names(values, names, max_bytes=DICOM_NAME_BYTES)


def check_dicom_output(kind: str) -> str:
    """`kind` checked against `DICOM_OUTPUTS`; raises `ValueError` naming them."""
    if kind not in DICOM_OUTPUTS:
        raise ValueError(f"dicom_output={kind!r}: a DICOM output is one of {', '.join(DICOM_OUTPUTS)}.")
    return kind


def write_dicom_output(
    kind: str,
    source: str | Path,
    canonical: Structures,
    canonical_affine: np.ndarray,
    output: str | Path,
    names: dict[int, str] | None = None,
    series: str | None = None,
) -> dict[int, int]:
    """Write the RAS+ label volume `canonical` `(X, Y, Z)` of the DICOM series (or enhanced file) `source`, or
    its structures' own masks `{label value: (X, Y, Z)}` (which may overlap, each written whole), as the DICOM
    object `kind` names, referencing that series (the stack `series` of it). Returns `{label value:
    segment or ROI number}`."""
    if check_dicom_output(kind) == "rtstruct":
        from msa_hf.inference.rtstruct import write_rtstruct

        writer: Any = write_rtstruct
    else:
        from msa_hf.inference.dicom_seg import write_dicom_seg

        writer = write_dicom_seg
    return writer(source, canonical, canonical_affine, output, names, series=series)
