"""NIfTI and DICOM volumes: orientation, spacing, label tables, bad files, 3-D windows and reassembly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from msa_hf.data import (
    PromptSampling,
    SamVolumeTransform,
    VolumeWindowDataset,
    axial_slices,
    find_volume_pairs,
    load_dicom_series,
    load_nifti,
    load_prepared,
    parse_label_table,
    prepare_dataset,
    read_class_names,
    reassemble_volume,
    slice_windows,
    volume_from_axial_slices,
)
from msa_hf.data.label_tables import LabelTableError
from msa_hf.data.volumes import VolumeReadError
from msa_hf.testing import SCRAMBLED_AFFINE, write_dicom_series, write_nifti_case


def _world(affine: np.ndarray, index) -> np.ndarray:
    return affine[:3, :3] @ np.asarray(index, dtype=np.float64) + affine[:3, 3]


def test_nifti_with_a_scrambled_affine_is_reoriented_with_spacing_kept(tmp_path):
    data = np.zeros((20, 12, 16), np.float32)
    markers = {(3, 4, 5): 100.0, (15, 9, 2): 200.0}
    for index, value in markers.items():
        data[index] = value
    nib.save(nib.Nifti1Image(data, SCRAMBLED_AFFINE), tmp_path / "scan.nii.gz")
    volume = load_nifti(tmp_path / "scan.nii.gz")
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert volume.spacing == pytest.approx((0.6, 0.8, 2.5))  # (x, y, z) after reorientation
    assert volume.array.shape == (16, 20, 12)
    for index, value in markers.items():
        new_index = np.argwhere(volume.array == value)[0]
        # the same voxel sits at the same place in the world
        assert np.allclose(_world(volume.affine, new_index), _world(SCRAMBLED_AFFINE, index))
    # display slices: (Z, H=Y, W=X) with anterior at the top
    slices = axial_slices(volume.array)
    assert slices.shape == (12, 20, 16)
    (z1, r1, c1), (z2, r2, c2) = (np.argwhere(slices == v)[0] for v in (100.0, 200.0))
    world1, world2 = _world(SCRAMBLED_AFFINE, (3, 4, 5)), _world(SCRAMBLED_AFFINE, (15, 9, 2))
    assert (z1 < z2) == (world1[2] < world2[2])  # superior = later slice
    assert (r1 < r2) == (world1[1] > world2[1])  # anterior = upper row
    assert (c1 < c2) == (world1[0] < world2[0])  # neurological view: patient right (+x) to the right
    assert np.array_equal(volume_from_axial_slices(slices), volume.array)
    assert volume.slice_spacing == pytest.approx((0.8, 0.6, 2.5))


def test_decathlon_folder_round_trip_keeps_hu_spacing_and_labelled_range(tmp_path):
    source = tmp_path / "Task09"
    cases = {f"case_{i:03d}": write_nifti_case(source, f"case_{i:03d}", seed=i) for i in range(4)}
    (source / "dataset.json").write_text(
        json.dumps({"labels": {"0": "background", "1": "liver", "2": "spleen"}})
    )
    report = prepare_dataset(source, tmp_path / "out", split=(0.5, 0.25, 0.25))
    assert not report.skipped_cases
    assert read_class_names(tmp_path / "out") == {1: "liver", 2: "spleen"}
    assert report.empty_slices_dropped == 4 * 5  # slices 0-2 and 8-9 of 10 carry no label
    dataset = load_prepared(tmp_path / "out")
    for split in dataset.values():
        for row in split:
            image, labels = cases[row["case_id"]]
            z = row["slice"] + 3  # labelled range starts at slice 3
            assert row["modality"] == "CT" and row["spacing"] == pytest.approx([0.7, 0.7, 3.0])
            assert row["num_slices"] == 5
            assert np.array_equal(np.asarray(row["image"]), axial_slices(image)[z])  # exact HU
            assert np.array_equal(np.asarray(row["label"]), axial_slices(labels)[z])
    # the whole labelled block comes back as a volume, on the image's grid
    train = dataset["train"].filter(lambda r: r["case_id"] == sorted(set(dataset["train"]["case_id"]))[0])
    case_id = train[0]["case_id"]
    stacked = np.stack([np.asarray(label) for label in train.sort("slice")["label"]])
    assert np.array_equal(volume_from_axial_slices(stacked), cases[case_id][1][..., 3:8])


def test_btcv_naming_and_dicom_folders_pair(tmp_path):
    for folder in ("img", "label"):
        (tmp_path / folder).mkdir()
    for i in (1, 2):
        nib.save(
            nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)),
            tmp_path / "img" / f"img{i:04d}.nii.gz",
        )
        nib.save(
            nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)),
            tmp_path / "label" / f"label{i:04d}.nii.gz",
        )
    pairs = find_volume_pairs(tmp_path)
    assert [(p.case_id, p.image.name, p.label.name) for p in pairs] == [
        ("0001", "img0001.nii.gz", "label0001.nii.gz"),
        ("0002", "img0002.nii.gz", "label0002.nii.gz"),
    ]


def test_bad_volumes_are_skipped_with_reasons(tmp_path):
    source = tmp_path / "src"
    write_nifti_case(source, "good", seed=0)
    write_nifti_case(source, "nan", seed=1, hu=False)
    bad = nib.load(source / "imagesTr" / "nan_0000.nii.gz").get_fdata().astype(np.float32)
    bad[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(bad, np.diag([0.7, 0.7, 3.0, 1.0])), source / "imagesTr" / "nan_0000.nii.gz")
    write_nifti_case(source, "empty", seed=2)
    nib.save(
        nib.Nifti1Image(np.zeros((24, 20, 10), np.uint8), np.diag([0.7, 0.7, 3.0, 1.0])),
        source / "labelsTr" / "empty.nii.gz",
    )
    write_nifti_case(source, "shape", seed=3)
    nib.save(nib.Nifti1Image(np.ones((24, 20, 9), np.uint8), np.eye(4)), source / "labelsTr" / "shape.nii.gz")
    write_nifti_case(source, "corrupt", seed=4)
    payload = (source / "imagesTr" / "corrupt_0000.nii.gz").read_bytes()
    (source / "imagesTr" / "corrupt_0000.nii.gz").write_bytes(payload[: len(payload) // 2])
    write_nifti_case(source, "four_d", seed=5)
    nib.save(
        nib.Nifti1Image(np.zeros((24, 20, 10, 2), np.float32), np.eye(4)),
        source / "imagesTr" / "four_d_0000.nii.gz",
    )
    nib.save(
        nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)),
        source / "imagesTr" / "nolabel_0000.nii.gz",
    )
    report = prepare_dataset(source, tmp_path / "out", split=(1.0, 0.0, 0.0))
    reasons = {c["case_id"]: c["reason"] for c in report.skipped_cases}
    assert set(reasons) == {
        "nan",
        "empty",
        "shape",
        "corrupt",
        "four_d",
        "nolabel_0000",
    }  # unpaired: its own name
    assert "nan_0000.nii.gz: 1 NaN/Inf" in reasons["nan"]
    assert "empty.nii.gz: the label map is empty" in reasons["empty"]
    assert "shape.nii.gz: label shape" in reasons["shape"] and "Resample" in reasons["shape"]
    assert "corrupt_0000.nii.gz" in reasons["corrupt"]
    assert "4-D image" in reasons["four_d"] and "--channel" in reasons["four_d"]
    assert "no label map found" in reasons["nolabel_0000"]
    assert report.cases == {"train": 1} and report.slices["train"] == 5  # the good case is intact
    assert len(load_prepared(tmp_path / "out")["train"]) == 5
    assert any("no label table" in w for w in report.warnings)


def test_four_d_nifti_channel_is_selectable(tmp_path):
    data = np.stack([np.full((3, 3, 3), 1.0), np.full((3, 3, 3), 2.0)], axis=-1).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "brats.nii.gz")
    with pytest.raises(VolumeReadError, match="channel=k"):
        load_nifti(tmp_path / "brats.nii.gz")
    assert load_nifti(tmp_path / "brats.nii.gz", channel=1).array.max() == 2.0
    with pytest.raises(VolumeReadError, match="out of range"):
        load_nifti(tmp_path / "brats.nii.gz", channel=2)
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"not nifti"))
    with pytest.raises(VolumeReadError, match=r"junk\.nii\.gz: not a readable NIfTI"):
        load_nifti(tmp_path / "junk.nii.gz")
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), 0.5, np.float32), np.eye(4)), tmp_path / "soft.nii.gz")
    with pytest.raises(VolumeReadError, match="non-integer"):
        load_nifti(tmp_path / "soft.nii.gz", is_label=True)


def test_dicom_series_in_hounsfield_units_with_geometry(tmp_path):
    rng = np.random.default_rng(0)
    volume_hu = rng.integers(-1000, 1500, (6, 10, 14)).astype(np.int16)  # (slices, rows, cols)
    write_dicom_series(tmp_path / "series", volume_hu)
    (tmp_path / "series" / "README.txt").write_text("not dicom")  # ignored
    volume = load_dicom_series(tmp_path / "series")
    assert volume.modality == "CT"
    assert volume.spacing == pytest.approx((0.5, 0.75, 2.0))  # (x = column spacing, y = row spacing, z)
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    # DICOM is LPS: columns run to patient left, rows to posterior. In RAS+ both axes flip.
    expected = volume_hu.transpose(2, 1, 0)[::-1, ::-1, :]
    assert np.array_equal(volume.array, expected.astype(np.float32))
    first_voxel_world = _world(volume.affine, (13, 9, 0))  # DICOM's first pixel of the first slice
    assert np.allclose(first_voxel_world, [10.0, 20.0, 100.0])  # LPS (-10, -20, 100) in RAS


def test_dicom_series_prepared_with_nifti_labels(tmp_path):
    volume_hu = np.full((4, 8, 8), -500, np.int16)
    write_dicom_series(tmp_path / "src" / "images" / "patient1", volume_hu)
    labels = np.zeros((8, 8, 4), np.uint8)
    labels[2:5, 2:5, 1:3] = 1
    affine = load_dicom_series(tmp_path / "src" / "images" / "patient1").affine
    (tmp_path / "src" / "labels").mkdir()
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "src" / "labels" / "patient1.nii.gz")
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0))
    assert not report.skipped_cases and report.slices["train"] == 2
    row = load_prepared(tmp_path / "out")["train"][0]
    assert row["modality"] == "CT" and np.asarray(row["image"]).max() == -500


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "dataset.json",
            json.dumps({"labels": {"0": "background", "1": "liver", "2": "tumour"}}),
            {1: "liver", 2: "tumour"},
        ),
        ("dataset.json", json.dumps({"labels": {"background": 0, "kidney": 1}}), {1: "kidney"}),
        ("labels.json", json.dumps(["background", "csf", "gm"]), {1: "csf", 2: "gm"}),
        ("labels.txt", "# comment\n0 background\n1 left kidney\n3 aorta\n", {1: "left kidney", 3: "aorta"}),
        ("labels.txt", '0 0 0 0 0 0 0 "Clear Label"\n1 255 0 0 1 1 1 "spleen"\n', {1: "spleen"}),
        ("labels.txt", "1 level 2 of 3 4 5\n2 segment 12\n", {1: "level 2 of 3 4 5", 2: "segment 12"}),
        (  # 3D Slicer's colour table (spaces in names written as underscores)
            "Segmentation-label_ColorTable.ctbl",
            "# Color table file x.ctbl\n# 3 values\n0 Background 0 0 0 0\n1 artery 216 101 79 255\n"
            "3 connective_tissue 111 184 210 255\n",
            {1: "artery", 3: "connective_tissue"},
        ),
        (  # FreeSurfer's lookup table (tab-separated, as FreeSurferColorLUT.txt)
            "FreeSurferColorLUT.txt",
            "#No. Label Name:   R   G   B   A\n0\tUnknown\t0 0 0 0\n17\tLeft-Hippocampus\t220 216 20 0\n",
            {17: "Left-Hippocampus"},
        ),
        (  # 3D Slicer's CSV colour table; a row without a name is named by its terminology
            "colours.csv",
            "LabelValue,Name,Color_R,Color_G,Color_B,Color_A,Type_CodeMeaning\n"
            "1,liver,221,130,101,255,Liver\n2,,144,238,144,255,Spleen\n",
            {1: "liver", 2: "Spleen"},
        ),
    ],
)
def test_label_tables(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    assert parse_label_table(tmp_path / name) == expected


def test_bad_label_tables_name_the_file(tmp_path):
    (tmp_path / "labels.txt").write_text("liver 1\n")
    with pytest.raises(LabelTableError, match=r"labels\.txt:1: expected"):
        parse_label_table(tmp_path / "labels.txt")
    (tmp_path / "labels.csv").write_text("value,structure\n1,liver\n")
    with pytest.raises(
        LabelTableError, match=r"labels\.csv: a CSV label table needs the columns LabelValue and Name"
    ):
        parse_label_table(tmp_path / "labels.csv")
    (tmp_path / "labels.json").write_text("{not json")
    with pytest.raises(LabelTableError, match="not valid JSON"):
        parse_label_table(tmp_path / "labels.json")


def _prepared_volumes(tmp_path: Path, slices_per_case=(5, 3)) -> tuple[object, dict]:
    source = tmp_path / "src"
    for index, count in enumerate(slices_per_case):
        write_nifti_case(source, f"case{index}", shape=(24, 20, count + 2), seed=index)
    labels = {}
    for index, count in enumerate(slices_per_case):
        data = np.zeros((24, 20, count + 2), np.uint8)
        data[4:12, 5:13, 1 : count + 1] = 1
        data[14:20, 6:12, 2:3] = 2
        nib.save(
            nib.Nifti1Image(data, np.diag([0.7, 0.7, 3.0, 1.0])), source / "labelsTr" / f"case{index}.nii.gz"
        )
        labels[f"case{index}"] = axial_slices(data)[1 : count + 1]
    prepare_dataset(source, tmp_path / "out", split=(1.0, 0.0, 0.0))
    return load_prepared(tmp_path / "out")["train"], labels


def test_slice_windows_cover_every_slice_consecutively(tmp_path):
    dataset, _ = _prepared_volumes(tmp_path)
    windows = slice_windows(dataset, depth=4, stride=2)
    case0 = [w for w in windows if w.case_id == "case0"]
    assert [w.slices for w in case0] == [[0, 1, 2, 3], [1, 2, 3, 4]]  # last window aligned to the end
    case1 = [w for w in windows if w.case_id == "case1"]
    assert case1[0].slices == [0, 1, 2, 2] and case1[0].valid == [True, True, True, False]  # padded
    for window in windows:
        assert [dataset[r]["slice"] for r in window.rows] == window.slices
        assert all(dataset[r]["case_id"] == window.case_id for r in window.rows)


def test_volume_windows_feed_the_depth_branch_and_reassemble(tmp_path):
    from msa_hf import SamAdapterConfig, SamAdapterModel
    from msa_hf.testing import randomize_weights, tiny_sam_kwargs

    dataset, labels = _prepared_volumes(tmp_path)
    class_names = {1: "liver", 2: "spleen"}
    windows_dataset = VolumeWindowDataset(dataset, depth=4, class_names=class_names, stride=2)
    item = windows_dataset[0]
    window, value = windows_dataset.items[0]
    assert np.array_equal(item["mask"], (labels[window.case_id][window.slices] == value).astype(np.uint8))
    windows_dataset.transform = SamVolumeTransform(
        image_size=64, prompts=PromptSampling(num_positive=2), deterministic=True
    )
    batch = torch.utils.data.default_collate([windows_dataset[i] for i in range(2)])
    assert batch["pixel_values"].shape == (2, 3, 4, 64, 64)
    for v in range(2):
        for d in range(4):
            mask = batch["labels"][v, d, 0]
            points, point_labels = batch["input_points"][v, d, 0], batch["input_labels"][v, d, 0]
            if mask.any():
                assert point_labels.tolist() == [1, 1] and all(
                    mask[y, x] == 1 for x, y in points.long().tolist()
                )
            else:
                assert point_labels.tolist() == [-10, -10]  # no target on this slice: padding prompt
    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs(), use_depth_branch=True)).eval()
    randomize_weights(model, seed=0)
    with torch.no_grad():
        outputs = model(
            pixel_values=batch["pixel_values"],
            input_points=batch["input_points"].flatten(0, 1),
            input_labels=batch["input_labels"].flatten(0, 1),
            multimask_output=False,
        )
    assert outputs.pred_masks.shape == (8, 1, 1, 32, 32) and torch.isfinite(outputs.pred_masks).all()
    # reassembly: each window predicts its slice indices; overlaps average to exactly the slice index
    case_windows = [w for w in slice_windows(dataset, depth=4, stride=1) if w.case_id == "case0"]
    predictions = [
        torch.tensor(w.slices, dtype=torch.float32)[:, None, None].expand(4, 3, 3) for w in case_windows
    ]
    volume = reassemble_volume(case_windows, predictions, num_slices=5)
    assert torch.equal(volume[:, 0, 0], torch.arange(5.0))
    # a prediction equal to the label gives the label volume back on the case's voxel grid
    label_windows = [torch.from_numpy(labels["case0"][w.slices].astype(np.float32)) for w in case_windows]
    assert np.array_equal(reassemble_volume(case_windows, label_windows).numpy(), labels["case0"])
    with pytest.raises(ValueError, match="several cases"):
        reassemble_volume(slice_windows(dataset, depth=4)[:3], [torch.zeros(4, 2, 2)] * 3)
    # a structure's windows need not span the case: the volume stays on the case's slices 0..4, and slices
    # no window covers are an error, or take the value given for them
    last = [w for w in case_windows if w.slices[0] == 1]
    assert last and list(last[0].slices) == [1, 2, 3, 4]
    partial = reassemble_volume(
        last, [predictions[case_windows.index(last[0])]], num_slices=5, uncovered=-1.0
    )
    assert partial[:, 0, 0].tolist() == [-1.0, 1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match=r"slices \[0\] are covered by no window; pass uncovered"):
        reassemble_volume(last, [predictions[case_windows.index(last[0])]], num_slices=5)


def test_prepare_resamples_to_a_target_spacing(tmp_path):
    source = tmp_path / "src"
    _, labels = write_nifti_case(source, "case0", shape=(24, 20, 10))
    report = prepare_dataset(source, tmp_path / "out", split=(1.0, 0.0, 0.0), target_spacing=(1.4, 1.4, 1.5))
    rows = load_prepared(tmp_path / "out")["train"]
    assert report.slices["train"] == len(rows)
    assert rows[0]["spacing"] == pytest.approx([1.4, 1.4, 1.5])
    assert np.asarray(rows[0]["image"]).shape == (10, 12)  # 20 * 0.7 / 1.4 rows, 24 * 0.7 / 1.4 columns
    # 3 mm slices labelled 3..7 become 1.5 mm slices 6..15: twice as many labelled slices
    assert len(rows) == 2 * int(np.flatnonzero(labels.any(axis=(0, 1))).size)
    assert set(np.unique(np.asarray(rows[0]["label"])).tolist()) <= {0, 1, 2}


def _numbered_case(
    source: Path, image_name: str, label_name: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A case whose image and label map both differ from every other case's (so a wrong pairing shows)."""
    image, labels = write_nifti_case(source, "tmp", seed=seed)
    labels = np.roll(labels, seed, axis=0)
    (source / "imagesTr" / "tmp_0000.nii.gz").rename(source / "imagesTr" / image_name)
    nib.save(nib.Nifti1Image(labels, np.diag([0.7, 0.7, 3.0, 1.0])), source / "labelsTr" / label_name)
    (source / "labelsTr" / "tmp.nii.gz").unlink()
    return image, labels


@pytest.mark.parametrize("suffix", ["", "_0000"])
def test_numbered_cases_pair_one_to_one_and_stay_apart(tmp_path, suffix):
    # patient_0001 ends like an nnU-Net channel suffix; it must stay its own case, paired with its own labels
    source = tmp_path / "src"
    cases = {
        f"patient_{i:04d}": _numbered_case(
            source, f"patient_{i:04d}{suffix}.nii.gz", f"patient_{i:04d}.nii.gz", i
        )
        for i in range(1, 5)
    }
    pairs = find_volume_pairs(source)
    assert [(p.case_id, p.label.name) for p in pairs] == [(c, f"{c}.nii.gz") for c in cases]
    prepare_dataset(source, tmp_path / "out", split=(0.5, 0.25, 0.25))
    dataset = load_prepared(tmp_path / "out")
    seen = set()
    for split in dataset.values():
        for row in split:
            image, labels = cases[row["case_id"]]
            z = row["slice"] + 3
            assert np.array_equal(np.asarray(row["image"]), axial_slices(image)[z])
            assert np.array_equal(np.asarray(row["label"]), axial_slices(labels)[z])
            seen.add(row["case_id"])
    assert seen == set(cases)  # every case written, none replaced by another


def test_nnunet_channel_files_are_one_case_and_channel_picks_one(tmp_path):
    source = tmp_path / "src"
    first, labels = write_nifti_case(source, "brain", seed=0)
    second, _ = write_nifti_case(tmp_path / "other", "brain", seed=1)
    (tmp_path / "other" / "imagesTr" / "brain_0000.nii.gz").rename(source / "imagesTr" / "brain_0001.nii.gz")
    write_nifti_case(source, "knee", seed=2)
    pairs = find_volume_pairs(source)
    assert [(p.case_id, p.image.name, sorted(p.channels)) for p in pairs] == [
        ("brain", "brain_0000.nii.gz", [0, 1]),
        ("knee", "knee_0000.nii.gz", []),
    ]
    for channel, expected in ((None, first), (1, second)):
        out = tmp_path / f"out-{channel}"
        report = prepare_dataset(source, out, split=(1, 0, 0), channel=channel)
        assert any("one image file per channel" in warning for warning in report.warnings)
        rows = [row for row in load_prepared(out)["train"] if row["case_id"] == "brain"]
        assert rows and all(
            np.array_equal(np.asarray(row["image"]), axial_slices(expected)[row["slice"] + 3]) for row in rows
        )
    with pytest.raises(
        ValueError, match=r"channel 2 \(--channel\) does not exist; its channels are 0 to 1"
    ) as refused:  # brain has channels 0 and 1 only
        prepare_dataset(source, tmp_path / "out-2", split=(1, 0, 0), channel=2)
    assert "no usable case, nothing written" in str(refused.value) and not (tmp_path / "out-2").exists()


def test_two_cases_of_one_name_are_refused(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / "src" / folder).mkdir(parents=True)
        nib.save(
            nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)),
            tmp_path / "src" / folder / "c.nii.gz",
        )
        nib.save(
            nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)),
            tmp_path / "src" / folder / "c_seg.nii.gz",
        )
    with pytest.raises(ValueError, match="are both case c"):
        prepare_dataset(tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_files_the_system_left_are_not_cases(tmp_path):
    # the Decathlon's archives carry a macOS '._' copy beside every volume; Finder leaves .DS_Store
    source = tmp_path / "Task02"
    write_nifti_case(source, "la_003", seed=0)
    write_nifti_case(source, "la_004", seed=1)
    for junk in (
        "imagesTr/._la_003_0000.nii.gz",
        "labelsTr/._la_003.nii.gz",
        ".DS_Store",
        "imagesTr/.DS_Store",
    ):
        (source / junk).write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    pairs = find_volume_pairs(source)
    assert [(p.case_id, p.image.name, p.label.name) for p in pairs] == [
        ("la_003", "la_003_0000.nii.gz", "la_003.nii.gz"),
        ("la_004", "la_004_0000.nii.gz", "la_004.nii.gz"),
    ]
    report = prepare_dataset(source, tmp_path / "out", split=(1, 0, 0))
    assert not report.skipped_cases and report.cases == {"train": 2}
    flat = tmp_path / "flat"  # case.nii.gz + case_seg.nii.gz, as unpacked from a macOS zip
    image, labels = write_nifti_case(tmp_path / "made", "c", seed=0)
    flat.mkdir()
    (tmp_path / "made" / "imagesTr" / "c_0000.nii.gz").rename(flat / "c.nii.gz")
    (tmp_path / "made" / "labelsTr" / "c.nii.gz").rename(flat / "c_seg.nii.gz")
    (flat / "._c.nii.gz").write_bytes(b"junk")
    (flat / "__MACOSX").mkdir()
    (flat / "__MACOSX" / "._c_seg.nii.gz").write_bytes(b"junk")
    assert [(p.case_id, p.label.name) for p in find_volume_pairs(flat)] == [("c", "c_seg.nii.gz")]
    report = prepare_dataset(flat, tmp_path / "out-flat", split=(1, 0, 0))
    assert not report.skipped_cases and report.cases == {"train": 1}


def test_a_series_whose_slices_need_a_missing_decoder_says_what_to_install(tmp_path):
    """A compressed series (here 12-bit JPEG, which Pillow cannot decode) is refused with the decoders to
    install, as a single compressed DICOM image is."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    from msa_hf.data.volumes import VolumeReadError

    source = get_testdata_file("JPEG-lossy.dcm")
    (tmp_path / "series").mkdir()
    for index in range(2):
        dataset = pydicom.dcmread(source)
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        dataset.ImagePositionPatient = [0.0, 0.0, 2.0 * index]
        dataset.PixelSpacing = [1.0, 1.0]
        dataset.save_as(tmp_path / "series" / f"IM{index}")
    try:
        load_dicom_series(tmp_path / "series")
    except VolumeReadError as error:
        assert "cannot decode pixel data" in str(error) and "pip install pylibjpeg" in str(error)
    else:  # a machine with the decoders reads it
        pytest.importorskip("pylibjpeg")


def test_a_run_with_no_usable_case_keeps_the_earlier_dataset(tmp_path):
    """`--overwrite` replaces a dataset only with one that holds something: a rerun whose every case is skipped
    (here a channel the 3-D volumes lack) is refused with each case's reason, and the earlier dataset stays."""
    source = tmp_path / "src"
    for index in range(2):
        write_nifti_case(source, f"case{index}", shape=(24, 20, 6), seed=index)
    prepare_dataset(source, tmp_path / "out", split=(1.0, 0.0, 0.0))
    before = (tmp_path / "out" / "prepare_report.json").read_text()
    rows = load_prepared(tmp_path / "out")["train"].num_rows
    with pytest.raises(ValueError, match="no usable case, nothing written; 2 skipped") as refused:
        prepare_dataset(source, tmp_path / "out", overwrite=True, split=(1.0, 0.0, 0.0), channel=3)
    assert str(refused.value).count("channel 3 asked") == 2
    assert (tmp_path / "out" / "prepare_report.json").read_text() == before
    assert load_prepared(tmp_path / "out")["train"].num_rows == rows > 0
