"""2-D folders -> dataset -> batch, with values checked, and every kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from msa_hf.data import (
    PromptSampling,
    SamSegmentationTransform,
    find_image_pairs,
    load_prepared,
    prepare_dataset,
    read_class_names,
    read_image,
    read_mask,
    split_cases,
    to_binary_tasks,
)
from msa_hf.data.image_files import ImageReadError
from msa_hf.testing import write_png_folder


@pytest.mark.parametrize("layout", ["suffix", "folders", "metadata"])
def test_png_folder_round_trip_keeps_pixels_and_labels(tmp_path, layout):
    written = write_png_folder(tmp_path / "src", layout=layout)
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", split=(0.5, 0.25, 0.25))
    assert not report.skipped_cases and sum(report.slices.values()) == len(written)
    assert read_class_names(tmp_path / "out") == {1: "lesion", 2: "organ"}
    dataset = load_prepared(tmp_path / "out")
    seen = 0
    for split in dataset.values():
        for row in split:
            stem = next(
                c
                for c in written
                if (layout == "metadata" and c.startswith(row["case_id"])) or c == row["case_id"]
            )
            if layout == "metadata":  # two images per patient case: match by pixels
                stem = next(
                    c
                    for c in written
                    if c.startswith(row["case_id"])
                    and np.array_equal(np.asarray(row["label"]), written[c][1])
                )
            image, labels = written[stem]
            assert np.array_equal(np.asarray(row["image"]), image)  # 8-bit, 16-bit and RGB exact
            assert np.array_equal(np.asarray(row["label"]), labels)  # 0/255 became 0/1; 0/1/2 kept
            assert row["labels_present"] == sorted(set(np.unique(labels).tolist()) - {0})
            assert row["spacing_unit"] == "pixel"
            seen += 1
    assert seen == len(written)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| 1 | lesion |" in card and "path: data/train-00000-of-00001.parquet" in card


def test_metadata_case_ids_group_images_and_split_never_leaks(tmp_path):
    write_png_folder(tmp_path / "src", count=12, layout="metadata")
    prepare_dataset(tmp_path / "src", tmp_path / "out", split=(0.5, 0.25, 0.25), seed=3)
    dataset = load_prepared(tmp_path / "out")
    cases = {split: set(rows["case_id"]) for split, rows in dataset.items()}
    assert sum(len(c) for c in cases.values()) == 6  # six patients, two images each
    assert not (cases["train"] & cases["validation"]) and not (cases["train"] & cases["test"])
    assert not (cases["validation"] & cases["test"])
    for rows in dataset.values():
        counts = {c: rows["case_id"].count(c) for c in set(rows["case_id"])}
        assert set(counts.values()) == {2}  # both images of a patient land in the same split


def test_split_cases_is_deterministic_disjoint_and_complete():
    ids = [f"case{i:03d}" for i in range(50)]
    first = split_cases(ids, (0.7, 0.2, 0.1), seed=1)
    assert first == split_cases(list(reversed(ids)), (0.7, 0.2, 0.1), seed=1)
    assert [len(first[s]) for s in ("train", "validation", "test")] == [35, 10, 5]
    assert sorted(sum(first.values(), [])) == ids
    assert split_cases(ids, (0.7, 0.2, 0.1), seed=2) != first
    small = split_cases(["a", "b", "c"], (0.8, 0.1, 0.1))
    assert all(len(v) == 1 for v in small.values())


def test_case_id_pattern_groups_by_patient(tmp_path):
    write_png_folder(tmp_path / "src", count=6)
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", case_id_pattern=r"(patient\d+)_")
    assert sum(report.cases.values()) == 3 and sum(report.slices.values()) == 6
    with pytest.raises(ValueError, match="does not match"):
        prepare_dataset(tmp_path / "src", tmp_path / "out2", case_id_pattern=r"(subject\d+)")


def test_binary_tasks_and_sam_batch_from_a_png_folder(tmp_path):
    written = write_png_folder(tmp_path / "src")
    prepare_dataset(tmp_path / "src", tmp_path / "out", split=(1.0, 0.0, 0.0))
    slices = load_prepared(tmp_path / "out")["train"]
    tasks = to_binary_tasks(slices, read_class_names(tmp_path / "out"))
    expected_tasks = sum(len(set(np.unique(labels).tolist()) - {0}) for _, labels in written.values())
    assert len(tasks) == expected_tasks
    for row in tasks:
        labels = written[row["case_id"]][1]
        assert np.array_equal(np.asarray(row["mask"]), (labels == row["class_id"]).astype(np.uint8))
        assert row["class_name"] == {1: "lesion", 2: "organ"}[row["class_id"]]
    tasks.set_transform(
        SamSegmentationTransform(
            image_size=64,
            prompts=PromptSampling(num_positive=2, use_box=True, box_jitter=0.0),
            deterministic=True,
        )
    )
    batch = next(iter(torch.utils.data.DataLoader(tasks, batch_size=4)))
    assert batch["pixel_values"].shape == (4, 3, 64, 64) and batch["labels"].shape == (4, 1, 64, 64)
    for index in range(4):
        mask = batch["labels"][index, 0]
        for x, y in batch["input_points"][index, 0].long().tolist():
            assert mask[y, x] == 1  # clicks land on the target in the model frame
        x0, y0, x1, y1 = batch["input_boxes"][index, 0].tolist()
        rows, cols = torch.nonzero(mask, as_tuple=True)
        assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max(), rows.max())
    assert batch["original_sizes"][0].tolist() == [40, 56] and batch["reshaped_input_sizes"][0].tolist() == [
        46,
        64,
    ]
    # deterministic prompts: the same row gives the same clicks every time
    assert torch.equal(tasks[0]["input_points"], tasks[0]["input_points"])


def test_rows_can_carry_the_adapted_structures_moved_with_their_mask(tmp_path):
    written = write_png_folder(tmp_path / "src")
    prepare_dataset(tmp_path / "src", tmp_path / "out", split=(1.0, 0.0, 0.0))
    slices = load_prepared(tmp_path / "out")["train"]
    names = read_class_names(tmp_path / "out")
    assert "adapted" not in to_binary_tasks(slices, names).column_names  # only when asked for
    tasks = to_binary_tasks(slices, names, classes=[2], keep_adapted=True)
    for row in tasks:  # the union of the kept structures (class 2 only), not of every label
        labels = written[row["case_id"]][1]
        assert np.array_equal(np.asarray(row["adapted"]), (labels == 2).astype(np.uint8))
    tasks = to_binary_tasks(slices, names, keep_adapted=True)
    for row in tasks:
        labels = written[row["case_id"]][1]
        assert np.array_equal(np.asarray(row["adapted"]), (labels > 0).astype(np.uint8))
    for augment in (False, True):
        tasks.set_transform(
            SamSegmentationTransform(image_size=64, augment=augment, deterministic=True, seed=3)
        )
        plain = to_binary_tasks(slices, names)
        plain.set_transform(
            SamSegmentationTransform(image_size=64, augment=augment, deterministic=True, seed=3)
        )
        for index in range(len(tasks)):
            example, without = tasks[index], plain[index]
            adapted, mask = example["adapted"][0], example["labels"][0].bool()
            assert adapted.dtype == torch.bool and adapted.shape == (64, 64)
            assert (adapted | ~mask).all()  # the row's own structure lies inside the adapted ones
            # carrying it changes nothing else: pixels, mask and prompts are those of a row without it
            for key in ("pixel_values", "labels", "input_points"):
                assert torch.equal(example[key], without[key])
        if not augment:  # resized as a label: the union of the rows' masks of that picture
            by_case: dict[str, torch.Tensor] = {}
            for index in range(len(tasks)):
                example = tasks[index]
                by_case[example["case_id"]] = by_case.get(example["case_id"], 0) + example["labels"][0]
            for index in range(len(tasks)):
                example = tasks[index]
                assert torch.equal(example["adapted"][0], by_case[example["case_id"]] > 0)


def test_bad_cases_are_skipped_with_reasons_and_good_ones_kept(tmp_path):
    source = tmp_path / "src"
    write_png_folder(source, count=4)
    (source / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(source / "corrupt_mask.png")
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(source / "mismatch.png")
    Image.fromarray(np.ones((30, 30), np.uint8)).save(source / "mismatch_mask.png")
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(source / "empty.png")
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(source / "empty_mask.png")
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(source / "unpaired.png")
    jpeg_like = np.random.default_rng(0).integers(0, 256, (40, 56)).astype(np.uint8)
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(source / "soft.png")
    Image.fromarray(jpeg_like).save(source / "soft_mask.png")
    report = prepare_dataset(source, tmp_path / "out", split=(1.0, 0.0, 0.0))
    reasons = {c["case_id"]: c["reason"] for c in report.skipped_cases}
    assert set(reasons) == {"corrupt", "mismatch", "unpaired", "soft"}
    assert "corrupt.png" in reasons["corrupt"] and "cannot read" in reasons["corrupt"]
    assert "mismatch_mask.png" in reasons["mismatch"] and "differs" in reasons["mismatch"]
    assert "no mask found" in reasons["unpaired"]
    assert "not in the label table [1, 2]" in reasons["soft"] and "--mask-threshold" in reasons["soft"]
    assert report.empty_masks_skipped == [str(source / "empty_mask.png")]
    assert report.slices["train"] == 4  # the good cases are all there
    assert len(load_prepared(tmp_path / "out")["train"]) == 4
    saved = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert len(saved["skipped_cases"]) == 4
    # with no label table, too many distinct values is the JPEG tell; a threshold makes the mask usable
    with pytest.raises(ImageReadError, match="distinct values"):
        read_mask(source / "soft_mask.png")
    assert read_mask(source / "soft_mask.png", threshold=128).max() == 1


def test_image_and_mask_readers_reject_bad_values(tmp_path):
    Image.fromarray(np.array([[0, 255], [0, 0]], np.uint8)).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[0, 1], [0, 0]]
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(ImageReadError, match="colour mask"):
        read_mask(tmp_path / "colour.png")
    Image.fromarray(np.array([[0.0, np.nan]], np.float32)).save(tmp_path / "nan.tiff")
    with pytest.raises(ImageReadError, match=r"nan\.tiff: 1 NaN/Inf"):
        read_image(tmp_path / "nan.tiff")
    Image.fromarray(np.array([[0.0, 0.5]], np.float32)).save(tmp_path / "frac.tiff")
    with pytest.raises(ImageReadError, match="non-negative integers"):
        read_mask(tmp_path / "frac.tiff")


def test_prepare_refuses_to_overwrite_and_unknown_options(tmp_path):
    write_png_folder(tmp_path / "src", count=3)
    prepare_dataset(tmp_path / "src", tmp_path / "out")
    with pytest.raises(FileExistsError, match="overwrite"):
        prepare_dataset(tmp_path / "src", tmp_path / "out")
    with pytest.raises(TypeError):
        prepare_dataset(tmp_path / "src", tmp_path / "out2", windw="lung")
    with pytest.raises(ValueError, match="split"):
        prepare_dataset(tmp_path / "src", tmp_path / "out3", split=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="modality"):
        prepare_dataset(tmp_path / "src", tmp_path / "out4", modality="PET")


def test_find_image_pairs_layouts(tmp_path):
    write_png_folder(tmp_path / "a", count=2, layout="folders")
    pairs = find_image_pairs(tmp_path / "a")
    assert [(p.case_id, p.label.parent.name) for p in pairs] == [
        ("patient0_img0", "masks"),
        ("patient0_img1", "masks"),
    ]


def test_binary_tasks_drop_targets_that_vanish_at_the_model_size(tmp_path):
    source = tmp_path / "src"
    write_png_folder(source, count=2)
    dot = np.zeros((40, 56), np.uint8)
    dot[2, 2] = 1  # one pixel: nearest-neighbour resizing to 16 px samples rows/cols 1, 5, ... and misses it
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(source / "dot.png")
    Image.fromarray(dot).save(source / "dot_mask.png")
    prepare_dataset(source, tmp_path / "out", split=(1.0, 0.0, 0.0))
    slices = load_prepared(tmp_path / "out")["train"]
    names = read_class_names(tmp_path / "out")
    everything = to_binary_tasks(slices, names)
    at_16 = to_binary_tasks(slices, names, image_size=16)
    assert "dot" in everything["case_id"] and "dot" not in at_16["case_id"]
    assert len(at_16) == len(everything) - 1
    dot_row = everything["case_id"].index("dot")  # before the transform: column reads go through it after
    everything.set_transform(SamSegmentationTransform(image_size=16))
    row = everything[dot_row]
    assert row["has_target"] is False and row["input_labels"].tolist() == [[-10]]


def test_prepared_folder_loads_by_name_and_streams(tmp_path):
    from datasets import load_dataset

    written = write_png_folder(tmp_path / "src", count=4)
    prepare_dataset(tmp_path / "src", tmp_path / "out", split=(1.0, 0.0, 0.0))
    by_card = load_dataset(str(tmp_path / "out"))  # the card's YAML declares the splits
    assert list(by_card) == ["train"] and len(by_card["train"]) == 4
    streamed = load_dataset("parquet", data_dir=str(tmp_path / "out" / "data"), streaming=True)["train"]
    rows = list(streamed)
    assert len(rows) == 4
    for row in rows:
        assert np.array_equal(np.asarray(row["image"]), written[row["case_id"]][0])
        assert np.array_equal(np.asarray(row["label"]), written[row["case_id"]][1])


def test_jpeg_and_16_bit_tiff_images_are_read(tmp_path):
    yy, xx = np.mgrid[0:20, 0:30]
    photo = np.stack([xx * 8, yy * 12, (xx + yy) * 5], axis=-1).astype(np.uint8)  # smooth: JPEG keeps it
    Image.fromarray(photo).save(tmp_path / "photo.jpg", quality=95)
    jpeg = read_image(tmp_path / "photo.jpg")
    assert (
        jpeg.shape == (20, 30, 3) and np.abs(jpeg.astype(int) - photo).mean() < 4
    )  # lossy, but the same picture
    scan = np.random.default_rng(1).integers(0, 65536, (20, 30)).astype(np.uint16)
    Image.fromarray(scan).save(tmp_path / "scan.tiff")
    assert np.array_equal(read_image(tmp_path / "scan.tiff"), scan)


def test_transform_pixel_values_are_the_windowed_hu_by_hand():
    from msa_hf.data.transforms import GrayscaleToRGB, SamNormalize, WindowIntensity

    hu = np.random.default_rng(0).integers(-1000, 1000, (64, 64)).astype(np.int16)
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 30:50] = 1
    row = {"image": hu, "mask": mask, "modality": "CT", "case_id": "c", "slice": 0, "class_id": 1}
    out = SamSegmentationTransform(image_size=64, window="liver", deterministic=True).example(row)
    expected = SamNormalize()(
        GrayscaleToRGB()(WindowIntensity(preset="liver")(torch.from_numpy(hu.astype(np.float32))))
    )
    assert torch.allclose(out["pixel_values"], expected, atol=1e-5)  # same size: resize is the identity
    assert torch.equal(out["labels"][0], torch.from_numpy(mask).float())
    default = SamSegmentationTransform(image_size=64, deterministic=True).example(row)  # CT default: abdomen
    expected = SamNormalize()(
        GrayscaleToRGB()(WindowIntensity(preset="abdomen")(torch.from_numpy(hu.astype(np.float32))))
    )
    assert torch.allclose(default["pixel_values"], expected, atol=1e-5)
    with pytest.raises(ValueError, match="differ in size"):
        SamSegmentationTransform(image_size=64).example({**row, "mask": mask[:32]})


def test_numbered_images_pair_with_their_own_masks(tmp_path):
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
        for index in (1, 2, 3):
            Image.fromarray(np.full((8, 8), index, np.uint8)).save(
                tmp_path / folder / f"patient_{index:04d}.png"
            )
    pairs = find_image_pairs(tmp_path)
    assert [(p.case_id, p.label.name) for p in pairs] == [
        (f"patient_{i:04d}", f"patient_{i:04d}.png") for i in (1, 2, 3)
    ]


def test_one_subfolder_per_patient_is_one_case_paired_within_it(tmp_path):
    rng = np.random.default_rng(0)
    for patient in ("anna", "ben"):
        for folder in ("images", "masks"):
            (tmp_path / "src" / folder / patient).mkdir(parents=True)
        for name in ("001", "002"):  # slice names repeat across patients
            image = rng.integers(0, 60, (32, 32)).astype(np.uint8)
            mask = np.zeros((32, 32), np.uint8)
            top = int(rng.integers(2, 14))
            mask[top : top + 10, 6:18] = 1
            image[mask > 0] = 200
            Image.fromarray(image).save(tmp_path / "src" / "images" / patient / f"{name}.png")
            Image.fromarray(mask).save(tmp_path / "src" / "masks" / patient / f"{name}.png")
    pairs = find_image_pairs(tmp_path / "src")
    assert [(p.case_id, p.image.parent.name, p.label.parent.name, p.label.name) for p in pairs] == [
        (patient, patient, patient, f"{name}.png") for patient in ("anna", "ben") for name in ("001", "002")
    ]
    prepare_dataset(tmp_path / "src", tmp_path / "out", split=(0.5, 0.5, 0.0))
    dataset = load_prepared(tmp_path / "out")
    assert {split: set(rows["case_id"]) for split, rows in dataset.items() if len(rows)} in (
        {"train": {"anna"}, "validation": {"ben"}},
        {"train": {"ben"}, "validation": {"anna"}},
    )  # a patient's slices never straddle two splits


def test_subfolders_with_names_of_their_own_keep_one_case_per_image(tmp_path):
    for folder in ("images", "masks"):
        for split, names in (("train", ("a", "b")), ("test", ("c",))):
            (tmp_path / folder / split).mkdir(parents=True)
            for name in names:
                Image.fromarray(np.full((8, 8), ord(name), np.uint8)).save(
                    tmp_path / folder / split / f"{name}.png"
                )
    pairs = find_image_pairs(tmp_path)
    assert [(p.case_id, p.label.relative_to(tmp_path).as_posix()) for p in pairs] == [
        ("c", "masks/test/c.png"), ("a", "masks/train/a.png"), ("b", "masks/train/b.png")
    ]  # fmt: skip
