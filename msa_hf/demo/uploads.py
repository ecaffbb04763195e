# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Files opened in the demo: what the visitor sees of them and what the model segments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MAX_SIDE = 4096  # larger uploads are refused with a message, not processed for minutes
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm"]


def display_image(raw: np.ndarray, modality: str, window: Any = None) -> np.ndarray:
    """What the user sees of a raw image: `(H, W)` uint8 after the intensity transform the model was trained
    with (CT `window`, default by modality; MR percentiles), or the `(H, W, 3)` uint8 picture itself."""
    from msa_hf.data.transforms import intensity_transform_for

    if raw.ndim == 3:
        return raw
    scaled = intensity_transform_for(modality, raw.dtype, window)(raw.astype(np.float32))
    return (np.clip(np.asarray(scaled), 0, 1) * 255).astype(np.uint8)


def read_upload(path: str, window: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    """An uploaded 2-D file -> `(display image, raw image, modality)`; DICOM keeps its units (HU for CT), and
    is shown through the served model's CT `window`.

    Raises:
        ValueError: an unsupported type, an unreadable file, or an image larger than `MAX_SIDE`.
    """
    from msa_hf.data import is_dicom_file, read_dicom_image, read_image

    name = Path(path).name
    from msa_hf.data.volumes import is_volume_file

    if is_volume_file(path) or Path(path).suffix.lower() == ".gz":
        raise ValueError(f"{name} is a volume: open it in the 'volume' tab.")
    try:
        if is_dicom_file(path):
            raw, modality = read_dicom_image(path)
        elif Path(path).suffix.lower() in IMAGE_TYPES:
            raw, modality = read_image(path), "other"
        else:
            raise ValueError(f"{name}: not a supported image; upload PNG, JPEG, TIFF, BMP or DICOM (.dcm).")
    except (ValueError, OSError) as error:
        raise ValueError(without_server_paths(str(error), [path])) from None
    if max(raw.shape[:2]) > MAX_SIDE:
        raise ValueError(
            f"{name}: {raw.shape[1]}x{raw.shape[0]} pixels; the demo takes up to {MAX_SIDE} a side."
        )
    return display_image(raw, modality, window), raw, modality


# a zip of DICOM files (a PACS export, whose files often have no suffix the browser's file picker lets through)
MAX_ZIP_BYTES = 2 * 1024**3  # what its DICOM files may hold unpacked: a 1,024-slice series is about 0.5 GB
MAX_ZIP_FILES = 10_000


def unpack_dicom_zip(path: str | Path, folder: Path, first: int = 0) -> int:
    """`dicom_zips.unpack_dicom_zip` within the demo's limits (`MAX_ZIP_FILES`, `MAX_ZIP_BYTES`)."""
    from msa_hf.data.dicom_zips import unpack_dicom_zip as unpack

    return unpack(path, folder, first, MAX_ZIP_FILES, MAX_ZIP_BYTES, limits_of="the demo")


def without_server_paths(message: str, paths: list[str]) -> str:
    """`message` with each of the server's upload `paths` replaced by the file's own name: a visitor sees
    which of their files is wrong, never where the server keeps it."""
    for path in sorted(paths, key=len, reverse=True):
        message = message.replace(str(path), Path(path).name)
        message = message.replace(str(Path(path).parent), "upload")
    return message


def belongs_to(image: np.ndarray | None, raw: dict[str, Any] | None) -> bool:
    """Whether `raw` (an opened file's data) is the file of the picture `image` on screen (an upload or an
    example may have replaced it since)."""
    if image is None or raw is None:
        return False
    image, shown = np.asarray(image), np.asarray(raw["shown"])
    first = image[..., 0] if image.ndim == 3 else image
    return first.shape == shown.shape[:2] and np.array_equal(
        first, shown if shown.ndim == 2 else shown[..., 0]
    )


def source_of(image: np.ndarray, raw: dict[str, Any] | None) -> tuple[np.ndarray, str]:
    """What to segment for the picture on screen: the opened file's raw data (DICOM in HU, 16-bit PNG) when
    `raw` belongs to that picture, else the picture itself (an upload or an example replaced it)."""
    if belongs_to(image, raw):
        return np.asarray(raw["image"]), raw["modality"]
    return np.asarray(image), "other"
