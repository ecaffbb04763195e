"""`msa-hf score`: mask files scored against reference label maps, compared with the metrics computed on the
arrays themselves; the pairing, grids and refusals."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from msa_hf.cli import main
from msa_hf.evaluation.case_scores import case_score
from msa_hf.evaluation.mask_files import score_mask_files
from msa_hf.evaluation.metrics import dice, surface_metrics

nib = pytest.importorskip("nibabel")

AFFINE = np.array([[0.8, 0, 0, -50.0], [0, 0.8, 0, -40.0], [0, 0, 2.5, 10.0], [0, 0, 0, 1]])


def _labels(shift: int = 0) -> np.ndarray:
    labels = np.zeros((40, 36, 12), np.uint8)
    labels[5 + shift : 20 + shift, 6:22, 3:9] = 1  # liver
    labels[25:33, 10:30, 2:10] = 2  # spleen
    return labels


@pytest.fixture()
def nnunet_folder(tmp_path):
    """labelsTr/case<i>.nii.gz with dataset.json above them, and predictions named as `msa-hf predict` names
    an nnU-Net input's mask (case<i>_0000.nii.gz), written in another axis order (x flipped); case 2's
    prediction misses the spleen, and its reference has no liver."""
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "spleen": 2}}))
    flip = np.diag([-1.0, 1, 1, 1])
    flip[0, 3] = 39  # voxel i of the flipped file is voxel 39 - i of the label's grid
    arrays = {}
    for case in range(3):
        labels, prediction = _labels(), _labels(shift=case)
        if case == 2:
            labels[labels == 1] = 0
            prediction[prediction == 2] = 0
        nib.save(nib.Nifti1Image(labels, AFFINE), tmp_path / "labelsTr" / f"case{case}.nii.gz")
        written = nib.Nifti1Image(np.ascontiguousarray(prediction[::-1]), AFFINE @ flip)
        nib.save(written, tmp_path / "pred" / f"case{case}_0000.nii.gz")
        arrays[f"case{case}"] = (prediction, labels)
    # what predict writes beside its masks is not a mask to score
    (tmp_path / "pred" / "summary.csv").write_text("input,output\n")
    nib.save(
        nib.Nifti1Image(np.zeros((40, 36, 12), np.float32), AFFINE),
        tmp_path / "pred" / "case0_probabilities.nii.gz",
    )
    return tmp_path, arrays


def test_volumes_are_scored_as_their_arrays_on_the_label_grid(nnunet_folder):
    folder, arrays = nnunet_folder
    scores, unit = score_mask_files(folder / "pred", folder / "labelsTr")
    assert unit == "mm"
    assert [(s.case_id, s.class_name) for s in scores] == [
        (f"case{c}", name) for c in range(3) for name in ("liver", "spleen")
    ]
    for score in scores:
        prediction, labels = arrays[score.case_id]
        value = 1 if score.class_name == "liver" else 2
        # the display stacks `case_score` takes: (Z, H, W) with (row, col, slice) spacing
        stack = [np.transpose(m == value, (2, 1, 0))[:, ::-1] for m in (prediction, labels)]
        expected = case_score(score.case_id, score.class_name, *stack, (0.8, 0.8, 2.5))
        assert (score.dice, score.hd95, score.nsd) == pytest.approx(
            (expected.dice, expected.hd95, expected.nsd)
        )
    by_case = {(s.case_id, s.class_name): s for s in scores}
    assert by_case["case0", "liver"].dice == 1.0  # read in RAS+ order: the flipped file lines up
    shifted = _labels(shift=1) == 1
    assert by_case["case1", "liver"].dice == pytest.approx(dice(shifted, _labels() == 1))
    assert by_case["case1", "liver"].hd95 == pytest.approx(0.8)  # one column of 0.8 mm off
    assert by_case["case2", "liver"].dice == 0.0 and math.isinf(
        by_case["case2", "liver"].hd95
    )  # not in the label
    assert by_case["case2", "spleen"].dice == 0.0  # missed


def test_a_structure_in_neither_mask_is_counted_apart_and_classes_choose(nnunet_folder, capsys):
    folder, _ = nnunet_folder
    labels = _labels()
    labels[labels == 2] = 0
    nib.save(nib.Nifti1Image(labels, AFFINE), folder / "labelsTr" / "case3.nii.gz")
    nib.save(nib.Nifti1Image(labels, AFFINE), folder / "pred" / "case3_0000.nii.gz")
    scores, _ = score_mask_files(folder / "pred", folder / "labelsTr", classes=["spleen"])
    assert [s.case_id for s in scores] == ["case0", "case1", "case2", "case3"]
    assert scores[3].dice is None and scores[3].hd95 is None  # no spleen drawn, none predicted
    assert main(["score", str(folder / "pred"), str(folder / "labelsTr"), "--classes", "spleen"]) == 0
    table = capsys.readouterr().out
    # cases 0 and 1 exact, case 2 missed: mean Dice 2/3 over three cases, one in neither mask
    # (sd over the three: 0.471)
    assert "| spleen | 3 | 0.667 ± 0.471 | 0.667 | 0.00 (1 inf) | 0.667 | 1 |" in table
    with pytest.raises(ValueError, match="pancreas"):
        score_mask_files(folder / "pred", folder / "labelsTr", classes=["pancreas"])


def test_score_writes_its_tables_and_keeps_earlier_ones(nnunet_folder, capsys):
    folder, _ = nnunet_folder
    output = folder / "scores"
    assert main(["score", str(folder / "pred"), str(folder / "labelsTr"), "--output-dir", str(output)]) == 0
    rows = list(csv.DictReader((output / "scores.csv").read_text(encoding="utf-8").splitlines()))
    assert [(r["case_id"], r["class_name"]) for r in rows][:2] == [("case0", "liver"), ("case0", "spleen")]
    assert float(rows[0]["dice"]) == 1.0 and "hd95_mm" in rows[0]
    # the liver of case 0: 15 x 16 x 6 voxels of 0.8 x 0.8 x 2.5 mm, predicted and drawn alike
    assert (
        float(rows[0]["predicted_ml"])
        == float(rows[0]["reference_ml"])
        == pytest.approx(15 * 16 * 6 * 1.6 / 1000)
    )
    case2_spleen = next(r for r in rows if (r["case_id"], r["class_name"]) == ("case2", "spleen"))
    assert float(case2_spleen["predicted_ml"]) == 0.0 and float(case2_spleen["reference_ml"]) > 0  # missed
    assert "| liver | 3 |" in (output / "scores.md").read_text()
    before = (output / "scores.csv").read_bytes()
    argv = ["score", str(folder / "pred"), str(folder / "labelsTr"), "--output-dir"]
    assert main([*argv, str(output), "--classes", "liver"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (output / "scores.csv").read_bytes() == before
    assert main([*argv, str(folder / "labelsTr" / "s")]) == 2  # inside the labels
    assert not (folder / "labelsTr" / "s").exists()


def test_pictures_are_scored_in_pixels_as_2d_masks(tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "pred").mkdir()
    yy, xx = np.mgrid[0:48, 0:40]
    expected = {}
    for index in range(2):
        disk = (yy - 24) ** 2 + (xx - 20) ** 2 <= (8 + index) ** 2
        box = np.zeros_like(disk)
        box[14:34, 10 + index : 30] = True
        Image.fromarray(disk.astype(np.uint8) * 255).save(tmp_path / "masks" / f"img{index}.png")  # {0, 255}
        Image.fromarray(box.astype(np.uint8)).save(tmp_path / "pred" / f"img{index}.png")  # {0, 1}
        expected[f"img{index}"] = (
            dice(box, disk),
            *surface_metrics(box, disk, 1.0, (1.0, 1.0)),
            box.sum(),
            disk.sum(),
        )
    scores, unit = score_mask_files(tmp_path / "pred", tmp_path / "masks", tolerance=1.0)
    assert unit == "pixels" and [s.class_name for s in scores] == ["class_1", "class_1"]
    for score in scores:
        assert (score.dice, score.hd95, score.nsd, *score.sizes) == pytest.approx(expected[score.case_id])


def test_masks_that_cannot_be_scored_are_refused_naming_the_file(nnunet_folder, tmp_path):
    folder, _ = nnunet_folder
    nib.save(nib.Nifti1Image(_labels(), AFFINE), folder / "pred" / "extra_0000.nii.gz")
    with pytest.raises(ValueError, match=r"no label map for 1 of 4 predictions \(extra_0000.nii.gz\)"):
        score_mask_files(folder / "pred", folder / "labelsTr")
    moved = AFFINE.copy()
    moved[0, 3] += 5.0  # same shape, 5 mm elsewhere
    nib.save(nib.Nifti1Image(_labels(), moved), folder / "pred" / "case0_0000.nii.gz")
    with pytest.raises(ValueError, match="another voxel grid"):
        score_mask_files(folder / "pred" / "case0_0000.nii.gz", folder / "labelsTr" / "case0.nii.gz")
    Image.fromarray(np.zeros((36, 40), np.uint8)).save(tmp_path / "case0.png")
    with pytest.raises(ValueError, match="one is a volume"):
        score_mask_files(tmp_path / "case0.png", folder / "labelsTr" / "case0.nii.gz")
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "label.png")
    with pytest.raises(ValueError, match="40 x 36 pixels, its label map .* 40 x 30"):
        score_mask_files(tmp_path / "case0.png", tmp_path / "label.png")
    with pytest.raises(ValueError, match="no masks found"):
        score_mask_files(folder / "labelsTr" / "*.png", folder / "labelsTr")


def test_predict_from_labels_then_score_gives_each_written_mask_its_metrics(tmp_path, capsys):
    from msa_hf.testing import write_nifti_case

    for index in range(2):
        write_nifti_case(tmp_path / "src", f"case{index}", seed=index)
    source = tmp_path / "src"
    labels, out = str(source / "labelsTr"), str(tmp_path / "out")
    assert main(["predict", "tiny", str(source / "imagesTr"), out, "--prompts-from-labels", labels]) == 0
    assert f"msa-hf score {out} {labels}" in capsys.readouterr().out  # the next step, said
    assert main(["score", out, labels, "--output-dir", out]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "scores.csv").read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 4  # two cases, structures 1 and 2
    for row in rows:
        value = int(row["class_name"].removeprefix("class_"))
        written = np.asarray(nib.load(tmp_path / "out" / f"{row['case_id']}_0000.nii.gz").dataobj) == value
        labels = np.asarray(nib.load(source / "labelsTr" / f"{row['case_id']}.nii.gz").dataobj) == value
        assert float(row["dice"]) == pytest.approx(dice(written, labels))
        hd95, nsd = surface_metrics(written, labels, 2.0, (0.7, 0.7, 3.0))
        assert (float(row["hd95_mm"]), float(row["nsd"])) == pytest.approx((hd95, nsd))


def test_dicom_seg_masks_are_scored_on_their_series_by_segment_label(tmp_path, capsys):
    pytest.importorskip("highdicom")
    from msa_hf.data import load_volume, volume_from_axial_slices
    from msa_hf.inference.dicom_seg import write_dicom_seg
    from msa_hf.testing.files import write_dicom_series

    shape = (8, 24, 28)  # display slices, rows, columns
    liver, spleen = (slice(2, 6), slice(3, 11), slice(4, 14)), (slice(3, 7), slice(14, 22), slice(15, 25))
    moved_liver = (slice(3, 7), *liver[1:])  # one slice higher
    series = tmp_path / "study" / "SER2"
    write_dicom_series(series, np.zeros(shape, np.float32), series_number=2)
    grid = load_volume(series)

    def seg(path, blocks: dict[str, tuple]) -> np.ndarray:
        drawn = np.zeros(shape, np.uint8)
        for number, block in enumerate(blocks.values(), start=1):
            drawn[block] = number
        path.parent.mkdir(exist_ok=True)
        write_dicom_seg(
            series, volume_from_axial_slices(drawn), grid.affine, path, dict(enumerate(blocks, start=1))
        )
        return drawn

    # the reference numbers liver 1, spleen 2; the prediction the other way round
    seg(tmp_path / "labels" / "SER2.dcm", {"liver": liver, "spleen": spleen})
    seg(tmp_path / "pred" / "SER2.dcm", {"spleen": spleen, "liver": moved_liver})
    argv = ["score", str(tmp_path / "pred"), str(tmp_path / "labels")]
    assert main(argv) == 2 and "--images" in capsys.readouterr().err
    scores, unit = score_mask_files(tmp_path / "pred", tmp_path / "labels", images=tmp_path / "study")
    assert unit == "mm" and [s.class_name for s in scores] == ["liver", "spleen"]  # by label, not by number
    stacks = [np.zeros(shape, bool) for _ in range(2)]
    stacks[0][moved_liver], stacks[1][liver] = True, True
    expected = case_score("SER2", "liver", *stacks, grid.slice_spacing)
    assert (scores[0].dice, scores[0].hd95, scores[0].nsd) == pytest.approx(
        (expected.dice, expected.hd95, expected.nsd)
    )
    assert scores[0].dice == pytest.approx(0.75) and scores[1].dice == 1.0
    # a NIfTI prediction of the same series against the SEG: its values named by a label table
    write_nifti = nib.Nifti1Image(
        volume_from_axial_slices(np.where(stacks[0], 7, 0).astype(np.uint8)), grid.affine
    )
    (tmp_path / "nifti").mkdir()
    nib.save(write_nifti, tmp_path / "nifti" / "SER2.nii.gz")
    with pytest.raises(
        ValueError,
        match=r"segments \(DICOM-SEG, 3D Slicer\) or RT structure set ROIs \['liver', 'spleen'\] have no label value",
    ):
        score_mask_files(tmp_path / "nifti", tmp_path / "labels", images=tmp_path / "study")
    (tmp_path / "labels.json").write_text(json.dumps({"7": "liver", "9": "spleen"}))
    scores, _ = score_mask_files(
        tmp_path / "nifti",
        tmp_path / "labels",
        images=tmp_path / "study",
        label_table=tmp_path / "labels.json",
    )
    assert [(s.class_name, s.dice) for s in scores] == [("liver", pytest.approx(0.75)), ("spleen", 0.0)]
    # a SEG of a series that is not under --images
    other = tmp_path / "elsewhere" / "SER5"
    write_dicom_series(other, np.zeros(shape, np.float32), series_number=5)
    with pytest.raises(ValueError, match="not among the series under --images"):
        score_mask_files(tmp_path / "pred", tmp_path / "labels", images=other)


def test_predictions_named_as_other_tools_name_them_pair_with_their_labels(nnunet_folder):
    folder, arrays = nnunet_folder
    (folder / "other").mkdir()
    for case, suffix in ((0, "_pred"), (1, "_seg"), (2, "")):
        (folder / "pred" / f"case{case}_0000.nii.gz").rename(folder / "other" / f"case{case}{suffix}.nii.gz")
    scores, _ = score_mask_files(folder / "other", folder / "labelsTr")
    assert sorted({s.case_id for s in scores}) == ["case0", "case1", "case2"]
    assert next(s for s in scores if s.case_id == "case0" and s.class_name == "liver").dice == 1.0


def test_dicom_seg_masks_of_one_of_several_volumes_are_scored_on_that_volume(tmp_path):
    """A series of two acquisitions (single-frame files) and the same converted into one enhanced file: SEG
    masks drawn on the second acquisition of each are read onto that acquisition, chosen by the images they
    reference, where the series alone names two volumes."""
    pytest.importorskip("highdicom")
    from msa_hf.data import axial_slices, load_volume, volume_from_axial_slices
    from msa_hf.inference.dicom_seg import write_dicom_seg
    from msa_hf.testing import write_enhanced_acquisitions

    rng = np.random.default_rng(5)
    shape = (8, 24, 28)
    write_enhanced_acquisitions(
        tmp_path / "study", [rng.integers(-100, 100, shape).astype(np.float32) for _ in "ab"]
    )
    sources = {"dual": (tmp_path / "study" / "dual", "3/AcquisitionNumber=2"),
               "file": (tmp_path / "study" / "file" / "CT.dcm", "4/FrameAcquisitionNumber=2")}  # fmt: skip
    liver = (slice(2, 6), slice(3, 11), slice(4, 14))
    moved = (slice(3, 7), *liver[1:])  # one slice higher: Dice 3/4
    for name, (source, key) in sources.items():
        grid = load_volume(source, series=key)
        assert axial_slices(grid.array).shape == shape
        for folder, block in (("labels", liver), ("pred", moved)):
            drawn = np.zeros(shape, np.uint8)
            drawn[block] = 1
            (tmp_path / folder).mkdir(exist_ok=True)
            write_dicom_seg(source, volume_from_axial_slices(drawn), grid.affine, tmp_path / folder / f"{name}.dcm",
                            {1: "liver"}, series=key)  # fmt: skip
    scores, unit = score_mask_files(tmp_path / "pred", tmp_path / "labels", images=tmp_path / "study")
    assert unit == "mm" and sorted((s.case_id, s.class_name) for s in scores) == [
        ("dual", "liver"),
        ("file", "liver"),
    ]
    assert [s.dice for s in scores] == [pytest.approx(0.75)] * 2


def test_a_manifest_pairs_masks_whose_names_do_not_tell(nnunet_folder, capsys):
    """Predictions named by another tool (`run7_patientA_final.nii.gz`) against labels named by the hospital:
    a CSV (or JSON) of pairs scores them as the same masks paired by name, named by the label table beside
    the labels; a manifest with labels beside it, a row without a label, a missing file and two rows of one
    case are refused by row."""
    folder, _ = nnunet_folder
    expected, _ = score_mask_files(folder / "pred", folder / "labelsTr")
    (folder / "tool").mkdir()
    rows = ["prediction,label,case_id"]
    for case in range(3):
        name = f"run7_patient{'ABC'[case]}_final.nii.gz"
        (folder / "pred" / f"case{case}_0000.nii.gz").rename(folder / "tool" / name)
        rows.append(f"tool/{name},labelsTr/case{case}.nii.gz,case{case}")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    scores, unit = score_mask_files(folder / "pairs.csv", None)
    assert unit == "mm" and [(s.case_id, s.class_name) for s in scores] == [
        (s.case_id, s.class_name) for s in expected
    ]
    for got, want in zip(scores, expected, strict=True):  # the same masks: the same values
        assert (got.dice, got.hd95, got.nsd, *got.sizes) == pytest.approx(
            (want.dice, want.hd95, want.nsd, *want.sizes), nan_ok=True
        )
    # JSON, case ids from the predictions' names; the command line with an output folder
    pairs = [
        {"prediction": f"tool/run7_patient{p}_final.nii.gz", "label": f"labelsTr/case{c}.nii.gz"}
        for c, p in enumerate("ABC")
    ]
    (folder / "pairs.json").write_text(json.dumps(pairs))
    assert main(["score", str(folder / "pairs.json"), "--output-dir", str(folder / "scores")]) == 0
    written = list(
        csv.DictReader((folder / "scores" / "scores.csv").read_text(encoding="utf-8").splitlines())
    )
    assert [row["case_id"] for row in written] == [f"run7_patient{p}_final" for p in "ABC" for _ in range(2)]
    assert [float(row["dice"]) if row["dice"] else None for row in written] == [s.dice for s in expected]
    assert "pairs.json's pairs scored: 3 cases" in capsys.readouterr().out

    def refused(text: str, match: str, labels=None) -> None:
        (folder / "bad.csv").write_text(text)
        with pytest.raises(ValueError, match=match):
            score_mask_files(folder / "bad.csv", labels)

    refused(rows[0] + "\n" + rows[1] + "\n", "leave the labels", labels=folder / "labelsTr")
    refused("prediction,label\ntool/run7_patientA_final.nii.gz,\n", "row 1 names no label")
    refused("prediction,reference\na.nii.gz,b.nii.gz\n", r"row 1 has unknown columns \['reference'\]")
    refused(
        "prediction,label\ntool/missing.nii.gz,labelsTr/case0.nii.gz\n",
        "row 1's prediction .*missing.nii.gz: no such file",
    )
    refused("\n".join([rows[0], rows[1], rows[1]]) + "\n", "rows 1 and 2 are both case 'case0'")
    with pytest.raises(ValueError, match="give the label maps"):
        score_mask_files(folder / "tool", None)
