# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Label tables: which integer in a label map is which structure.

Read from the formats medical datasets ship: Medical Segmentation Decathlon `dataset.json` (both
`{"0": "background", "1": "liver"}` and nnU-Net v2's `{"background": 0, "liver": 1}`), a plain JSON map or
list, text tables (`1 liver` per line, ITK-SNAP's label description `1 255 0 0 1 1 1 "liver"`, or a colour table
`1 liver 216 101 79 255` as 3D Slicer's `.ctbl` and FreeSurfer's `FreeSurferColorLUT.txt` are written), and 3D
Slicer's CSV colour tables (`LabelValue,Name,Color_R,...`).
Background (0) is never a target and is dropped. nnU-Net v2's region-based tables (a structure as a list of
label values: BraTS's whole tumour, tumour core and enhancing tumour) are read by `parse_label_regions`.
"""

from __future__ import annotations

import csv
import json
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

MAX_LABEL_VALUE = 65535  # prepared label maps are stored as uint16
LABEL_TABLE_NAMES = ("dataset.json", "labels.json", "classes.json", "labels.txt", "classes.txt", "labels.tsv")


class LabelTableError(ValueError):
    """A label table that cannot be read; the message names the file and the expected formats."""


def _is_integer(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit())


def _from_mapping(mapping: dict, source: str) -> dict[int, str]:
    table: dict[int, str] = {}
    for key, value in mapping.items():
        if _is_integer(key):
            table[int(key)] = _name(value, key, source)  # Decathlon: {"1": "liver"}
        elif _is_integer(value):
            table[int(value)] = _name(key, value, source)  # nnU-Net v2: {"liver": 1}
        else:
            raise LabelTableError(
                f"{source}: cannot read label entry {key!r}: {value!r}. Use {{'1': 'liver'}} or {{'liver': 1}}."
            )
    return table


def _name(name: object, value: object, source: str) -> str:
    """A structure's name as given, refused unless it is non-empty text (`str()` of a list or None is no name)."""
    if not isinstance(name, str) or not name.strip():
        raise LabelTableError(
            f"{source}: label {value!r} has the name {name!r}; each name must be non-empty text, e.g. "
            "{'1': 'liver'}."
        )
    return name.strip()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _text_line_name(fields: list[str]) -> str:
    """The name on a text table's line split into `fields` (the value first): ITK-SNAP's
    `value R G B A visibility mesh "name"` (its last field), a colour table's `value name R G B A` (3D
    Slicer's `.ctbl`, FreeSurfer's LUT: the words before the four colour numbers), else all after the value."""
    if len(fields) == 8 and all(_is_number(field) for field in fields[1:7]):
        return fields[7]
    if len(fields) >= 6 and all(field.isdigit() for field in fields[-4:]) and not _is_number(fields[1]):
        return " ".join(fields[1:-4])
    return " ".join(fields[1:])


def _from_csv_colour_table(text: str, path: Path) -> dict[int, str]:
    """`{value: name}` from 3D Slicer's CSV colour table: its `LabelValue` and `Name` columns (an entry
    without a name is named by its terminology's `Type_CodeMeaning`)."""
    rows = list(csv.DictReader(text.splitlines()))
    columns = set(rows[0]) if rows else set()
    if not {"LabelValue", "Name"} <= columns:
        raise LabelTableError(
            f"{path}: a CSV label table needs the columns LabelValue and Name (3D Slicer's colour table); found "
            f"{sorted(columns) or 'none'}. Give a text table of '<value> <name>' lines instead."
        )
    table = {}
    for number, row in enumerate(rows, start=2):
        value = (row["LabelValue"] or "").strip()
        if not _is_integer(value):
            raise LabelTableError(f"{path}:{number}: LabelValue {value!r} is not an integer.")
        name = (row["Name"] or "").strip() or (row.get("Type_CodeMeaning") or "").strip()
        table[int(value)] = _name(name, value, f"{path}:{number}")
    return table


def parse_label_table(path: str | Path) -> dict[int, str]:
    """`{label value: name}` from a label-table file, background (0) removed.

    Raises:
        LabelTableError: unreadable file or an entry that is neither `value name` nor `name: value`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LabelTableError(f"{path}: cannot read the label table ({error}).") from error
    if path.suffix == ".json":
        try:
            content = json.loads(text)
        except json.JSONDecodeError as error:
            raise LabelTableError(f"{path}: not valid JSON ({error}).") from error
        if isinstance(content, dict) and "labels" in content:
            content = content["labels"]  # Decathlon / nnU-Net dataset.json
        if isinstance(content, list):
            table = {value: _name(name, value, str(path)) for value, name in enumerate(content)}
        elif isinstance(content, dict):
            table = _from_mapping(content, str(path))
        else:
            raise LabelTableError(
                f"{path}: expected a JSON object or list of names, got {type(content).__name__}."
            )
    elif path.suffix.lower() == ".csv":
        table = _from_csv_colour_table(text, path)
    else:
        table = {}
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = shlex.split(line.replace("\t", " "))
            if not fields[0].lstrip("-").isdigit() or len(fields) < 2:
                raise LabelTableError(
                    f"{path}:{number}: expected '<value> <name>' (or an ITK-SNAP or colour-table label line), got "
                    f"{line!r}."
                )
            table[int(fields[0])] = _text_line_name(fields)
    table.pop(0, None)
    if any(value < 0 for value in table):
        raise LabelTableError(f"{path}: negative label values {sorted(v for v in table if v < 0)}.")
    if any(value > MAX_LABEL_VALUE for value in table):
        raise LabelTableError(
            f"{path}: label values {sorted(v for v in table if v > MAX_LABEL_VALUE)} exceed "
            f"{MAX_LABEL_VALUE}, the largest a prepared label map holds (16-bit)."
        )
    by_name: dict[str, list[int]] = {}
    for value, name in table.items():
        by_name.setdefault(name, []).append(value)
    repeated = {name: values for name, values in by_name.items() if len(values) > 1}
    if repeated:
        raise LabelTableError(
            f"{path}: names given to several values {repeated}; give each structure its own name (or merge "
            "the values in the label maps first)."
        )
    return table


def parse_label_regions(path: str | Path) -> dict[str, tuple[int, ...]] | None:
    """The structures of a region-based label table, `{name: label values}` in the table's order, or None for a
    table of one value per structure (`parse_label_table`).

    A region is a union of label values, as nnU-Net v2's `dataset.json` writes it for nested or overlapping
    targets (BraTS: `{"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3}`);
    once one entry is a list, every entry is a structure of its values (a number: a region of one value).

    Raises:
        LabelTableError: a region entry whose values are not label values (1 to 65535), or whose name is empty.
    """
    path = Path(path)
    if path.suffix != ".json":
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # parse_label_table says why
    content = content.get("labels", content) if isinstance(content, dict) else content
    # regions are named by their keys ({"tumor core": [2, 3]}); a numbered key is a label value ({"1": ...})
    if not isinstance(content, dict) or any(_is_integer(key) for key in content):
        return None
    if not any(isinstance(v, list) for v in content.values()):
        return None
    regions: dict[str, tuple[int, ...]] = {}
    for name, entry in content.items():
        values = entry if isinstance(entry, list) else [entry]
        if values == [0]:
            continue  # background
        if not values or not all(_is_integer(v) and 0 < int(v) <= MAX_LABEL_VALUE for v in values):
            raise LabelTableError(
                f"{path}: region {name!r} is {entry!r}; a region lists label values from 1 to {MAX_LABEL_VALUE}, "
                'e.g. "tumor core": [2, 3].'
            )
        regions[_name(name, entry, str(path))] = tuple(sorted({int(v) for v in values}))
    return regions


def read_label_structures(path: str | Path) -> tuple[dict[int, str], dict[int, tuple[int, ...]]]:
    """The structures a label table names: `{class id: name}` and, for a region-based table
    (`parse_label_regions`), `{class id: label values}` with class ids 1..N in the table's order; for a table
    of one value per structure, the class ids are the label values and the regions `{}`."""
    regions = parse_label_regions(path)
    if regions is None:
        return parse_label_table(path), {}
    return dict(enumerate(regions, start=1)), dict(enumerate(regions.values(), start=1))


def regions_beside(labels: str | Path) -> dict[int, tuple[int, ...]]:
    """`{class id: label values}` of the region-based label table beside a folder of label maps
    (`table_beside`, numbered as `read_label_structures` numbers them); `{}` where there is no table or it
    gives one value per structure (which is never parsed here, so a plain table cannot fail a caller that only
    asks for regions)."""
    path = table_beside(labels)
    regions = parse_label_regions(path) if path is not None else None
    return dict(enumerate(regions.values(), start=1)) if regions else {}


def label_folder_structures(
    labels: str | Path, label_table: str | Path | None = None
) -> tuple[dict[int, str], dict[int, tuple[int, ...]]]:
    """The structures of a folder of label maps (or of one label map's folder), `read_label_structures`:
    from `label_table`, else from `table_beside(labels)`; `({}, {})` where there is none."""
    path = Path(label_table) if label_table else table_beside(labels)
    return read_label_structures(path) if path is not None else ({}, {})


def table_beside(labels: str | Path) -> Path | None:
    """The label table of a folder of label maps (or of one label map's folder): the first in the folder,
    else in the folder above it (nnU-Net's `dataset.json` beside `labelsTr/`)."""
    folder = Path(labels) if Path(labels).is_dir() else Path(labels).parent
    return find_label_table(folder) or find_label_table(folder.parent)


def check_label_remap(remap: dict[int, int]) -> dict[int, int]:
    """`remap` (`{value in the files: value to read it as}`) as ints, checked: label values 0 to 65535.

    Raises:
        LabelTableError: a value that is not a whole number in that range.
    """
    checked = {}
    for source, target in remap.items():
        if not (_is_integer(source) and _is_integer(target)) or not all(
            0 <= int(v) <= MAX_LABEL_VALUE for v in (source, target)
        ):
            raise LabelTableError(
                f"label remap {source!r}={target!r}: both sides are label values from 0 to {MAX_LABEL_VALUE} "
                "(e.g. 255=0 to read 255 as background)."
            )
        checked[int(source)] = int(target)
    return checked


def remap_label_values(labels: np.ndarray, remap: dict[int, int]) -> np.ndarray:
    """`labels` with each value of `remap` replaced by its target, all at once (`{0: 2, 255: 0}` swaps
    nothing into a chain); values not in `remap` stay. The dtype widens to 16 bits where a target needs it.
    For label maps whose files code the structures unusually (REFUGE's 0 = cup, 128 = disc rim, 255 =
    background)."""
    if not remap:
        return labels
    top = max(int(labels.max(initial=0)), *remap.values())
    out = labels.astype(np.uint16 if top > 255 else np.uint8, copy=True)
    for source, target in remap.items():
        out[labels == source] = target
    return out


def remap_structure_codes(
    codes: dict[int, tuple[int, ...]], remap: dict[int, int]
) -> dict[int, tuple[int, ...]]:
    """Overlapping structures' codes (`{label value: codes of the pixels it covers}`, as
    `load_dicom_structures` reads them) with their label values read through `remap` as
    `remap_label_values` reads a label map's: a value remapped to 0 is background and drops out, two values
    remapped to one become one structure covering both's codes."""
    remapped: dict[int, set[int]] = {}
    for value, value_codes in codes.items():
        target = remap.get(value, value)
        if target != 0:
            remapped.setdefault(target, set()).update(value_codes)
    return {value: tuple(sorted(value_codes)) for value, value_codes in sorted(remapped.items())}


def find_label_table(folder: str | Path) -> Path | None:
    """The first label table in `folder` (names in `LABEL_TABLE_NAMES` order), or None."""
    for name in LABEL_TABLE_NAMES:
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    return None


def utf8_prefix(text: str, max_bytes: int) -> str:
    """The longest start of `text` whose UTF-8 takes at most `max_bytes` (never cut inside a character)."""
    return text.encode()[:max_bytes].decode("utf-8", "ignore")


def distinct_names(names: Mapping[int, str], max_bytes: int | None = None) -> dict[int, str]:
    """`names` (`{label value: name}`) with each name that another shares, case aside, followed by
    `_<value>` ("liver", "Liver" -> "liver_1", "Liver_2"), so that every structure is told apart where names
    are compared without case (file systems on macOS and Windows, planning systems' structure IDs). With
    `max_bytes` (a DICOM LO value's 64), longer names are cut to that many bytes of UTF-8 first (never inside
    a character), keeping the suffix."""

    def cut(name: str, suffix: str = "") -> str:
        return (name if max_bytes is None else utf8_prefix(name, max_bytes - len(suffix))) + suffix

    counts: dict[str, int] = {}
    for name in names.values():
        counts[cut(name).casefold()] = counts.get(cut(name).casefold(), 0) + 1
    return {
        value: cut(name, f"_{value}") if counts[cut(name).casefold()] > 1 else cut(name)
        for value, name in names.items()
    }


def output_structure_names(
    values: Iterable[int], names: Mapping[int, str] | None, max_bytes: int | None = None
) -> dict[int, str]:
    """`{label value: name}` as a written file labels its structures (a DICOM-SEG's segments, an RT structure
    set's ROIs, a 3D Slicer segmentation's segments): `names`' name, or "structure <value>" without one; names
    that another structure shares, case aside, followed by `_<value>` (`distinct_names`: with `max_bytes`, cut
    to that many bytes of UTF-8 first), so that every structure can be told apart and a file read back by
    name does not merge two."""
    given = names or {}
    named = {int(value): str(given.get(value) or "").strip() or f"structure {value}" for value in values}
    return distinct_names(named, max_bytes=max_bytes)


def default_class_names(values: list[int]) -> dict[int, str]:
    """Names for label values with no table: `class_<value>`."""
    return {int(value): f"class_{int(value)}" for value in sorted(values) if int(value) != 0}
