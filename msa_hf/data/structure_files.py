# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A folder of one binary mask per structure (`liver.nii.gz`, `tumour.nii.gz`), as TotalSegmentator and many
annotation tools write them: the NIfTI (NRRD, MetaImage; or PNG) output that keeps structures which overlap each whole, where a
label map holds one value per pixel.

`msa-hf predict --structure-files` writes a folder per input; `msa-hf score` reads such folders as predictions
and as references, `msa-hf prepare` and `predict --prompts-from-labels` as label maps (the TotalSegmentator
dataset's `segmentations/` folders among them; `sources.structure_folder_cases`). A file is named by its
structure's name made safe for a file name, or `label_<value>` for a structure without a name
(`structure_file_stems`); reading goes back through the label table by the same rule, so a name always
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
    from msa_hf.data.label_tables import distinct_names

    stems = {}
    for value in values:
        stem = safe_file_stem(str(names.get(value) or ""))
        stems[int(value)] = stem if stem else f"{UNNAMED_PREFIX}{int(value)}"
    return distinct_names(stems)


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
    write: Callable[[int, np.ndarray, Path], None],
    suffix: str,
    inputs: Iterable[str | Path] = (),
) -> dict[int, str]:
    """Write each `(value, mask)` of `masks` (taken one at a time) as `write(value, mask, path)` to
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
    # what the check leaves to replace is an empty folder or earlier structure files
    with atomic_folder(output, overwrite=True, inputs=inputs) as staging:
        for value, mask in masks:
            written[value] = f"{stems[value]}{suffix}"
            write(value, mask, staging / written[value])
    return written


def _structure_stem(path: Path) -> str | None:
    """The structure a file of a structure folder is named for (its name without the suffix, `volume_file_stem`),
    or None for a file that is no structure mask."""
    from msa_hf.data.volumes import is_volume_file, volume_file_stem

    if is_volume_file(path) or path.suffix.lower() == PICTURE_SUFFIX:
        return volume_file_stem(path) or None
    return None


def structure_files(folder: str | Path) -> list[Path]:
    """The structure masks in `folder` (visible volume files, NIfTI, NRRD or MetaImage, or PNG files), sorted;
    none for a folder holding anything else beside them (a DICOM series folder, a folder of cases), which is
    then no structure folder. A detached header's data files (`liver.raw` beside `liver.mhd`) are part of its
    mask, not another file."""
    from msa_hf.data.itk_files import detached_data_files
    from msa_hf.data.sources import is_hidden

    folder = Path(folder)
    if not folder.is_dir():
        return []
    entries = [p for p in folder.iterdir() if not is_hidden(p, folder)]
    # a detached header's data (`liver.mhd` beside `liver.raw`) belong to the structure the header names
    data_files = {
        data.name for header in entries for data in detached_data_files(header) if data.parent == folder
    }
    entries = [p for p in entries if p.name not in data_files]
    if not entries or any(p.is_dir() or _structure_stem(p) is None for p in entries):
        return []
    kinds = {p.name.lower().endswith(PICTURE_SUFFIX) for p in entries}
    return sorted(entries) if len(kinds) == 1 else []


def is_structure_folder(path: str | Path) -> bool:
    """Whether `path` is a folder of structure masks (`structure_files`)."""
    return bool(structure_files(path))


def _key(stem: str) -> str:
    """What a file's stem and a structure's name are compared by: `safe_file_stem`, case aside."""
    return safe_file_stem(stem).casefold()


def structure_values(names: Mapping[int, str]) -> dict[str, int]:
    """`{file stem key: label value}` for the structures a label table `names` ({value: name}) names, as
    `structure_file_stems` names their files (and as the names themselves are, where no two collide)."""
    keys = {_key(stem): value for value, stem in structure_file_stems(sorted(names), names).items()}
    by_name: dict[str, list[int]] = {}
    for value, name in names.items():
        by_name.setdefault(_key(str(name)), []).append(value)
    # a name two structures share (case aside) finds neither: their files are told apart by value
    return {key: found[0] for key, found in by_name.items() if key and len(found) == 1} | keys


def _unnamed_value(stem: str) -> int | None:
    """The value a `label_<value>` file is named for, else None."""
    number = stem[len(UNNAMED_PREFIX) :] if stem.lower().startswith(UNNAMED_PREFIX) else ""
    return int(number) if number.isdigit() and int(number) > 0 else None


def structure_label_values(
    folders: Iterable[str | Path], table: Mapping[int, str] | None
) -> tuple[dict[int, str], str | None]:
    """The names of the structures that the structure folders `folders` hold, by label value
    (`{value: name}`), and a note for a report where they were not given. With `table` (a label table), the
    table itself; else each file name (without its suffix) across all folders, valued in alphabetical order
    from 1 (a `label_<value>` file keeps its value), so a structure has one value in every case; names of one
    structure written otherwise in different folders (`kidney_left`, `Kidney_L`) are one, as most folders
    name it (`structure_codes.names_by_concept`; the note says so), which `read_structure_folder` finds by
    concept."""
    from msa_hf.data.structure_codes import joined_names_note, names_by_concept

    if table is not None:
        return dict(table), None
    found = [[_structure_stem(file) or "" for file in structure_files(folder)] for folder in folders]
    first: dict[str, str] = {}  # a structure's file stem as first found, case aside
    for folder_stems in found:
        for stem in folder_stems:
            first.setdefault(_key(stem), stem)
    joined = names_by_concept([first[_key(stem)] for stem in folder_stems] for folder_stems in found)
    stems: dict[str, str] = {}
    for stem in first.values():
        stems.setdefault(_key(joined.get(stem, stem)), joined.get(stem, stem))
    names = {value: stem for stem in stems.values() if (value := _unnamed_value(stem)) is not None}
    free = (value for value in range(1, 1 << 16) if value not in names)
    for key in sorted(k for k, stem in stems.items() if _unnamed_value(stem) is None):
        names[next(free)] = stems[key]
    listed = ", ".join(f"{value} {name}" for value, name in sorted(names.items())[:12])
    listed += f" and {len(names) - 12} more" if len(names) > 12 else ""
    note = (
        f"no label table: label values are given by structure file name ({listed}); a label table (labels.json) "
        "sets them, and picks the structures to read."
    )
    return dict(sorted(names.items())), "\n".join(filter(None, [note, joined_names_note(joined)]))


def read_structure_folder(
    folder: str | Path,
    names: Mapping[int, str],
    overlapping: bool | None = None,
    only_named: bool = False,
) -> tuple[Any, dict[int, tuple[int, ...]]]:
    """The structures of `folder` (`structure_files`), valued through the label table `names` ({value: name};
    `label_<value>` files need none): a volume's as a RAS+ `Volume` on the files' shared grid, a 2-D image's
    as an `(H, W)` array; either a label map of the values, or the bits of each pixel's code
    (`dicom_seg_labels.overlap_code`), with each structure's codes (`{value: codes}`; a label map's are
    `{value: (value,)}`). `overlapping`: None, bits where two structures overlap and a label map where none
    do; True, bits always; False, a label map always, overlapping structures refused. With `only_named`, a
    file that `names` does not name is left out (how a label table picks some structures of a whole-body
    folder), not refused.

    Raises:
        VolumeReadError: a folder that holds no structure masks; a file whose name no structure of `names` has
            (naming the names there are); two files of one structure; masks on different grids or of different
            sizes; overlapping structures valued beyond 16; no file named in `names` (`only_named`); an
            unreadable NIfTI mask (a PNG one: `ImageReadError`).
        OverlappingStructuresError: `overlapping=False` and two structures overlap.
    """
    from msa_hf.data.dicom_seg_labels import (
        MAX_OVERLAPPING_STRUCTURES,
        OverlappingStructuresError,
        drawn_structures,
        overlap_code,
    )
    from msa_hf.data.structure_codes import values_by_concept
    from msa_hf.data.volumes import VolumeReadError

    folder = Path(folder)
    files = structure_files(folder)
    if not files:
        raise VolumeReadError(
            f"{folder}: not a folder of structure masks (one NIfTI or one PNG file per structure, nothing else)."
        )
    by_stem = structure_values(names)
    # a file named otherwise than the table names its structure (kidney_left, left kidney)
    unknown = [stem for stem in (_structure_stem(file) or "" for file in files) if _key(stem) not in by_stem]
    by_concept = values_by_concept({name: value for value, name in names.items()}, unknown)
    by_stem.update({_key(stem): value for stem, value in by_concept.items() if stem in unknown})
    values: dict[Path, int] = {}
    for file in files:
        stem = _structure_stem(file) or ""
        value = by_stem.get(_key(stem), _unnamed_value(stem))
        if value is None and only_named:
            continue
        if value is None:
            stems = list(structure_file_stems(sorted(names), names).values())
            known = ", ".join(f"{s}{file.name[len(stem) :]}" for s in stems[:8])
            known += f" and {len(stems) - 8} more" if len(stems) > 8 else ""
            raise VolumeReadError(
                f"{file}: no structure of the label table is named {stem!r} "
                f"({'its structures are written ' + known if known else 'there is no label table'}); name the file "
                f"as its structure is named there, label_<value> for a label value, or give a label table that "
                f'names it (--label-table labels.json, {{"1": "{stem}"}}).'
            )
        if value in values.values():
            other = next(f for f, v in values.items() if v == value)
            raise VolumeReadError(f"{other} and {file} are both structure {value}; keep one of them.")
        values[file] = value
    if not values:
        raise VolumeReadError(
            f"{folder}: none of its structure files ({', '.join(f.name for f in files[:8])}"
            f"{' and more' if len(files) > 8 else ''}) is named in the label table "
            f"({', '.join(sorted(names.values())[:8]) or 'none'}); name the structures as the files are."
        )
    chosen = list(values)
    # one mask in memory at a time (a whole-body folder holds a hundred); read again where structures overlap
    labels, grid, overlaps = None, None, False
    if overlapping is not True:
        for file, mask, volume in _masks(chosen):
            if labels is None:
                top = max(values.values())
                labels, grid = np.zeros(mask.shape, np.uint8 if top <= 255 else np.uint16), volume
            under = labels[mask]
            if under.any():
                if overlapping is None:  # read again, as bits
                    overlaps = True
                    break
                taken = int(np.bincount(under[under != 0]).argmax())
                other = next(f for f, v in values.items() if v == taken)
                raise OverlappingStructuresError(
                    f"{folder}: {other.name} and {file.name} overlap ({int((under != 0).sum())} pixels), so they "
                    "cannot be one label map; read each whole with --overlapping, or leave one out through a "
                    "label table that does not name it."
                )
            labels[mask] = values[file]
        if not overlaps:
            codes = {value: (value,) for value in sorted(values.values()) if (labels == value).any()}
            return (labels if grid is None else dataclasses.replace(grid, array=labels)), codes
    beyond = sorted(v for v in values.values() if v > MAX_OVERLAPPING_STRUCTURES)
    if beyond:
        raise VolumeReadError(
            f"{folder}: its structures overlap, and each is then read whole as one bit of a 16-bit code, which "
            f"takes label values 1 to {MAX_OVERLAPPING_STRUCTURES}; it holds structures valued {beyond}. "
            f"Number them 1 to {MAX_OVERLAPPING_STRUCTURES} in the label table."
        )
    labels = None
    for file, mask, volume in _masks(chosen):
        if labels is None:
            labels, grid = np.zeros(mask.shape, np.uint16), volume
        labels[mask] |= overlap_code(values[file])
    return (labels if grid is None else dataclasses.replace(grid, array=labels)), drawn_structures(labels)


def _masks(files: list[Path]) -> Iterator[tuple[Path, np.ndarray, Any]]:
    """Each file, its mask (its nonzero pixels: RAS+ `(X, Y, Z)` for NIfTI, `(H, W)` for PNG) and its `Volume`
    (None for PNG), checked to lie on the first file's grid."""
    from msa_hf.data.image_files import read_mask
    from msa_hf.data.volumes import VolumeReadError, affines_match, load_volume

    first = None
    for file in files:
        if file.name.lower().endswith(PICTURE_SUFFIX):
            volume, mask = None, read_mask(file) > 0
            if first is not None and mask.shape != first[1]:
                raise VolumeReadError(
                    f"{file} is {mask.shape[1]} x {mask.shape[0]} pixels, {first[0]} {first[1][1]} x "
                    f"{first[1][0]}; the structures of one image are masks of its size."
                )
        else:
            volume = load_volume(file, is_label=True)
            mask = volume.array > 0
            volume.array = np.empty(0)  # the grid is what is kept of it
            if first is not None and (
                mask.shape != first[1] or not affines_match(volume.affine, first[2].affine)
            ):
                raise VolumeReadError(
                    f"{file} lies on another voxel grid than {first[0]} (RAS+ shape {mask.shape} vs "
                    f"{first[1]}); the structures of one scan are masks on its grid."
                )
        if first is None:
            first = (file, mask.shape, volume)  # its shape and grid, not its pixels
        yield file, mask, volume
