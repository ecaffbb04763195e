"""Structures that are unions of label values (regions), as nnU-Net v2's region-based `dataset.json` writes
BraTS's whole tumour, tumour core and enhancing tumour: read from the table, prepared, trained on, evaluated
and scored as the union of their values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from msa_hf.data import load_prepared, prepare_dataset, read_class_names, read_regions, to_binary_tasks
from msa_hf.data.label_tables import LabelTableError, parse_label_regions, read_label_structures
from msa_hf.evaluation.metrics import dice

nib = pytest.importorskip("nibabel")

BRATS_LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3}
REGIONS = {1: (1, 2, 3), 2: (2, 3), 3: (3,)}


def _tumour(shift: int = 0) -> np.ndarray:
    """Nested label values on a (32, 28, 10) grid: edema 1 around a core of 2 around an enhancing 3."""
    labels = np.zeros((32, 28, 10), np.uint8)
    labels[6 + shift : 26 + shift, 4:24, 2:8] = 1
    labels[10 + shift : 22 + shift, 8:20, 3:7] = 2
    labels[13 + shift : 19 + shift, 11:17, 4:6] = 3
    return labels


@pytest.fixture()
def brats_source(tmp_path):
    """Four BraTS-like cases (imagesTr/ + labelsTr/) with the region-based dataset.json beside them."""
    source = tmp_path / "brats"
    for folder in ("imagesTr", "labelsTr"):
        (source / folder).mkdir(parents=True)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    rng = np.random.default_rng(0)
    for case in range(4):
        labels = _tumour(shift=case)
        image = (rng.random(labels.shape) * 100 + labels * 200).astype(np.float32)
        nib.save(nib.Nifti1Image(image, affine), source / "imagesTr" / f"case{case}_0000.nii.gz")
        nib.save(nib.Nifti1Image(labels, affine), source / "labelsTr" / f"case{case}.nii.gz")
    (source / "dataset.json").write_text(
        json.dumps({"labels": BRATS_LABELS, "regions_class_order": [1, 2, 3]})
    )
    return source


def test_a_region_based_table_names_unions_of_label_values(tmp_path):
    table = tmp_path / "dataset.json"
    table.write_text(json.dumps({"labels": BRATS_LABELS}))
    assert parse_label_regions(table) == {
        "whole tumor": (1, 2, 3),
        "tumor core": (2, 3),
        "enhancing tumor": (3,),
    }
    assert read_label_structures(table) == (
        {1: "whole tumor", 2: "tumor core", 3: "enhancing tumor"},
        REGIONS,
    )
    table.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2}}))
    assert parse_label_regions(table) is None  # one value per structure: the class ids are the values
    assert read_label_structures(table) == ({1: "liver", 2: "tumour"}, {})
    table.write_text(json.dumps({"labels": {"background": 0, "core": [2, "x"]}}))
    with pytest.raises(LabelTableError, match="region 'core'"):
        parse_label_regions(table)


def test_prepare_writes_regions_and_training_rows_hold_their_unions(brats_source, tmp_path):
    report = prepare_dataset(brats_source, tmp_path / "prepared", split=(1.0, 0.0, 0.0))
    assert read_class_names(tmp_path / "prepared") == {
        1: "whole tumor",
        2: "tumor core",
        3: "enhancing tumor",
    }
    assert read_regions(tmp_path / "prepared") == REGIONS
    # a region counts each slice once: whole tumour on slices 2-7, the core on 3-6, the enhancing part on 4-5
    assert report.slices_per_class == {"whole tumor": 24, "tumor core": 16, "enhancing tumor": 8}
    assert "| 1, 2, 3 | whole tumor | 24 |" in (tmp_path / "prepared" / "README.md").read_text()
    slices = load_prepared(tmp_path / "prepared")["train"]
    tasks = to_binary_tasks(slices, read_class_names(tmp_path / "prepared"), regions=REGIONS)
    labels = {(row["case_id"], row["slice"]): np.asarray(row["label"]) for row in slices}
    assert len(tasks) == 24 + 16 + 8
    for row in tasks:
        label = labels[row["case_id"], row["slice"]]
        assert np.array_equal(np.asarray(row["mask"]).astype(bool), np.isin(label, REGIONS[row["class_id"]]))
    # read as plain values (no regions), the whole tumour would be the edema ring alone
    plain = to_binary_tasks(slices, {1: "edema"})
    assert sum(np.asarray(row["mask"]).sum() for row in plain) < sum(
        np.asarray(row["mask"]).sum() for row in tasks if row["class_id"] == 1
    )


def test_volume_windows_and_text_examples_use_the_unions(brats_source, tmp_path):
    from msa_hf.data import VolumeWindowDataset
    from msa_hf.training.text_training import (
        TextTrainingConfig,
        _example_tensors,
        sample_text_example,
        text_examples,
    )

    prepare_dataset(brats_source, tmp_path / "prepared", split=(1.0, 0.0, 0.0))
    slices = load_prepared(tmp_path / "prepared")["train"]
    names = read_class_names(tmp_path / "prepared")
    windows = VolumeWindowDataset(slices, 4, names, regions=REGIONS)
    for index in range(len(windows)):
        item = windows[index]
        rows = slices.select(windows.items[index][0].rows)
        expected = np.stack(
            [np.isin(np.asarray(label), REGIONS[item["class_id"]]) for label in rows["label"]]
        )
        assert np.array_equal(item["mask"].astype(bool), expected)
    examples = text_examples(slices, names, REGIONS)
    # each slice's structures are the regions its label map holds any value of (edema alone: whole tumour)
    assert len(examples) == len(slices)
    for _, label, _, present in examples:
        assert present == [c for c, values in REGIONS.items() if np.isin(label, values).any()]
    # a slice holding the enhancing part alone is in all three regions, not only in structure 3
    enhancing_only = {
        "image": np.zeros((4, 4)),
        "label": np.full((4, 4), 3),
        "labels_present": [3],
        "modality": "MR",
    }
    assert text_examples([enhancing_only], names, REGIONS)[0][3] == [1, 2, 3]
    assert text_examples([enhancing_only], names)[0][3] == [3]
    image, label, _, present = next(e for e in examples if e[3] == [1, 2, 3])
    config = TextTrainingConfig(union_probability=0.0)
    _, target, text = sample_text_example(
        (image, label, "MR", [2]), names, np.random.default_rng(0), config, 32, REGIONS
    )
    assert "tumor core" in text
    # the target is the core's union (values 2 and 3), not value 2 alone (a ring around the enhancing part)
    assert torch.equal(target, _example_tensors(image, label, [2, 3], "MR", 32)[1])
    assert target.sum() > _example_tensors(image, label, [2], "MR", 32)[1].sum()


def test_evaluate_and_score_measure_regions(brats_source, tmp_path):
    from msa_hf.evaluation.mask_files import score_mask_files
    from msa_hf.evaluation.protocols import evaluation_tasks

    prepare_dataset(brats_source, tmp_path / "prepared", split=(0.5, 0.0, 0.5))
    tasks = evaluation_tasks(tmp_path / "prepared", "test", 64).with_format(None)
    assert {row["class_name"] for row in tasks} == {"whole tumor", "tumor core", "enhancing tumor"}
    # predictions in label space (as nnU-Net paints regions back into label values): the core one voxel off
    (tmp_path / "pred").mkdir()
    for case in range(4):
        prediction = _tumour(shift=case)
        core = prediction >= 2
        prediction[core] = 1
        prediction[np.roll(core, 1, axis=1)] = 2
        prediction[_tumour(shift=case) == 3] = 3
        nib.save(
            nib.Nifti1Image(prediction, np.diag([1.0, 1.0, 2.0, 1.0])),
            tmp_path / "pred" / f"case{case}_0000.nii.gz",
        )
    scores, _ = score_mask_files(tmp_path / "pred", brats_source / "labelsTr")
    assert [s.class_name for s in scores[:3]] == ["whole tumor", "tumor core", "enhancing tumor"]
    by_name = {s.class_name: s for s in scores if s.case_id == "case0"}
    written = np.asarray(nib.load(tmp_path / "pred" / "case0_0000.nii.gz").dataobj)
    reference = _tumour()
    for name, values in (("whole tumor", (1, 2, 3)), ("tumor core", (2, 3)), ("enhancing tumor", (3,))):
        assert by_name[name].dice == pytest.approx(dice(np.isin(written, values), np.isin(reference, values)))
    assert by_name["whole tumor"].dice == 1.0 and by_name["tumor core"].dice < 1.0


def test_regions_paint_into_label_space_outermost_first():
    from msa_hf.data.tasks import region_paint_values, structure_mask

    assert region_paint_values(REGIONS) == {1: 1, 2: 2, 3: 3}
    # painted in class-id order, each region read back as the union of its values is that region
    whole, core, enhancing = (np.isin(_tumour(), values) for values in REGIONS.values())
    painted = np.zeros_like(_tumour())
    for class_id, mask in zip(REGIONS, (whole, core, enhancing), strict=True):
        painted[mask] = region_paint_values(REGIONS)[class_id]
    for class_id, mask in zip(REGIONS, (whole, core, enhancing), strict=True):
        assert np.array_equal(structure_mask(painted, class_id, REGIONS), mask)
    with pytest.raises(ValueError, match="outermost to the innermost"):
        region_paint_values({1: (3,), 2: (2, 3)})  # the inner region first: nothing of its own is left


def test_predict_from_labels_prompts_each_region_and_score_reads_it_back(brats_source, tmp_path):
    from msa_hf.cli import main
    from msa_hf.data import axial_slices
    from msa_hf.inference.batch import prompts_from_label_map
    from msa_hf.processing.prompts import box_from_mask

    prompts = prompts_from_label_map(brats_source / "labelsTr" / "case0.nii.gz", "box", True, regions=REGIONS)
    display = axial_slices(_tumour())
    expected = [
        (value, index, [float(v) for v in box_from_mask(np.isin(plane, REGIONS[value]))])
        for value in REGIONS
        for index, plane in enumerate(display)
        if np.isin(plane, REGIONS[value]).any()
    ]
    assert [(p.value, p.slice, p.box) for p in prompts] == expected  # the whole tumour's box, not the ring's
    inputs = str(brats_source / "imagesTr")
    assert (
        main(
            [
                "predict",
                "tiny",
                inputs,
                str(tmp_path / "out"),
                "--prompts-from-labels",
                str(brats_source / "labelsTr"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "score",
                str(tmp_path / "out"),
                str(brats_source / "labelsTr"),
                "--output-dir",
                str(tmp_path / "scores"),
            ]
        )
        == 0
    )
    rows = (tmp_path / "scores" / "scores.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1] for row in rows[:3]] == ["whole tumor", "tumor core", "enhancing tumor"]
    written = np.asarray(nib.load(tmp_path / "out" / "case0_0000.nii.gz").dataobj)
    for row, values in zip(rows[:3], REGIONS.values(), strict=True):
        assert float(row.split(",")[2]) == pytest.approx(
            dice(np.isin(written, values), np.isin(_tumour(), values))
        )


def _fundus_mask(shift: int) -> np.ndarray:
    """REFUGE's coding: 255 background, 128 the disc's rim, 0 the cup inside it."""
    yy, xx = np.mgrid[0:64, 0:64]
    distance = np.hypot(yy - 30 - shift, xx - 34)
    return np.where(distance <= 8, 0, np.where(distance <= 16, 128, 255)).astype(np.uint8)


def test_refuge_coding_is_remapped_and_its_disc_is_a_region(tmp_path):
    from PIL import Image

    from msa_hf.cli import main

    source = tmp_path / "refuge"
    for folder in ("images", "masks"):
        (source / folder).mkdir(parents=True)
    for index in range(4):
        Image.fromarray(np.full((64, 64, 3), 90 + index, np.uint8)).save(
            source / "images" / f"g{index:04d}.png"
        )
        Image.fromarray(_fundus_mask(index)).save(source / "masks" / f"g{index:04d}.png")
    # the disc holds its rim and the cup: a region of both, once 255 is background, 128 the rim and 0 the cup
    (source / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "optic disc": [1, 2], "optic cup": 2}})
    )
    argv = ["prepare", str(source), "--output-dir", str(tmp_path / "out"), "--split", "1", "0", "0"]
    assert main([*argv, "--remap-labels", "255=0", "128=1", "0=2"]) == 0
    slices = load_prepared(tmp_path / "out")["train"]
    assert read_class_names(tmp_path / "out") == {1: "optic disc", 2: "optic cup"}
    card = (tmp_path / "out" / "README.md").read_text()  # the card says the values are not the files' own
    assert "read as: 255 -> 0, 128 -> 1, 0 -> 2" in card
    for row in slices:
        coded = _fundus_mask(int(row["case_id"][1:]))
        assert np.array_equal(np.asarray(row["label"]), np.select([coded == 0, coded == 128], [2, 1], 0))
    tasks = to_binary_tasks(
        slices, read_class_names(tmp_path / "out"), regions=read_regions(tmp_path / "out")
    )
    for row in tasks:
        coded = _fundus_mask(int(row["case_id"][1:]))
        expected = coded < 255 if row["class_name"] == "optic disc" else coded == 0
        assert np.array_equal(np.asarray(row["mask"]).astype(bool), expected)
    # without the remap the files' values (0, 128, 255) are not the table's: every case is skipped
    assert main([*argv, "--overwrite"]) == 2
    assert main([*argv, "--remap-labels", "255"]) == 2 and main([*argv, "--remap-labels", "255=-1"]) == 2


def test_a_remap_applies_all_at_once_and_to_volumes_too(brats_source, tmp_path):
    from msa_hf.data.label_tables import remap_label_values

    labels = np.array([[0, 2, 300]], np.uint16)
    assert remap_label_values(labels, {0: 2, 2: 0}).tolist() == [[2, 0, 300]]  # swapped, not chained
    assert remap_label_values(np.array([[1]], np.uint8), {1: 700}).dtype == np.uint16
    # volumes: the enhancing part (3) read as part of the core (2); the regions follow the values
    prepare_dataset(brats_source, tmp_path / "prepared", split=(1.0, 0.0, 0.0), remap_labels={3: 2})
    rows = load_prepared(tmp_path / "prepared")["train"]
    assert all(3 not in row["labels_present"] for row in rows)
    assert sum(2 in row["labels_present"] for row in rows) == 16  # the core's slices


def test_refuge_coded_references_are_read_through_the_remap_by_predict_and_score(tmp_path, capsys):
    from PIL import Image

    from msa_hf.cli import main
    from msa_hf.evaluation.mask_files import score_mask_files
    from msa_hf.inference.batch import prompts_from_label_map
    from msa_hf.processing.prompts import box_from_mask

    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for index in range(2):
        Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "images" / f"g{index}.png")
        Image.fromarray(_fundus_mask(index)).save(tmp_path / "masks" / f"g{index}.png")
    (tmp_path / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "optic disc": [1, 2], "optic cup": 2}})
    )
    remap = {255: 0, 128: 1, 0: 2}
    prompts = prompts_from_label_map(
        tmp_path / "masks" / "g0.png", "box", False, regions={1: (1, 2), 2: (2,)}, label_remap=remap
    )
    coded = _fundus_mask(0)
    assert [(p.value, p.box) for p in prompts] == [
        (1, [float(v) for v in box_from_mask(coded < 255)]),  # the disc, rim and cup
        (2, [float(v) for v in box_from_mask(coded == 0)]),  # the cup
    ]
    argv = ["predict", "tiny", str(tmp_path / "images"), str(tmp_path / "out"), "--prompts-from-labels"]
    assert main([*argv, str(tmp_path / "masks"), "--remap-labels", "255=0", "128=1", "0=2"]) == 0
    capsys.readouterr()
    # the references read through the same remap: each region's Dice from the written mask
    scores, unit = score_mask_files(tmp_path / "out", tmp_path / "masks", label_remap=remap)
    written = np.asarray(Image.open(tmp_path / "out" / "g0.png"))
    by_name = {s.class_name: s for s in scores if s.case_id == "g0"}
    assert unit == "pixels" and set(by_name) == {"optic disc", "optic cup"}
    assert by_name["optic disc"].dice == pytest.approx(dice(np.isin(written, (1, 2)), coded < 255))
    assert by_name["optic cup"].dice == pytest.approx(dice(written == 2, coded == 0))
    assert (
        main(
            [
                "score",
                str(tmp_path / "out"),
                str(tmp_path / "masks"),
                "--remap-labels",
                "255=0",
                "128=1",
                "0=2",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "predict",
                "tiny",
                str(tmp_path / "images" / "g0.png"),
                str(tmp_path / "one.png"),
                "--box",
                "1",
                "1",
                "9",
                "9",
                "--remap-labels",
                "255=0",
            ]
        )
        == 2
    )
