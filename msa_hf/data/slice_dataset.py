# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The on-disk format: per-slice rows in Parquet, written case by case.

One row per 2-D image or per slice of a volume:

| column | type | meaning |
|---|---|---|
| `case_id` | string | patient / volume id; splits never cut through a case |
| `slice` | int32 | index along the slice axis (0 for 2-D images) |
| `num_slices` | int32 | slices of this case in the dataset |
| `image` | Image | the pixels, lossless: uint8/uint16 PNG, or float32 TIFF (CT in HU, MRI raw) |
| `label` | Image | label map, 0 = background, K = label value K (`classes.json`; regions: `regions.json`) |
| `labels_present` | list[int32] | label values in this slice (filter without decoding pixels) |
| `spacing` | float32[3] | (row, col, slice) in mm (1.0 for 2-D images, `spacing_unit`="pixel") |
| `spacing_unit` | string | "mm" or "pixel" |
| `affine` | float32[16] | RAS+ voxel -> world of the case volume (row-major 4x4; identity for 2-D) |
| `modality` | string | "CT", "MR" or "other"; picks the default intensity transform |

`SliceParquetWriter` appends each case as its own row group and closes the file cleanly, so a case that
fails to read never loses the cases written before it. The Parquet files carry the `datasets` feature
schema, so `load_dataset("parquet", data_dir=...)` (also with `streaming=True`) decodes images.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features, Image, List, Value

SLICE_FEATURES = Features(
    {
        "case_id": Value("string"),
        "slice": Value("int32"),
        "num_slices": Value("int32"),
        "image": Image(),
        "label": Image(),
        "labels_present": List(Value("int32")),
        "spacing": List(Value("float32"), length=3),
        "spacing_unit": Value("string"),
        "affine": List(Value("float32"), length=16),
        "modality": Value("string"),
    }
)

SPLITS = ("train", "validation", "test")


def slice_row(
    case_id: str,
    slice_index: int,
    num_slices: int,
    image: np.ndarray,
    label: np.ndarray,
    spacing: Iterable[float],
    spacing_unit: str,
    affine: np.ndarray,
    modality: str,
) -> dict[str, Any]:
    """One dataset row (not yet encoded). `image` `(H, W)` or `(H, W, 3)`, `label` `(H, W)` integers."""
    present = np.unique(label)
    return {
        "case_id": case_id,
        "slice": int(slice_index),
        "num_slices": int(num_slices),
        "image": image,
        "label": label,
        "labels_present": [int(v) for v in present if v != 0],
        "spacing": [float(s) for s in spacing],
        "spacing_unit": spacing_unit,
        "affine": np.asarray(affine, dtype=np.float32).reshape(16).tolist(),
        "modality": modality,
    }


def split_file(folder: str | Path, split: str) -> Path:
    """`<folder>/data/<split>-00000-of-00001.parquet`: the Hub's file naming, so splits are found by name."""
    return Path(folder) / "data" / f"{split}-00000-of-00001.parquet"


class SliceParquetWriter:
    """Append rows case by case to one Parquet file per split (each case = one row group)."""

    def __init__(self, path: str | Path, features: Features = SLICE_FEATURES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.features = features
        self.schema = features.arrow_schema
        self._writer: pq.ParquetWriter | None = None
        self.num_rows = 0

    def write_case(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        encoded = [self.features.encode_example(row) for row in rows]
        table = pa.Table.from_pylist(encoded, schema=self.schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema)
        self._writer.write_table(table)
        self.num_rows += len(rows)

    def close(self) -> None:
        if self._writer is None:  # an empty split still gets a valid (empty) file
            pq.write_table(self.schema.empty_table(), self.path)
        else:
            self._writer.close()

    def __enter__(self) -> SliceParquetWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
