# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A folder of one binary mask per structure: written by `predict --structure-files` with every structure
whole where they overlap, on the input's own grid, and scored by `score` through the label table's names. A
stand-in model whose masks are the prompt boxes filled gives masks known in advance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msa_hf.data.structure_files import read_structure_folder, structure_file_stems, structure_values
from msa_hf.inference.predictor import Prompt, predict_file
from msa_hf.testing import BoxFillSam, overlapping_prompts

nib = pytest.importorskip("nibabel")

LIVER, TUMOUR = overlapping_prompts()  # a liver, and a tumour inside it and out past its edge
UNNAMED = [Prompt(box=[1, 17, 5, 19], slice=4, value=3)]  # apart from both, with no name


@pytest.fixture
def scan(tmp_path):
    """A NIfTI scan stored in LPS voxel order (x and y flipped), so that a mask written on RAS+ would not
    line up with it."""
    affine = np.array([[-0.8, 0, 0, 20.0], [0, -0.8, 0, 18.0], [0, 0, 2.5, -10.0], [0, 0, 0, 1]])
    volume = np.random.default_rng(0).integers(-200, 200, (24, 20, 6)).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "scan.nii.gz")
    return tmp_path / "scan.nii.gz"


def _alone(scan, tmp_path, prompts, name):
    """A structure predicted on its own, in the input's voxel order: the mask a whole structure is."""
    predict_file(BoxFillSam(32), scan, tmp_path / f"{name}.nii.gz", prompts)
    return np.asanyarray(nib.load(tmp_path / f"{name}.nii.gz").dataobj) > 0


def test_file_stems_are_safe_names_and_unnamed_structures_are_numbered():
    stems = structure_file_stems(
        [1, 2, 3, 4, 5, 6], {1: "left kidney", 2: "T2/FLAIR", 3: "", 5: "Liver", 6: "liver"}
    )
    assert stems == {
        1: "left_kidney",
        2: "T2_FLAIR",
        3: "label_3",
        4: "label_4",
        5: "Liver_5",  # one file name on macOS and Windows: both numbered
        6: "liver_6",
    }
    # read back: a name finds its value as written or as given; a name two structures share finds neither
    assert structure_values({1: "left kidney", 5: "Liver", 6: "liver"}) == {
        "left_kidney": 1,
        "liver_5": 5,
        "liver_6": 6,
    }


def test_a_volume_s_overlapping_structures_are_each_whole_in_their_own_file(scan, tmp_path):
    """Each file equals its structure predicted alone (the liver keeps the pixels the tumour covers), in the
    input's own voxel order and affine, 0 and 1; no overlap warning, as nothing was lost."""
    alone = {
        "liver": _alone(scan, tmp_path, LIVER, "liver"),
        "tumour": _alone(scan, tmp_path, TUMOUR, "tumour"),
        "label_3": _alone(scan, tmp_path, UNNAMED, "unnamed"),
    }
    assert (alone["liver"] & alone["tumour"]).any() and (alone["tumour"] & ~alone["liver"]).any()
    summary = predict_file(
        BoxFillSam(32), scan, tmp_path / "out", LIVER + TUMOUR + UNNAMED, structure_files=True
    )
    assert summary["structure_files"] == {1: "liver.nii.gz", 2: "tumour.nii.gz", 3: "label_3.nii.gz"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(summary["structure_files"].values())
    assert "warnings" not in summary
    for stem, expected in alone.items():
        written = nib.load(tmp_path / "out" / f"{stem}.nii.gz")
        np.testing.assert_allclose(written.affine, nib.load(scan).affine)
        array = np.asanyarray(written.dataobj)
        assert set(np.unique(array)) <= {0, 1}
        np.testing.assert_array_equal(array > 0, expected)

    # read back: bits of a code where the structures overlap, each structure whole
    volume, codes = read_structure_folder(tmp_path / "out", {1: "liver", 2: "tumour"})
    assert set(codes) == {1, 2, 3}
    for value, stem in ((1, "liver"), (2, "tumour"), (3, "label_3")):
        ras = nib.as_closest_canonical(nib.load(tmp_path / "out" / f"{stem}.nii.gz"))
        np.testing.assert_array_equal(np.isin(volume.array, codes[value]), np.asanyarray(ras.dataobj) > 0)


def test_structures_apart_read_back_as_a_label_map(scan, tmp_path):
    predict_file(BoxFillSam(32), scan, tmp_path / "out", LIVER + UNNAMED, structure_files=True)
    volume, codes = read_structure_folder(tmp_path / "out", {1: "liver"})
    assert codes == {1: (1,), 3: (3,)}
    predict_file(BoxFillSam(32), scan, tmp_path / "map.nii.gz", LIVER + UNNAMED)
    ras = nib.as_closest_canonical(nib.load(tmp_path / "map.nii.gz"))
    np.testing.assert_array_equal(volume.array, np.asanyarray(ras.dataobj))


def test_a_picture_s_structures_are_binary_pngs(tmp_path):
    from PIL import Image

    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32), np.uint8)).save(tmp_path / "x.png")
    prompts = [Prompt(box=[2, 3, 20, 15], name="disc"), Prompt(box=[10, 8, 30, 25], name="cup")]
    summary = predict_file(
        BoxFillSam(32), tmp_path / "x.png", tmp_path / "out", prompts, structure_files=True
    )
    assert summary["structure_files"] == {1: "disc.png", 2: "cup.png"}
    for name, (x0, y0, x1, y1) in (("disc", (2, 3, 20, 15)), ("cup", (10, 8, 30, 25))):
        expected = np.zeros((32, 32), np.uint8)
        expected[y0 : y1 + 1, x0 : x1 + 1] = 255
        np.testing.assert_array_equal(np.array(Image.open(tmp_path / "out" / f"{name}.png")), expected)


def test_structure_files_refuse_what_cannot_hold_them_and_keep_a_user_s_folder(scan, tmp_path):
    from msa_hf.inference.predictor import check_prediction_request

    with pytest.raises(ValueError, match=r"structure files are written into a folder.*out_masks"):
        check_prediction_request(scan, tmp_path / "out_masks.nii.gz", LIVER, structure_files=True)
    with pytest.raises(ValueError, match="keeps each structure whole already"):
        check_prediction_request(scan, tmp_path / "out.dcm", LIVER, structure_files=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(FileExistsError, match="holds files other than structure masks"):
        predict_file(BoxFillSam(32), scan, mine, LIVER, structure_files=True)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (
        mine / "notes.txt"
    ).read_text() == "my notes"
    predict_file(BoxFillSam(32), scan, tmp_path / "out", LIVER, structure_files=True)
    predict_file(
        BoxFillSam(32), scan, tmp_path / "out", TUMOUR, structure_files=True
    )  # an earlier one: replaced
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["tumour.nii.gz"]


@pytest.fixture
def stand_in_model(serve_stand_in):
    """`msa-hf predict MODEL ...` served by the box-filling stand-in, at the slices' own size (24 pixels)."""
    serve_stand_in(BoxFillSam(24))


def test_many_inputs_prompted_from_labels_are_scored_from_their_structure_folders(
    tmp_path, stand_in_model, capsys
):
    """Structure files are named by the label table beside the labels; `score` pairs each folder with its
    label map and values the files through the same table: boxes prompted from box-shaped structures score
    1 each. A liver file grown into the kidney scores the Dice computed here, and the kidney stays whole."""
    from msa_hf.cli import main
    from msa_hf.testing import write_nifti_case

    for seed, case in enumerate(("case_a", "case_b")):
        write_nifti_case(tmp_path, case, seed=seed)
    (tmp_path / "labelsTr" / "labels.json").write_text(json.dumps({"1": "liver", "2": "left kidney"}))
    out = tmp_path / "out"
    argv = [
        "predict",
        "m",
        str(tmp_path / "imagesTr"),
        str(out),
        "--prompts-from-labels",
        str(tmp_path / "labelsTr"),
    ]
    assert main([*argv, "--structure-files"]) == 0
    printed = capsys.readouterr().out
    assert f"msa-hf score {out} {tmp_path / 'labelsTr'}" in printed
    for case in ("case_a_0000", "case_b_0000"):  # named as the inputs are
        assert sorted(p.name for p in (out / case).iterdir()) == ["left_kidney.nii.gz", "liver.nii.gz"]
    assert main(["score", str(out), str(tmp_path / "labelsTr")]) == 0
    printed = capsys.readouterr().out
    assert "| liver | 2 | 1.000" in printed and "| left kidney | 2 | 1.000" in printed

    # case_a's liver grown over the kidney: the files overlap, each is scored whole
    liver_file = out / "case_a_0000" / "liver.nii.gz"
    written = nib.load(liver_file)
    grown = np.asanyarray(written.dataobj).copy()
    grown[4:18, 5:13, 3:6] = 1
    nib.save(nib.Nifti1Image(grown, written.affine), liver_file)
    reference = np.asanyarray(nib.load(tmp_path / "labelsTr" / "case_a.nii.gz").dataobj)
    truth = reference == 1
    dice = 2 * (grown.astype(bool) & truth).sum() / (grown.astype(bool).sum() + truth.sum())
    assert main(["score", str(out / "case_a_0000"), str(tmp_path / "labelsTr" / "case_a.nii.gz"),
                 "--label-table", str(tmp_path / "labelsTr" / "labels.json")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert f"| liver | 1 | {dice:.3f}" in printed and "| left kidney | 1 | 1.000" in printed


def test_score_names_a_structure_file_the_table_does_not_know(scan, tmp_path):
    from msa_hf.evaluation.mask_files import score_mask_files

    predict_file(BoxFillSam(32), scan, tmp_path / "pred" / "scan", LIVER + TUMOUR, structure_files=True)
    (tmp_path / "ref").mkdir()
    predict_file(BoxFillSam(32), scan, tmp_path / "ref" / "scan.nii.gz", LIVER)
    (tmp_path / "ref" / "labels.json").write_text(json.dumps({"1": "liver"}))
    with pytest.raises(
        ValueError, match=r"tumour.nii.gz: no structure of the label table is named 'tumour'.*liver"
    ):
        score_mask_files(tmp_path / "pred", tmp_path / "ref")
    (tmp_path / "ref" / "labels.json").write_text(json.dumps({"1": "liver", "2": "tumour"}))
    scores, _ = score_mask_files(tmp_path / "pred", tmp_path / "ref")
    assert [(s.class_name, s.dice) for s in scores] == [("liver", 1.0), ("tumour", 0.0)]


# ------------------------------------------------------------------------------ structure folders as labels
BOXES = {  # RAS+ voxel boxes on a (24, 20, 10) grid
    "liver": (slice(4, 12), slice(5, 13), slice(3, 6)),
    "spleen": (slice(14, 20), slice(6, 12), slice(4, 8)),
    "kidney_left": (slice(2, 6), slice(14, 18), slice(2, 9)),
}
AFFINE = np.diag([0.7, 0.7, 3.0, 1.0])


def _structure_case(folder, name, seed, structures=BOXES):
    """A TotalSegmentator-style case: `<name>/ct.nii.gz` and `<name>/segmentations/<structure>.nii.gz`."""
    image = np.random.default_rng(seed).integers(-1000, 1000, (24, 20, 10)).astype(np.int16)
    (folder / name / "segmentations").mkdir(parents=True)
    nib.save(nib.Nifti1Image(image, AFFINE), folder / name / "ct.nii.gz")
    for structure, box in structures.items():
        mask = np.zeros((24, 20, 10), np.uint8)
        mask[box] = 1
        nib.save(nib.Nifti1Image(mask, AFFINE), folder / name / "segmentations" / f"{structure}.nii.gz")


def _rows_of(folder, case_id):
    from msa_hf.data import load_prepared

    rows = [row for row in load_prepared(folder)["train"] if row["case_id"] == case_id]
    rows.sort(key=lambda row: row["slice"])
    return np.stack([np.asarray(row["label"]) for row in rows])


def _expected_slices(values):
    """The label map of `BOXES` valued by `values` ({name: value}), as prepare's axial rows of the labelled slices."""
    from msa_hf.data import axial_slices

    labels = np.zeros((24, 20, 10), np.uint8)
    for name, value in values.items():
        labels[BOXES[name]] = value
    slices = axial_slices(labels)
    kept = np.flatnonzero(slices.reshape(len(slices), -1).any(axis=1))
    return slices[kept[0] : kept[-1] + 1]


def test_prepare_reads_a_totalsegmentator_layout_valued_by_file_name_by_the_table_or_by_name(tmp_path):
    """Without a table, each structure takes a value in file-name order, alike in every case, and the report
    says so; a label table (or `structures`, one written inline) picks the structures it names and leaves the
    other files unread."""
    from msa_hf.data import prepare_dataset

    for seed, name in enumerate(("s0001", "s0002")):
        _structure_case(tmp_path / "src", name, seed)
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0))
    assert not report.skipped_cases
    assert report.class_names == {1: "kidney_left", 2: "liver", 3: "spleen"}
    assert any("structure file name (1 kidney_left, 2 liver, 3 spleen)" in w for w in report.warnings)
    expected = _expected_slices({"kidney_left": 1, "liver": 2, "spleen": 3})
    for case in ("s0001", "s0002"):
        np.testing.assert_array_equal(_rows_of(tmp_path / "out", case), expected)

    (tmp_path / "labels.json").write_text(json.dumps({"1": "liver", "2": "spleen"}))
    report = prepare_dataset(tmp_path / "src", tmp_path / "picked", kind="volumes", split=(1.0, 0.0, 0.0),
                             label_table=tmp_path / "labels.json")  # fmt: skip
    assert report.class_names == {1: "liver", 2: "spleen"}
    np.testing.assert_array_equal(
        _rows_of(tmp_path / "picked", "s0001"), _expected_slices({"liver": 1, "spleen": 2})
    )
    # the same picked on the command line, in another order: the order gives the values
    report = prepare_dataset(tmp_path / "src", tmp_path / "named", kind="volumes", split=(1.0, 0.0, 0.0),
                             structures=("spleen", "liver"))  # fmt: skip
    assert report.class_names == {1: "spleen", 2: "liver"}
    np.testing.assert_array_equal(
        _rows_of(tmp_path / "named", "s0002"), _expected_slices({"spleen": 1, "liver": 2})
    )


def test_prepare_without_a_table_joins_a_structure_each_case_names_its_own_way(tmp_path):
    """Two cases name the left kidney's file `kidney_left`, a third `Kidney_L`: without a table it is one
    class, named as most cases name it, its masks valued alike in every case, and the report says which names
    were joined."""
    from msa_hf.data import prepare_dataset

    for seed, name in enumerate(("s0001", "s0002", "s0003")):
        _structure_case(tmp_path / "src", name, seed)
    kidney = tmp_path / "src" / "s0003" / "segmentations" / "kidney_left.nii.gz"
    kidney.rename(kidney.with_name("Kidney_L.nii.gz"))
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0))
    assert not report.skipped_cases
    assert report.class_names == {1: "kidney_left", 2: "liver", 3: "spleen"}
    assert any("Kidney_L as 'kidney_left'" in warning for warning in report.warnings)
    expected = _expected_slices({"kidney_left": 1, "liver": 2, "spleen": 3})
    for case in ("s0001", "s0002", "s0003"):
        np.testing.assert_array_equal(_rows_of(tmp_path / "out", case), expected)


def test_prepare_refuses_overlapping_structure_files_unless_asked_and_reads_them_as_regions(tmp_path):
    from msa_hf.data import axial_slices, prepare_dataset, read_regions
    from msa_hf.data.tasks import structure_mask

    tumour = (slice(6, 9), slice(6, 9), slice(3, 5))  # inside the liver
    _structure_case(tmp_path / "src", "s0001", 0, {"liver": BOXES["liver"], "tumour": tumour})
    _structure_case(tmp_path / "src", "s0002", 1, {"liver": BOXES["liver"]})
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0))
    assert [case["case_id"] for case in report.skipped_cases] == ["s0001"]
    assert "liver.nii.gz and tumour.nii.gz overlap" in report.skipped_cases[0]["reason"]
    assert "--overlapping" in report.skipped_cases[0]["reason"]

    report = prepare_dataset(tmp_path / "src", tmp_path / "both", kind="volumes", split=(1.0, 0.0, 0.0),
                             overlapping=True)  # fmt: skip
    assert not report.skipped_cases and report.class_names == {1: "liver", 2: "tumour"}
    regions = read_regions(tmp_path / "both")
    rows = _rows_of(tmp_path / "both", "s0001")
    for name, box in (("liver", BOXES["liver"]), ("tumour", tumour)):
        whole = np.zeros((24, 20, 10), bool)
        whole[box] = True
        np.testing.assert_array_equal(
            structure_mask(rows, 1 if name == "liver" else 2, regions), axial_slices(whole)[3:6]
        )


def test_labels_as_structure_folders_prompt_predict_and_are_scored(tmp_path, stand_in_model, capsys):
    """`labelsTr/<case>/` folders of structure files: paired by name, prompted structure by structure (the
    box-filling stand-in then writes each box back), and scored against with no table (the files name the
    structures on both sides)."""
    from msa_hf.cli import main

    for seed, name in enumerate(("s0001", "s0002")):
        _structure_case(tmp_path / "src", name, seed)
        (tmp_path / "imagesTr").mkdir(exist_ok=True)
        (tmp_path / "src" / name / "ct.nii.gz").rename(tmp_path / "imagesTr" / f"{name}.nii.gz")
    labels = tmp_path / "labelsTr"
    labels.mkdir()
    for name in ("s0001", "s0002"):
        (tmp_path / "src" / name / "segmentations").rename(labels / name)
    out = tmp_path / "out"
    argv = ["predict", "m", str(tmp_path / "imagesTr"), str(out), "--prompts-from-labels", str(labels)]
    assert main([*argv, "--structure-files"]) == 0
    for name in ("s0001", "s0002"):
        for structure, box in BOXES.items():
            whole = np.zeros((24, 20, 10), np.uint8)
            whole[box] = 1
            np.testing.assert_array_equal(
                np.asanyarray(nib.load(out / name / f"{structure}.nii.gz").dataobj), whole
            )
    capsys.readouterr()
    assert main(["score", str(out), str(labels)]) == 0
    printed = capsys.readouterr().out
    for structure in BOXES:
        assert f"| {structure} | 2 | 1.000" in printed

    # one label map of the same structures: the same prompts, so the same masks
    assert main([*argv[:3], str(tmp_path / "maps"), *argv[4:]]) == 0
    from msa_hf.data.structure_files import read_structure_folder

    names = {1: "kidney_left", 2: "liver", 3: "spleen"}
    as_map = nib.as_closest_canonical(nib.load(tmp_path / "maps" / "s0001.nii.gz"))
    volume, _ = read_structure_folder(labels / "s0001", names)
    np.testing.assert_array_equal(np.asanyarray(as_map.dataobj), volume.array)


@pytest.mark.parametrize("structure_files", [False, True])
def test_a_totalsegmentator_layout_is_re_segmented_and_scored_in_place(
    tmp_path, stand_in_model, capsys, structure_files
):
    """`predict DATASET OUT --prompts-from-labels DATASET` takes each case folder's image, prompted from its
    structure files, and names its mask for the case; `score OUT DATASET` (with the printed label table for
    label maps) pairs each mask with its case's folder: the boxes of box-shaped structures score 1."""
    from msa_hf.cli import main

    for seed, name in enumerate(("s0001", "s0002")):
        _structure_case(tmp_path / "src", name, seed)
    out = tmp_path / "out"
    argv = ["predict", "m", str(tmp_path / "src"), str(out), "--prompts-from-labels", str(tmp_path / "src")]
    assert main(argv + (["--structure-files"] if structure_files else [])) == 0
    printed = capsys.readouterr().out
    if structure_files:
        assert sorted(p.name for p in (out / "s0001").iterdir()) == sorted(f"{s}.nii.gz" for s in BOXES)
        score = ["score", str(out), str(tmp_path / "src")]
    else:
        assert {"s0001.nii.gz", "s0002.nii.gz"} <= {p.name for p in out.iterdir()}
        assert json.loads((out / "labels.json").read_text()) == {
            "1": "kidney_left",
            "2": "liver",
            "3": "spleen",
        }
        score = ["score", str(out), str(tmp_path / "src"), "--label-table", str(out / "labels.json")]
        assert " ".join(score) in printed  # the command predict prints
    assert main(score) == 0
    printed = capsys.readouterr().out
    for structure in BOXES:
        assert f"| {structure} | 2 | 1.000" in printed


def test_detached_headers_name_their_data_in_each_form_the_formats_allow(tmp_path):
    from msa_hf.data.itk_files import detached_data_files

    headers = {
        "one.mhd": "NDims = 3\nElementType = MET_UCHAR\nElementDataFile = one.raw\n",
        "inside.mhd": "NDims = 3\nElementDataFile = LOCAL\n",
        "slices.mhd": "NDims = 3\nElementDataFile = slice%02d.raw 1 5 2\n",
        "listed.nhdr": "NRRD0004\ntype: uchar\ndata file: LIST\nlisted_a.raw\nlisted_b.raw\n",
        "spaced.nhdr": "NRRD0004\ndatafile: spaced.raw.gz\n",
        "whole.nrrd": "NRRD0004\ndata file: not_read.raw\n",  # one-file form: no detached data
    }
    for name, text in headers.items():
        (tmp_path / name).write_text(text)
    found = {name: [p.name for p in detached_data_files(tmp_path / name)] for name in headers}
    assert found == {
        "one.mhd": ["one.raw"],
        "inside.mhd": [],
        "slices.mhd": ["slice01.raw", "slice03.raw", "slice05.raw"],
        "listed.nhdr": ["listed_a.raw", "listed_b.raw"],
        "spaced.nhdr": ["spaced.raw.gz"],
        "whole.nrrd": [],
    }


@pytest.mark.parametrize("header_suffix", [".mhd", ".nhdr"])
def test_a_folder_of_detached_headers_and_their_data_is_a_structure_folder(scan, tmp_path, header_suffix):
    """MetaImage's `liver.mhd` + `liver.raw` (NRRD's `liver.nhdr` + `liver.raw.gz`) is one structure's mask:
    the folder reads as the same structures as the NIfTI one; a stray file beside them still makes it no
    structure folder."""
    pytest.importorskip("SimpleITK")
    from msa_hf.data.structure_files import structure_files
    from msa_hf.testing import write_itk_copy

    predict_file(BoxFillSam(32), scan, tmp_path / "nifti", LIVER + UNNAMED, structure_files=True)
    detached = tmp_path / "detached"
    detached.mkdir()
    for file in (tmp_path / "nifti").iterdir():
        stem = file.name.removesuffix(".nii.gz")
        write_itk_copy(file, detached / f"{stem}{header_suffix}", compress=True)
    assert len(list(detached.iterdir())) == 4  # two headers, two data files
    assert [p.name for p in structure_files(detached)] == [f"label_3{header_suffix}", f"liver{header_suffix}"]
    volume, codes = read_structure_folder(detached, {1: "liver"})
    expected, expected_codes = read_structure_folder(tmp_path / "nifti", {1: "liver"})
    assert codes == expected_codes == {1: (1,), 3: (3,)}
    np.testing.assert_array_equal(volume.array, expected.array)
    np.testing.assert_allclose(volume.affine, expected.affine, atol=1e-5)
    (detached / "notes.txt").write_text("not a mask")
    assert structure_files(detached) == []
