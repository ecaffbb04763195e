# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A dataset's own split of its cases: read from TotalSegmentator's meta.csv, a table or a JSON object, and
applied by `prepare --split-file` case by case; what it cannot assign is refused before any case is read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msa_hf.data.split_files import SplitFileError, cases_by_split, read_split_file

nib = pytest.importorskip("nibabel")


def test_split_files_are_read_from_tables_and_json(tmp_path):
    meta = tmp_path / "meta.csv"  # TotalSegmentator's: semicolons, image_id first, its own split names
    meta.write_text("image_id;age;gender;split\ns0001;61;m;train\ns0002;70;f;val\ns0003;55;f;test\n")
    assert read_split_file(meta) == {"s0001": "train", "s0002": "validation", "s0003": "test"}
    table = tmp_path / "splits.tsv"
    table.write_text("patient\tsplit\nA\tTraining\nB\tTEST\n")
    assert read_split_file(table) == {"A": "train", "B": "test"}
    as_json = tmp_path / "splits.json"
    as_json.write_text(json.dumps({"train": ["a", "b"], "validation": ["c"], "test": []}))
    assert read_split_file(as_json) == {"a": "train", "b": "train", "c": "validation"}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("folds.json", json.dumps([{"train": ["a"], "val": ["b"]}]), "one split per fold"),
        ("bad.json", json.dumps({"train": "a"}), "an object of lists"),
        ("bad.csv", "case_id,fold\na,1\n", "no 'split' column"),
        ("bad.csv", "case_id,split\na,train\nb,holdout\n", "line 3: split 'holdout'"),
        ("bad.csv", "case_id,split\na,train\na,test\n", "case 'a' is in train and in test"),
        ("empty.json", "{}", "assigns no case"),
    ],
)
def test_split_files_that_cannot_assign_cases_are_refused_saying_why(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(SplitFileError, match=message):
        read_split_file(tmp_path / name)


def test_cases_are_split_as_assigned_and_a_case_in_no_split_is_named():
    splits, absent = cases_by_split(
        ["c", "a", "b"], {"a": "test", "b": "train", "c": "train", "z": "test"}, "f"
    )
    assert splits == {"train": ["b", "c"], "validation": [], "test": ["a"]} and absent == ["z"]
    with pytest.raises(SplitFileError, match=r"1 of the 3 cases are in no split \(c\)"):
        cases_by_split(["a", "b", "c"], {"a": "test", "b": "train"}, "f")


def _case(folder, name, seed):
    """A TotalSegmentator-style case: `<name>/ct.nii.gz` + `<name>/segmentations/liver.nii.gz`."""
    image = np.random.default_rng(seed).integers(-500, 500, (16, 16, 6)).astype(np.int16)
    liver = np.zeros((16, 16, 6), np.uint8)
    liver[4:10, 5:12, 1:5] = 1
    (folder / name / "segmentations").mkdir(parents=True)
    nib.save(nib.Nifti1Image(image, np.eye(4)), folder / name / "ct.nii.gz")
    nib.save(nib.Nifti1Image(liver, np.eye(4)), folder / name / "segmentations" / "liver.nii.gz")


def test_prepare_splits_cases_as_the_dataset_s_meta_csv_assigns_them(tmp_path, capsys):
    from msa_hf.cli import main
    from msa_hf.data import load_prepared

    for seed, name in enumerate(("s0001", "s0002", "s0003", "s0004")):
        _case(tmp_path / "src", name, seed)
    meta = tmp_path / "src" / "meta.csv"
    meta.write_text("image_id;split\ns0001;test\ns0002;train\ns0003;val\ns0004;train\ns9999;train\n")
    assert main(["prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--split-file", str(meta)]) == 0
    printed = capsys.readouterr().out
    assert (
        f"Cases split as {meta} assigns them." in printed
        and "1 case(s) of the split file are not in" in printed
    )
    dataset = load_prepared(tmp_path / "out")
    cases = {split: sorted({row["case_id"] for row in dataset[split]}) for split in dataset}
    assert cases == {"train": ["s0002", "s0004"], "validation": ["s0003"], "test": ["s0001"]}

    meta.write_text("image_id;split\ns0001;test\ns0002;train\n")  # two cases in no split: nothing is read
    assert main(["prepare", str(tmp_path / "src"), str(tmp_path / "out2"), "--split-file", str(meta)]) == 2
    assert "2 of the 4 cases are in no split (s0003, s0004)" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
    argv = ["prepare", str(tmp_path / "src"), str(tmp_path / "out3"), "--split-file", str(meta)]
    assert main([*argv, "--split", "1", "0", "0"]) == 2
    assert "give one of them" in capsys.readouterr().err
