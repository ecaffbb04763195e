# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Public datasets as their archives unpack: `prepare` pairs each case's image with its label map by what the
file names say (`sources.file_role`), and writes each case's slices equal to its own files.

KiTS (one folder per case: `imaging.nii.gz` + `segmentation.nii.gz`, and KiTS23's `instances/` of other
annotations), LiTS (`volume-0.nii` + `segmentation-0.nii` side by side), BraTS 2021 (one folder per case of
its four sequences + `_seg`) and BraTS 2023 (the same with hyphens: `-t1c`, `-t2f`, ..., `-seg`)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from msa_hf.data import axial_slices, find_volume_pairs, load_prepared, prepare_dataset
from msa_hf.data.sources import file_role

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])


def _volume(path, seed: int, label: bool = False) -> np.ndarray:
    """A `(24, 20, 10)` volume written to `path`: noise, or a label map of one box on slices 3-7."""
    rng = np.random.default_rng(seed)
    if label:
        array = np.zeros((24, 20, 10), np.uint8)
        array[4 + seed % 5 : 14, 5:13, 3:8] = 1
    else:
        array = rng.integers(-1000, 1000, (24, 20, 10)).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, AFFINE), path)
    return array


def _slices_equal(output, files) -> set[str]:
    """Every prepared row (empty slices kept) equals the slice of its case's image and label map (`files`:
    case id -> (image, labels)); returns the cases seen."""
    seen = set()
    for split in load_prepared(output).values():
        for row in split:
            image, labels = files[row["case_id"]]
            z = row["slice"]
            assert np.array_equal(np.asarray(row["image"]), axial_slices(image)[z]), row["case_id"]
            assert np.array_equal(np.asarray(row["label"]), axial_slices(labels)[z]), row["case_id"]
            seen.add(row["case_id"])
    return seen


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("segmentation", ("label", "")),
        ("imaging", ("image", "")),
        ("segmentation-12", ("label", "12")),
        ("volume-12", ("image", "12")),
        ("label0001", ("label", "0001")),
        ("img0001", ("image", "0001")),
        ("BraTS2021_00000_seg", ("label", "BraTS2021_00000")),
        ("BraTS-GLI-00000-000-seg", ("label", "BraTS-GLI-00000-000")),
        ("BraTS2021_00000_flair", ("image", "BraTS2021_00000_flair")),
        ("case_7", ("image", "case_7")),
    ],
)
def test_a_file_name_says_its_role_and_case(stem, expected):
    assert file_role(stem) == expected


def test_kits_case_folders_pair_their_imaging_and_segmentation(tmp_path):
    """KiTS: each case folder's `imaging` with its `segmentation`, the case named by the folder; KiTS23's
    `instances/` annotations inside a case folder are not cases; an image folder without a segmentation is
    a case without a label map, reported."""
    source = tmp_path / "kits23" / "dataset"
    files = {}
    for index in range(3):
        case = source / f"case_{index:05d}"
        files[case.name] = (
            _volume(case / "imaging.nii.gz", index),
            _volume(case / "segmentation.nii.gz", index, label=True),
        )
        _volume(case / "instances" / "kidney_instance-1_annotation-1.nii.gz", 9, label=True)
    _volume(source / "case_00099" / "imaging.nii.gz", 99)  # a test case: no segmentation published
    pairs = find_volume_pairs(source)
    assert [(p.case_id, p.image.name, p.label and p.label.name) for p in pairs] == [
        *[(case_id, "imaging.nii.gz", "segmentation.nii.gz") for case_id in files],
        ("case_00099", "imaging.nii.gz", None),
    ]
    report = prepare_dataset(source, tmp_path / "out", split=(1, 0, 0), keep_empty_slices=True)
    assert [case["case_id"] for case in report.skipped_cases] == ["case_00099"]
    assert _slices_equal(tmp_path / "out", files) == set(files)


def test_lits_volumes_pair_with_their_segmentations_side_by_side(tmp_path):
    """LiTS: `volume-N.nii` with `segmentation-N.nii` in the same folder (its two training batches), never
    with another number's; the case is named by the number."""
    source = tmp_path / "LiTS"
    files = {}
    for batch, numbers in (("Training Batch 1", (0, 1)), ("Training Batch 2", (10, 11))):
        for number in numbers:
            files[str(number)] = (
                _volume(source / batch / f"volume-{number}.nii", number),
                _volume(source / batch / f"segmentation-{number}.nii", number, label=True),
            )
    pairs = find_volume_pairs(source)
    assert sorted((p.case_id, p.image.name, p.label.name) for p in pairs) == sorted(
        (number, f"volume-{number}.nii", f"segmentation-{number}.nii") for number in files
    )
    prepare_dataset(source, tmp_path / "out", split=(1, 0, 0), keep_empty_slices=True)
    assert _slices_equal(tmp_path / "out", files) == set(files)


@pytest.mark.parametrize(
    ("case_ids", "separator", "sequences"),
    [
        (["BraTS2021_00000", "BraTS2021_00002"], "_", ["flair", "t1", "t1ce", "t2"]),
        (["BraTS-GLI-00000-000", "BraTS-GLI-00002-000"], "-", ["t1c", "t1n", "t2f", "t2w"]),
    ],
)
def test_brats_case_folders_read_one_sequence_as_a_channel(tmp_path, case_ids, separator, sequences):
    """BraTS: a case folder's sequences are its channels in the order of their names, the report lists them
    by name, `--channel` picks one (default the first), and each row is that sequence's slice."""
    source = tmp_path / "brats"
    files: dict[str, dict[str, np.ndarray]] = {}
    for index, case_id in enumerate(case_ids):
        folder = source / case_id
        files[case_id] = {
            name: _volume(folder / f"{case_id}{separator}{name}.nii.gz", 10 * index + k)
            for k, name in enumerate(sequences)
        }
        files[case_id]["seg"] = _volume(folder / f"{case_id}{separator}seg.nii.gz", index, label=True)
    pairs = find_volume_pairs(source)
    assert [(p.case_id, p.label.name, [p.channels[k].name for k in sorted(p.channels)]) for p in pairs] == [
        (c, f"{c}{separator}seg.nii.gz", [f"{c}{separator}{name}.nii.gz" for name in sequences])
        for c in case_ids
    ]
    for channel in (None, 2):
        output = tmp_path / f"out-{channel}"
        report = prepare_dataset(source, output, split=(1, 0, 0), keep_empty_slices=True, channel=channel)
        listing = ", ".join(f"{k} = {name}" for k, name in enumerate(sequences))
        assert any(listing in warning for warning in report.warnings)
        sequence = sequences[channel or 0]
        chosen = {case_id: (case[sequence], case["seg"]) for case_id, case in files.items()}
        assert _slices_equal(output, chosen) == set(case_ids)
    with pytest.raises(
        ValueError, match=f"channel 4 .--channel. does not exist; its channels are .*3 = {sequences[3]}"
    ):
        prepare_dataset(source, tmp_path / "out-4", split=(1, 0, 0), keep_empty_slices=True, channel=4)


@pytest.mark.parametrize("layout", ["kits", "lits"])
def test_a_dataset_keeping_labels_beside_images_is_re_segmented_and_scored_in_place(
    tmp_path, serve_stand_in, capsys, layout
):
    """`predict DATASET OUT --prompts-from-labels DATASET` on KiTS's case folders or LiTS's files side by
    side: each labelled case's image, prompted from its own label map, gives `OUT/<case>.nii.gz` (an
    unlabelled case is not an input); the `score` command it prints pairs each mask with its case's label map,
    and the boxes a box-filling model draws from box-shaped labels score 1."""
    from msa_hf.cli import main
    from msa_hf.testing import BoxFillSam

    source = tmp_path / layout
    cases = ["case_00000", "case_00001"] if layout == "kits" else ["0", "1"]
    for index, case_id in enumerate(cases):
        if layout == "kits":
            _volume(source / case_id / "imaging.nii.gz", index)
            _volume(source / case_id / "segmentation.nii.gz", index, label=True)
        else:
            _volume(source / f"volume-{case_id}.nii", index)
            _volume(source / f"segmentation-{case_id}.nii", index, label=True)
    if layout == "kits":
        _volume(source / "case_00099" / "imaging.nii.gz", 99)  # a test case, unlabelled
    serve_stand_in(BoxFillSam(24))
    out = tmp_path / "out"
    assert main(["predict", "m", str(source), str(out), "--prompts-from-labels", str(source)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [f"{case_id}.nii.gz" for case_id in cases]
    score = ["score", str(out), str(source)]
    assert " ".join(score) in printed
    assert main(score) == 0
    assert "| class_1 | 2 | 1.000" in capsys.readouterr().out


def test_acdc_scans_of_one_patient_stay_in_one_split(tmp_path):
    """ACDC: a patient folder holds two labelled frames (`patient001_frame01` + `_gt`, `_frame12` + `_gt`) and
    an unlabelled 4-D cine: each frame is a case of its own, written equal to its files, and both frames of a
    patient land in one split, which the report says; `--case-id-pattern` groups volumes as it says."""
    source = tmp_path / "ACDC" / "training"
    files = {}
    for number in range(1, 7):
        patient = f"patient{number:03d}"
        for frame in (1, 12):
            case_id = f"{patient}_frame{frame:02d}"
            files[case_id] = (
                _volume(source / patient / f"{case_id}.nii.gz", number * 100 + frame),
                _volume(source / patient / f"{case_id}_gt.nii.gz", number + frame, label=True),
            )
        _volume(source / patient / f"{patient}_4d.nii.gz", number)
    report = prepare_dataset(source, tmp_path / "out", split=(0.5, 0.25, 0.25), keep_empty_slices=True)
    assert any("12 cases are scans of 6 patients" in warning for warning in report.warnings)
    assert _slices_equal(tmp_path / "out", files) == set(files)
    split_of = {}
    for split, rows in load_prepared(tmp_path / "out").items():
        for row in rows:
            split_of.setdefault(row["case_id"][: len("patient001")], set()).add(split)
    assert len(split_of) == 6 and all(len(splits) == 1 for splits in split_of.values())
    assert len({next(iter(s)) for s in split_of.values()}) == 3  # the split still spreads the patients
    # the pattern decides instead: each frame its own group, so some patient's frames part ways
    report = prepare_dataset(
        source, tmp_path / "by-frame", split=(0.5, 0.5, 0), case_id_pattern=r"^(patient\d+_frame\d+)",
        keep_empty_slices=True,
    )  # fmt: skip
    assert not any("scans of" in warning for warning in report.warnings)
    assert sum(report.cases.values()) == 12
    parted = {}
    for split, rows in load_prepared(tmp_path / "by-frame").items():
        for row in rows:
            parted.setdefault(row["case_id"][: len("patient001")], set()).add(split)
    assert any(len(splits) == 2 for splits in parted.values())


def test_cases_numbered_in_a_folder_named_for_them_stay_apart(tmp_path):
    """`liver/liver_0.nii.gz` ... with their `_seg`: numbered cases of a folder named for them all are not one
    patient's scans; each is a case of its own, split alone."""
    source = tmp_path / "data"
    for number in range(8):
        _volume(source / "liver" / f"liver_{number}.nii.gz", number)
        _volume(source / "liver" / f"liver_{number}_seg.nii.gz", number, label=True)
    report = prepare_dataset(source, tmp_path / "out", split=(0.5, 0.25, 0.25))
    assert not any("scans of" in warning for warning in report.warnings)
    assert report.cases == {"train": 4, "validation": 2, "test": 2}
