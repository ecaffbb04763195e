# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Reading 2-D images and masks (PNG/JPEG/TIFF/BMP, 8- or 16-bit, grayscale or RGB; single DICOM images)
with checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msa_hf.data.label_tables import MAX_LABEL_VALUE, remap_label_values
from msa_hf.data.size_limits import InputTooLargeError, check_image_size
from msa_hf.data.transforms import check_finite

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom")
# More distinct values than this in a mask with no label table means it was not saved as labels (a JPEG
# or an antialiased resize); a label table raises the limit to exactly the values it lists.
MAX_MASK_LABELS = 64


class ImageReadError(ValueError):
    """An image or mask file that cannot be used; the message names the file and the fix."""


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """An image as `(H, W)` (grayscale, dtype kept: uint8, uint16, int32 or float32) or `(H, W, 3)` uint8.

    Alpha is dropped; palette images are converted to RGB.

    Raises:
        ImageReadError: unreadable/corrupt file, or NaN/Inf pixels in a float TIFF.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            check_image_size(path, *image.size)  # from the header, before the pixels are decoded
            image.load()
            if image.mode in ("P", "PA", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            elif image.mode in ("LA", "1"):
                image = image.convert("L")
            array = np.array(image)
    except InputTooLargeError as error:
        raise ImageReadError(str(error)) from error
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"{path}: cannot read the image ({type(error).__name__}: {error}).") from error
    if (
        array.ndim == 3
        and array.shape[-1] == 3
        and (array[..., 0] == array[..., 1]).all()
        and (array[..., 0] == array[..., 2]).all()
    ):
        array = array[..., 0]  # an RGB file holding a grayscale picture
    try:
        check_finite(array, str(path))
    except ValueError as error:
        raise ImageReadError(str(error)) from error
    return array


# what to do with a multi-frame DICOM file (an enhanced CT/MR series, an ultrasound loop), which is not read
MULTI_FRAME_ADVICE = (
    "msa_hf reads a volume as NIfTI, as a DICOM series of single-frame files, or as an enhanced multi-frame CT/MR "
    "file whose frames carry their positions: export the series as classic single-frame images from your PACS "
    "or viewer, or convert the file to NIfTI (for example with dcm2niix) and give the .nii.gz"
)
# what a DICOM compressed with a codec Pillow cannot decode (JPEG lossless or 12-bit, for example) needs
DICOM_DECODERS_HINT = (
    "Compressed transfer syntaxes need pydicom's pixel decoders (pip install pylibjpeg pylibjpeg-libjpeg)."
)


def is_dicom_file(path: str | Path) -> bool:
    """A single DICOM file: a `.dcm`/`.dicom` suffix, or the `DICM` marker at byte 128 (suffix-less exports)."""
    path = Path(path)
    return path.suffix.lower() in DICOM_SUFFIXES or has_dicom_marker(path)


def has_dicom_marker(path: str | Path) -> bool:
    """Whether the file at `path` starts as a DICOM file does: the `DICM` marker after the 128-byte preamble."""
    try:
        with Path(path).open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom_image(path: str | Path) -> tuple[np.ndarray, str]:
    """One 2-D DICOM image (X-ray, ultrasound, a single CT/MR slice) and its modality.

    Returns:
        `(image, modality)`: `(H, W)` float32 with rescale slope/intercept applied (Hounsfield units for CT;
        MONOCHROME1 inverted so that bright means dense), or `(H, W, 3)` uint8 for colour images; modality
        "CT", "MR" or "other".
    Raises:
        ImageReadError: not DICOM, no pixel data, undecodable (compressed without a decoder), or several frames
            (a multi-frame file is a volume: open it as one).
    """
    import pydicom

    try:
        dataset = pydicom.dcmread(path)
        if "PixelData" not in dataset:
            raise ImageReadError(f"{path}: a DICOM file without pixel data (a report or a DICOMDIR?).")
        pixels = dataset.pixel_array
    except ImageReadError:
        raise
    except Exception as error:
        raise ImageReadError(
            f"{path}: cannot read the DICOM image ({type(error).__name__}: {error}). {DICOM_DECODERS_HINT}"
        ) from error
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    colour = int(dataset.get("SamplesPerPixel", 1)) == 3
    if frames > 1 or pixels.ndim == (4 if colour else 3):
        raise ImageReadError(
            f"{path}: a DICOM file of {frames} frames (a multi-frame volume or cine loop), not one 2-D image; "
            f"{MULTI_FRAME_ADVICE}, or export the one frame to segment as an image."
        )
    modality = str(dataset.get("Modality", "other")).upper()
    modality = modality if modality in ("CT", "MR") else "other"
    if colour:
        if str(dataset.get("PhotometricInterpretation", "RGB")).startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, dataset.PhotometricInterpretation, "RGB")
        return np.asarray(pixels, dtype=np.uint8), modality
    array = pixels.astype(np.float32) * float(dataset.get("RescaleSlope", 1.0) or 1.0) + float(
        dataset.get("RescaleIntercept", 0.0) or 0.0
    )
    if str(dataset.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        array = array.max() + array.min() - array
    try:
        check_finite(array, str(path))
    except ValueError as error:
        raise ImageReadError(str(error)) from error
    return array, modality


def read_mask(
    path: str | Path,
    threshold: float | None = None,
    known_labels: set[int] | None = None,
    remap: dict[int, int] | None = None,
) -> np.ndarray:
    """A mask as an `(H, W)` label map (uint8, or uint16 for more than 255 labels); 0 is background.

    - `{0, 255}` (the usual binary PNG) becomes `{0, 1}`; other integer values are kept as labels.
    - `threshold` binarises instead (`value >= threshold` -> 1), for soft or JPEG masks.
    - `known_labels` (the label table's values) makes any other value an error.
    - `remap` (`{value in the file: value to read}`, `label_tables.remap_label_values`) is applied first.

    Raises:
        ImageReadError: colour masks, negative or fractional values, values outside `known_labels`, or more
            than `MAX_MASK_LABELS` distinct values with no table (a JPEG or a resized mask).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            check_image_size(path, *image.size)
            image.load()
            # a palette PNG stores the label in the index, which is what we want
            array = np.array(
                image if image.mode in ("P", "L", "I", "I;16", "F", "1") else image.convert("RGB")
            )
    except InputTooLargeError as error:
        raise ImageReadError(str(error)) from error
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"{path}: cannot read the mask ({type(error).__name__}: {error}).") from error
    if array.ndim == 3:
        if (array == array[..., :1]).all():
            array = array[..., 0]
        else:
            raise ImageReadError(
                f"{path}: colour mask (RGB values differ). Save masks as single-channel label images "
                "(0 = background, 1..K = structures), or map each colour to a label value first."
            )
    try:
        check_finite(array, str(path))
    except ValueError as error:
        raise ImageReadError(str(error)) from error
    if threshold is not None:
        return (array >= threshold).astype(np.uint8)
    values = np.unique(array)
    if values.min() < 0 or not np.array_equal(values, np.round(values)):
        raise ImageReadError(
            f"{path}: mask values must be non-negative integers; found {values[:6]}. Pass a threshold "
            "(msa-hf prepare --mask-threshold) for a soft mask."
        )
    if values.max() > MAX_LABEL_VALUE:  # a cast to 16 bits would wrap them onto other labels
        raise ImageReadError(
            f"{path}: mask values {values[values > MAX_LABEL_VALUE][:5].astype(np.int64).tolist()} exceed "
            f"{MAX_LABEL_VALUE}, the largest a prepared label map holds; renumber the structures below it."
        )
    if remap:
        array = remap_label_values(array.astype(np.int64), remap)
        values = np.unique(array)
    if set(values.tolist()) <= {0, 255}:
        return (array == 255).astype(np.uint8)
    if known_labels is not None:
        unknown = sorted(set(values.tolist()) - set(known_labels) - {0})
        if unknown:
            raise ImageReadError(
                f"{path}: mask values {unknown[:6]}{'...' if len(unknown) > 6 else ''} are not in the label table "
                f"{sorted(known_labels)}. Add them to the table, fix the mask (a JPEG or an interpolated resize "
                "smears labels), or pass a threshold (msa-hf prepare --mask-threshold 128) to binarise."
            )
    elif len(values) > MAX_MASK_LABELS + 1:
        raise ImageReadError(
            f"{path}: mask has {len(values)} distinct values, which looks like a JPEG or an interpolated mask, "
            "not labels. Save masks losslessly (PNG) with one integer per structure, or pass a threshold "
            "(msa-hf prepare --mask-threshold 128) to binarise; a label table listing the values lifts the limit."
        )
    return array.astype(np.uint16 if values.max() > 255 else np.uint8)
