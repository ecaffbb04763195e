# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A dataset's own split of its cases, as published datasets ship it, so that a model is tested on the cases
others test on: TotalSegmentator's `meta.csv` (`image_id;...;split`, `train`/`val`/`test`), any table of a case
column and a `split` column (comma, semicolon or tab separated), or a JSON object of lists
(`{"train": [...], "validation": [...], "test": [...]}`). `msa-hf prepare --split-file` reads one
(`read_split_file`) and assigns every case by it (`cases_by_split`) instead of by fractions.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

# what a split file may call each split (case aside)
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "tr": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
    "testing": "test",
    "ts": "test",
}
# the column that names the case, the first one present (else the table's first column)
CASE_COLUMNS = ("case_id", "image_id", "case", "id", "subject", "patient", "name")


class SplitFileError(ValueError):
    """A split file that cannot be read, or that does not assign the source's cases; the message says how."""


def _split_name(value: object, where: str) -> str:
    name = SPLIT_NAMES.get(str(value).strip().casefold())
    if name is None:
        raise SplitFileError(
            f"{where}: split {value!r} is none of train, validation (val) or test; name each case's split so."
        )
    return name


def read_split_file(path: str | Path) -> dict[str, str]:
    """`{case id: "train" | "validation" | "test"}` from a split file (see the module docstring).

    Raises:
        SplitFileError: an unreadable file; a table without a `split` column; a JSON file that is not an
            object of lists of case ids (nnU-Net's list of folds is refused with how to give one fold); a
            split name other than train, validation or test; a case given two splits; no case at all.
    """
    path = Path(path)
    example = '{"train": ["case1", "case2"], "validation": ["case3"], "test": ["case4"]}'
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise SplitFileError(f"split file {path}: cannot read it ({error}).") from error
    assigned: dict[str, str] = {}

    def assign(case: object, split: str, where: str) -> None:
        case_id = str(case).strip()
        if not case_id:
            return
        if assigned.get(case_id, split) != split:
            raise SplitFileError(
                f"{where}: case {case_id!r} is in {assigned[case_id]} and in {split}; give each case one split."
            )
        assigned[case_id] = split

    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SplitFileError(
                f"split file {path}: not JSON ({error}); write it like {example}."
            ) from error
        if isinstance(data, list):
            raise SplitFileError(
                f"split file {path}: a list (nnU-Net's splits_final.json holds one split per fold); write the fold "
                f"to use as one object, like {example}."
            )
        if not isinstance(data, dict) or not all(isinstance(ids, list) for ids in data.values()):
            raise SplitFileError(
                f"split file {path}: expected an object of lists of case ids, like {example}."
            )
        for split, ids in data.items():
            name = _split_name(split, f"split file {path}")
            for case in ids:
                assign(case, name, f"split file {path}")
    else:
        try:
            dialect = csv.Sniffer().sniff(text.splitlines()[0] if text.strip() else ",", delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        rows = list(csv.DictReader(text.splitlines(), dialect=dialect))
        columns = {str(column).strip().casefold(): column for column in (rows[0].keys() if rows else ())}
        if "split" not in columns:
            raise SplitFileError(
                f"split file {path}: no 'split' column (columns: {', '.join(columns) or 'none'}); give a case "
                "column (case_id, image_id, ...) and a split column of train, validation (val) or test."
            )
        case_column = next((columns[c] for c in CASE_COLUMNS if c in columns), next(iter(columns.values())))
        for number, row in enumerate(rows, start=2):  # the header is line 1
            where = f"split file {path}, line {number}"
            assign(row.get(case_column), _split_name(row.get(columns["split"]), where), where)
    if not assigned:
        raise SplitFileError(f"split file {path}: it assigns no case; write it like {example}.")
    return assigned


def cases_by_split(
    case_ids: Iterable[str], assigned: Mapping[str, str], path: str | Path
) -> tuple[dict[str, list[str]], list[str]]:
    """`{split: sorted case ids}` of the source's `case_ids` as the split file at `path` assigns them
    (`assigned`, `read_split_file`), and the ids the file names that the source does not hold (a subset of a
    dataset prepared; said in the report, not refused).

    Raises:
        SplitFileError: a case of the source that the file does not assign (the first five named).
    """
    ids = sorted(set(case_ids))
    missing = [case_id for case_id in ids if case_id not in assigned]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise SplitFileError(
            f"split file {path}: {len(missing)} of the {len(ids)} cases are in no split ({', '.join(missing[:5])}"
            f"{more}); add them to it (cases are named as prepare names them, e.g. {ids[0]!r}), or leave out "
            "--split-file to split by fractions."
        )
    splits: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for case_id in ids:
        splits[assigned[case_id]].append(case_id)
    return splits, sorted(set(assigned) - set(ids))
