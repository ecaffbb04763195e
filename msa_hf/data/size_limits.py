# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Size limits checked from a file's header before any voxel or pixel is read or allocated.

A NIfTI header can claim any shape: an 82-byte `.nii.gz` claiming 1200^3 voxels would make the reader
allocate gigabytes. So a header's size is checked against a limit and against what the file can hold: an
uncompressed file must contain every byte it declares, and gzip cannot shrink data by more than about
1032:1, so a compressed file smaller than its declared data / 1032 cannot be genuine. The same voxel limit
bounds resampling's target grid, and a pixel limit bounds 2-D images (Pillow's own bomb check answers
only above twice its limit).

The limits are environment variables, so a site with larger scans can raise them:
`MSA_HF_MAX_VOXELS` (default 600 million: a 512 x 512 x 2,000 CT is 524 million) and `MSA_HF_MAX_PIXELS`
(default 200 million: a 14,000 x 14,000 slide).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

DEFAULT_MAX_VOXELS = 600_000_000
DEFAULT_MAX_PIXELS = 200_000_000
GZIP_MAX_RATIO = 1032  # deflate's best case: 258-byte runs coded in about 2 bits


class InputTooLargeError(ValueError):
    """An input whose declared size is beyond the limits or beyond what its file can hold."""


def _limit(variable: str, default: int) -> int:
    value = os.environ.get(variable)
    if value is None:
        return default
    try:
        limit = int(value)
    except ValueError:
        raise ValueError(f"{variable}={value!r}: expected a whole number of voxels/pixels.") from None
    if limit < 1:
        raise ValueError(f"{variable}={value!r}: must be at least 1.")
    return limit


def max_voxels() -> int:
    """The voxel limit of one volume (`MSA_HF_MAX_VOXELS`)."""
    return _limit("MSA_HF_MAX_VOXELS", DEFAULT_MAX_VOXELS)


def max_pixels() -> int:
    """The pixel limit of one 2-D image (`MSA_HF_MAX_PIXELS`)."""
    return _limit("MSA_HF_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def check_voxel_count(shape: Sequence[int], what: str) -> None:
    """Refuse a volume of `shape` beyond `max_voxels()`; `what` names it in the message."""
    count = math.prod(int(n) for n in shape)
    if count > max_voxels():
        raise InputTooLargeError(
            f"{what}: {tuple(int(n) for n in shape)} is {count:,} voxels, over the limit of {max_voxels():,}. "
            "Crop or downsample it first, or raise MSA_HF_MAX_VOXELS if this machine has the memory."
        )


def check_nifti_size(path: str | Path, shape: Sequence[int], itemsize: int, data_offset: int) -> None:
    """Refuse a NIfTI whose header claims more voxels than the limit, or more data than the file holds."""
    path = Path(path)
    check_voxel_count(shape, str(path))
    declared = math.prod(int(n) for n in shape) * int(itemsize)
    size = path.stat().st_size
    compressed = path.suffix.lower() == ".gz"
    holds = size * GZIP_MAX_RATIO + 4096 if compressed else size - int(data_offset)
    if declared > holds:
        raise InputTooLargeError(
            f"{path}: its header declares {tuple(int(n) for n in shape)} voxels ({declared:,} bytes), but the "
            f"{size:,}-byte file {'cannot decompress to' if compressed else 'does not hold'} that much: the "
            "file is truncated or its header is wrong. Re-export the scan."
        )


def check_image_size(path: str | Path, width: int, height: int) -> None:
    """Refuse a 2-D image larger than `max_pixels()`, from its header."""
    if width * height > max_pixels():
        raise InputTooLargeError(
            f"{path}: {width} x {height} pixels ({width * height:,}) is over the limit of {max_pixels():,}. "
            "Downsample or tile it first, or raise MSA_HF_MAX_PIXELS if this machine has the memory."
        )
