# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A folder of one binary mask per structure (`liver.nii.gz`, `tumour.nii.gz`), as TotalSegmentator and many
annotation tools write them: the NIfTI (or PNG) output that keeps structures which overlap each whole, where a
label map holds one value per pixel.

`msa-hf predict --structure-files` writes a folder per input; `msa-hf score` reads such folders as predictions.
A file is named by its structure's name made safe for a file name, or `label_<value>` for a structure without a
name (`structure_file_stems`); reading goes back through the label table by the same rule, so a name always
finds its value. Read, the structures are a label map where none overlap and the bits of a 16-bit code where
some do (`dicom_seg_labels.overlap_code`), with each structure's codes, as a DICOM object's are.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

VOLUME_SUFFIXES = (".nii.gz", ".nii")  # a volume's structure files
PICTURE_SUFFIX = ".png"  # a 2-D image's: 0 and 255, the usual binary PNG
UNNAMED_PREFIX = "label_"  # `label_3.nii.gz`: the structure of value 3, which has no name


def safe_file_stem(name: str) -> str:
    """`name` as a file name's stem on any file system: letters, digits, `.`, `-` and `_` kept, every run
    of other characters one `_`, no leading or trailing punctuation ("left kidney" -> "left_kidney",
    "T2/FLAIR" -> "T2_FLAIR"); "" where nothing is left."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")


def structure_file_stems(values: Iterable[int], names: Mapping[int, str]) -> dict[int, str]:
    """`{label value: file stem}` for a folder of structure files: the name's `safe_file_stem`, or
    `label_<value>` where a value has no usable name; names that would share a file (case aside, as macOS
    and Windows compare them) each get `_<value>` after them."""
    stems = {}
    for value in values:
        stem = safe_file_stem(str(names.get(value) or ""))
        stems[int(value)] = stem if stem else f"{UNNAMED_PREFIX}{int(value)}"
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem.casefold()] = counts.get(stem.casefold(), 0) + 1
    return {
        value: f"{stem}_{value}" if counts[stem.casefold()] > 1 else stem for value, stem in stems.items()
    }


def check_structure_folder_output(output: str | Path) -> None:
    """Refuses an `output` folder that holds anything but structure masks: replacing it would delete them.

    Raises:
        FileExistsError: naming the folder and what to do.
    """
    output = Path(output)
    if output.is_dir() and any(output.iterdir()) and not is_structure_folder(output):
        raise FileExistsError(
            f"{output} holds files other than structure masks, which replacing it would delete; write the "
            "structures to a folder of their own (a new one, or one of earlier structure files, which --overwrite "
            "replaces)."
        )


def write_structure_folder(
    output: str | Path,
    masks: Iterable[tuple[int, np.ndarray]],
    names: Mapping[int, str],
    values: Iterable[int],
    write: Callable[[np.ndarray, Path], None],
    suffix: str,
    inputs: Iterable[str | Path] = (),
) -> dict[int, str]:
    """Write each `(value, mask)` of `masks` (taken one at a time) as `write(mask, path)` to
    `output/<stem><suffix>`, stems from `structure_file_stems` over all `values` and their `names`; whole or
    not at all (`output_files.atomic_folder`), never over an input, and an earlier folder replaced only where
    it holds structure files alone (a folder of anything else is refused). Returns `{value: file name}`.

    Raises:
        FileExistsError: `output` is a folder holding other files (even with the command's --overwrite).
        OutputError: `output` is a file, or is / lies inside / contains one of `inputs`.
    """
    from msa_hf.output_files import atomic_folder

    output = Path(output)
    check_structure_folder_output(output)
    stems = structure_file_stems(sorted(set(values)), names)
    written = {}
    with atomic_folder(output, overwrite=is_structure_folder(output), inputs=inputs) as staging:
        for value, mask in masks:
            written[value] = f"{stems[value]}{suffix}"
            write(mask, staging / written[value])
    return written


def _structure_stem(path: Path) -> str | None:
    """The structure a file of a structure folder is named for (its name without the suffix), or None for a
    file that is no structure mask."""
    lower = path.name.lower()
    for suffix in (*VOLUME_SUFFIXES, PICTURE_SUFFIX):
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def structure_files(folder: str | Path) -> list[Path]:
    """The structure masks in `folder` (visible NIfTI or PNG files), sorted; none for a folder holding anything
    else beside them (a DICOM series folder, a folder of cases), which is then no structure folder."""
    from msa_hf.data.sources import is_hidden

    folder = Path(folder)
    if not folder.is_dir():
        return []
    entries = [p for p in folder.iterdir() if not is_hidden(p, folder)]
    if not entries or any(p.is_dir() or _structure_stem(p) is None for p in entries):
        return []
    kinds = {p.name.lower().endswith(PICTURE_SUFFIX) for p in entries}
    return sorted(entries) if len(kinds) == 1 else []


def is_structure_folder(path: str | Path) -> bool:
    """Whether `path` is a folder of structure masks (`structure_files`)."""
    return bool(structure_files(path))


def structure_values(names: Mapping[int, str]) -> dict[str, int]:
    """`{file stem, casefolded: label value}` for the structures a label table `names` ({value: name}) names,
    as `structure_file_stems` names their files."""
    return {stem.casefold(): value for value, stem in structure_file_stems(sorted(names), names).items()}


def read_structure_folder(
    folder: str | Path, names: Mapping[int, str]
) -> tuple[Any, dict[int, tuple[int, ...]]]:
    """The structures of `folder` (`structure_files`), valued through the label table `names` ({value: name};
    `label_<value>` files need none): a volume's as a RAS+ `Volume` on the files' shared grid, a 2-D image's
    as an `(H, W)` array; either a label map of the values where no two structures overlap, or the bits of each
    pixel's code where some do (`dicom_seg_labels.overlap_code`), with each structure's codes
    (`{value: codes}`; a label map's are `{value: (value,)}`).

    Raises:
        ValueError: a folder that holds no structure masks; a file whose name no structure of `names` has
            (naming the names there are); two files of one structure; masks on different grids or of different
            sizes; overlapping structures valued beyond 16; an unreadable mask (`VolumeReadError`,
            `ImageReadError`).
    """
    from msa_hf.data.dicom_seg_labels import MAX_OVERLAPPING_STRUCTURES, overlap_code, overlap_regions

    folder = Path(folder)
    files = structure_files(folder)
    if not files:
        raise ValueError(
            f"{folder}: not a folder of structure masks (one NIfTI or one PNG file per structure, nothing else)."
        )
    by_stem = structure_values(names)
    values = {}
    for file in files:
        stem = _structure_stem(file) or ""
        number = stem[len(UNNAMED_PREFIX) :] if stem.lower().startswith(UNNAMED_PREFIX) else ""
        value = by_stem.get(stem.casefold(), int(number) if number.isdigit() and int(number) > 0 else None)
        if value is None:
            stems = list(structure_file_stems(sorted(names), names).values())
            known = ", ".join(f"{s}{file.name[len(stem) :]}" for s in stems[:8])
            known += f" and {len(stems) - 8} more" if len(stems) > 8 else ""
            raise ValueError(
                f"{file}: no structure of the label table is named {stem!r} "
                f"({'its structures are written ' + known if known else 'there is no label table'}); name the file "
                f"as its structure is named there, label_<value> for a label value, or give a label table that "
                f'names it (--label-table labels.json, {{"1": "{stem}"}}).'
            )
        if value in values.values():
            other = next(f for f, v in values.items() if v == value)
            raise ValueError(f"{other} and {file} are both structure {value}; keep one of them.")
        values[file] = value
    # one mask in memory at a time (a whole-body folder holds a hundred); read again where structures overlap
    labels, grid, overlapping = None, None, False
    for file, mask, volume in _masks(files):
        if labels is None:
            labels, grid = (
                np.zeros(mask.shape, np.uint8 if max(values.values()) <= 255 else np.uint16),
                volume,
            )
        overlapping = overlapping or bool(labels[mask].any())
        labels[mask] = values[file]
    if not overlapping:
        codes = {value: (value,) for value in sorted(values.values()) if (labels == value).any()}
    else:
        beyond = sorted(v for v in values.values() if v > MAX_OVERLAPPING_STRUCTURES)
        if beyond:
            raise ValueError(
                f"{folder}: its structures overlap, and each is then read whole as one bit of a 16-bit code, which "
                f"takes label values 1 to {MAX_OVERLAPPING_STRUCTURES}; it holds structures valued {beyond}. "
                f"Number them 1 to {MAX_OVERLAPPING_STRUCTURES} in the label table."
            )
        labels = np.zeros(labels.shape, np.uint16)
        for file, mask, _ in _masks(files):
            labels[mask] |= overlap_code(values[file])
        present = [int(code) for code in np.unique(labels) if code]
        drawn = sorted(v for v in values.values() if any(code & overlap_code(v) for code in present))
        codes = overlap_regions(present, drawn)
    return (labels if grid is None else dataclasses.replace(grid, array=labels)), codes


def _masks(files: list[Path]) -> Iterator[tuple[Path, np.ndarray, Any]]:
    """Each file, its mask (its nonzero pixels: RAS+ `(X, Y, Z)` for NIfTI, `(H, W)` for PNG) and its `Volume`
    (None for PNG), checked to lie on the first file's grid."""
    from msa_hf.data.image_files import read_mask
    from msa_hf.data.volumes import load_volume

    first = None
    for file in files:
        if file.name.lower().endswith(PICTURE_SUFFIX):
            volume, mask = None, read_mask(file) > 0
            if first is not None and mask.shape != first[1]:
                raise ValueError(
                    f"{file} is {mask.shape[1]} x {mask.shape[0]} pixels, {first[0]} {first[1][1]} x "
                    f"{first[1][0]}; the structures of one image are masks of its size."
                )
        else:
            volume = load_volume(file, is_label=True)
            mask = volume.array > 0
            volume.array = np.empty(0)  # the grid is what is kept of it
            if first is not None and (
                mask.shape != first[1] or not np.allclose(volume.affine, first[2].affine, atol=1e-2)
            ):
                raise ValueError(
                    f"{file} lies on another voxel grid than {first[0]} (RAS+ shape {mask.shape} vs "
                    f"{first[1]}); the structures of one scan are masks on its grid."
                )
        if first is None:
            first = (file, mask.shape, volume)  # its shape and grid, not its pixels
        yield file, mask, volume
