# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""NRRD and MetaImage volumes, read and written through SimpleITK.

3D Slicer saves scans as `.nrrd` and segmentations as `.seg.nrrd`; grand-challenge.org and many challenges
ship `.mha`. ITK places a voxel `(i, j, k)` at `origin + direction @ (spacing * (i, j, k))` in LPS
millimetres (patient left, posterior, superior); our volumes use RAS, so the first two world axes change
sign both ways (`itk_affine`, `itk_geometry`). A voxel array comes out of SimpleITK as `(k, j, i)` (and
`(k, j, i, c)` for several components per voxel; `(t, k, j, i)` for a 4-D image) and is turned to `(i, j, k)`
(channels last) here, so that the rest reads it as it reads a NIfTI file's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# read: NRRD with its data inside or beside it (`.nhdr`), MetaImage likewise (`.mhd` + `.raw`)
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
# written: the one-file forms only, so that a mask is written whole or not at all
ITK_OUTPUT_SUFFIXES = (".nrrd", ".mha")
DETACHED_HEADER_SUFFIXES = (".nhdr", ".mhd")  # a header whose voxels lie in other files beside it
# the field of a detached header that names its data files: NRRD's (either spelling), MetaImage's
_DATA_FILE_FIELDS = {"data file": ":", "datafile": ":", "elementdatafile": "="}
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


class ItkReadError(ValueError):
    """An NRRD or MetaImage file that cannot be read; the message names the file and says why."""


@dataclass(frozen=True)
class ItkHeader:
    """What an NRRD or MetaImage header says, before any voxel is read.

    Attributes:
        shape: `(I, J, K)` voxels, with a fourth entry for several channels (components per voxel, or a
            4-D image's fourth axis).
        affine: `(4, 4)` voxel -> world (RAS, mm) of the first three axes.
        metadata: the header's other fields (3D Slicer's `Segment0_Name`, ...: `slicer_segmentations`), as
            text.
    """

    shape: tuple[int, ...]
    affine: np.ndarray
    metadata: dict[str, str]


def import_simpleitk() -> Any:
    """SimpleITK, or a `ItkReadError` saying how to install it."""
    try:
        import SimpleITK
    except ImportError as error:
        raise ItkReadError(
            'NRRD and MetaImage files are read with SimpleITK: pip install "msa_hf[medical]" (or pip install '
            "SimpleITK)."
        ) from error
    return SimpleITK


def is_itk_file(path: str | Path) -> bool:
    return str(path).lower().endswith(ITK_SUFFIXES)


def itk_affine(
    direction: tuple[float, ...], spacing: tuple[float, ...], origin: tuple[float, ...]
) -> np.ndarray:
    """The RAS voxel -> world affine `(4, 4)` of an ITK image's first three axes (its direction, row-major,
    of any dimension; its spacing and origin)."""
    dimension = len(spacing)
    matrix = np.asarray(direction, dtype=np.float64).reshape(dimension, dimension)[:3, :3]
    lps = np.eye(4)
    lps[:3, :3] = matrix * np.asarray(spacing[:3], dtype=np.float64)
    lps[:3, 3] = np.asarray(origin[:3], dtype=np.float64)
    return LPS_TO_RAS @ lps


def itk_geometry(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """`itk_affine` inverted: the `(direction, spacing, origin)` of a RAS affine `(4, 4)` (direction row-major
    with unit columns, as ITK keeps it)."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    return tuple(direction.ravel().tolist()), tuple(spacing.tolist()), tuple(lps[:3, 3].tolist())


def read_itk_header(path: str | Path) -> ItkHeader:
    """The header of an NRRD (`.nrrd`, `.nhdr`) or MetaImage (`.mha`, `.mhd`) file.

    Raises:
        ItkReadError: SimpleITK is missing, or the file is not readable as its suffix says.
    """
    sitk = import_simpleitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise ItkReadError(
            f"{path}: not a readable NRRD or MetaImage file ({_itk_reason(error)})."
        ) from error
    size = tuple(int(n) for n in reader.GetSize())
    components = int(reader.GetNumberOfComponents())
    if len(size) < 3:
        raise ItkReadError(
            f"{path}: a {len(size)}-D image of size {size}; a volume has three axes. Give a 2-D image as PNG or "
            "TIFF."
        )
    if len(size) > 4 or (len(size) == 4 and components > 1):
        raise ItkReadError(
            f"{path}: a {len(size)}-D image with {components} components per voxel; MSA reads 3-D volumes."
        )
    shape = size + ((components,) if components > 1 else ())
    metadata = {key: reader.GetMetaData(key) for key in reader.GetMetaDataKeys()}
    affine = itk_affine(reader.GetDirection(), reader.GetSpacing(), reader.GetOrigin())
    return ItkHeader(shape=shape, affine=affine, metadata=metadata)


def detached_data_files(path: str | Path) -> list[Path]:
    """The files beside a detached header `path` (`.nhdr`, `.mhd`) that hold its voxels, as its header names
    them: NRRD's `data file:` field, MetaImage's `ElementDataFile =`, each as one file, a `LIST` of files on
    the lines after it, or a numbered pattern (`slice%03d.raw 1 40 1`). None for a one-file volume, a header
    whose data are inside it (`LOCAL`) or a header that cannot be read as text."""
    path = Path(path)
    if not path.name.lower().endswith(DETACHED_HEADER_SUFFIXES) or not path.is_file():
        return []
    try:
        with path.open("rb") as file:  # a header is text; its data, if inside, are not read
            lines = file.read(1 << 16).decode("latin-1").splitlines()
    except OSError:
        return []
    for index, line in enumerate(lines):
        value = _data_file_field(line)
        if value is None:
            continue
        words = value.split()
        if not words or words[0].upper() == "LOCAL":
            return []
        if words[0].upper() == "LIST":  # one file per line, to the end of the header
            names = [rest.strip() for rest in lines[index + 1 :] if rest.strip()]
        elif len(words) >= 4 and "%" in words[0]:  # a printf pattern with its first, last and step numbers
            try:
                first, last, step = (int(word) for word in words[1:4])
                names = [words[0] % number for number in range(first, last + (1 if step > 0 else -1), step)]
            except (TypeError, ValueError):
                return []
        else:
            names = [value.strip()]
        return [path.parent / name for name in names]
    return []


def _data_file_field(line: str) -> str | None:
    """The value of a header `line` that is the field naming a detached header's data files, else None."""
    for field, separator in _DATA_FILE_FIELDS.items():
        key, found, value = line.partition(separator)
        if found and key.strip().lower() == field:
            return value.strip()
    return None


def read_itk_voxels(path: str | Path) -> np.ndarray:
    """The voxels of an NRRD or MetaImage file as `(I, J, K)`, or `(I, J, K, C)` with several channels.

    Raises:
        ItkReadError: the data are missing, truncated or not decodable.
    """
    sitk = import_simpleitk()
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        detached = str(path).lower().endswith(DETACHED_HEADER_SUFFIXES)
        where = " The data lie in the file its header names, which must be beside it." if detached else ""
        raise ItkReadError(f"{path}: cannot read the voxel data ({_itk_reason(error)}).{where}") from error
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:  # (k, j, i, c)
        return np.ascontiguousarray(array.transpose(2, 1, 0, 3))
    return np.ascontiguousarray(array.transpose(*reversed(range(array.ndim))))  # (t, k, j, i) -> (i, j, k, t)


def write_itk_volume(
    array: np.ndarray, affine: np.ndarray, path: str | Path, metadata: Mapping[str, str] | None = None
) -> None:
    """Write an `(I, J, K)` array, or `(I, J, K, C)` of several channels (a vector image, as `read_itk_voxels`
    reads one), on a RAS affine `(4, 4)` as NRRD or MetaImage (by `path`'s suffix, `ITK_OUTPUT_SUFFIXES`),
    compressed; `metadata`'s fields go into the header (an NRRD's `key:=value` lines)."""
    sitk = import_simpleitk()
    array = np.asarray(array)
    order = (2, 1, 0, 3) if array.ndim == 4 else (2, 1, 0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(order)), isVector=array.ndim == 4)
    direction, spacing, origin = itk_geometry(affine)
    image.SetDirection(direction)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    for key, value in (metadata or {}).items():
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(path), useCompression=True)


def _itk_reason(error: RuntimeError) -> str:
    """ITK's own explanation out of SimpleITK's message (the last line that says something)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Description:" in line:
            return line.split("Description:", 1)[1].strip()
    return lines[-1] if lines else type(error).__name__
