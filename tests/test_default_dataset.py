"""The embedded default dataset: MNI152 tissue classes built offline from nilearn's bundled template."""

from __future__ import annotations

import numpy as np
import pytest

from msa_hf.cli import main
from msa_hf.data import (
    MNI_TISSUE_CLASSES,
    axial_slices,
    build_mni152_tissue_dataset,
    ensure_default_dataset,
    load_prepared,
    mni152_tissue_volumes,
    read_class_names,
    to_binary_tasks,
)


@pytest.fixture(scope="module")
def default_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mni") / "mni152-tissue"
    report = build_mni152_tissue_dataset(folder)
    return folder, report


def test_tissue_labels_are_the_most_probable_tissue_inside_the_brain():
    from nilearn import datasets as nilearn_datasets

    image, labels, affine = mni152_tissue_volumes()
    assert image.shape == labels.shape == (197, 233, 189) and image.dtype == np.uint8
    template = np.asanyarray(nilearn_datasets.load_mni152_template(resolution=1).dataobj)
    assert np.array_equal(image, np.round(template * 255).astype(np.uint8))
    grey = np.asanyarray(nilearn_datasets.load_mni152_gm_template(resolution=1).dataobj)
    white = np.asanyarray(nilearn_datasets.load_mni152_wm_template(resolution=1).dataobj)
    brain = template > 0.2
    assert np.array_equal(labels > 0, brain)
    rng = np.random.default_rng(0)
    for index in rng.choice(np.flatnonzero(brain), 500, replace=False):
        probabilities = [
            max(1 - grey.flat[index] - white.flat[index], 0),
            grey.flat[index],
            white.flat[index],
        ]
        assert labels.flat[index] == int(np.argmax(probabilities)) + 1
    counts = np.bincount(labels.ravel(), minlength=4)
    assert counts[2] > counts[3] > counts[1] > 100_000  # grey > white > CSF, as in an adult brain
    assert np.allclose(np.diag(affine)[:3], 1.0)


def test_default_dataset_splits_by_slab_with_gaps(default_dataset):
    folder, report = default_dataset
    assert read_class_names(folder) == MNI_TISSUE_CLASSES
    dataset = load_prepared(folder)
    assert set(dataset) == {"train", "validation", "test"}
    starts = {}
    for split, rows in dataset.items():
        for case_id in set(rows["case_id"]):
            starts[case_id] = (split, int(case_id.rsplit("z", 1)[1]))
        assert len(rows) == report.slices[split] > 0
    ordered = sorted(starts.values(), key=lambda s: s[1])
    assert all(
        b[1] - a[1] == 13 for a, b in zip(ordered, ordered[1:], strict=False)
    )  # 10-slice slabs, 3-slice gaps
    assert {s for s, _ in starts.values()} == {"train", "validation", "test"}
    # the stored slices are the template's slices
    image, labels, _ = mni152_tissue_volumes()
    row = dataset["train"][0]
    z = int(row["case_id"].rsplit("z", 1)[1]) + row["slice"]
    assert np.array_equal(np.asarray(row["image"]), axial_slices(image)[z])
    assert np.array_equal(np.asarray(row["label"]), axial_slices(labels)[z])
    assert row["modality"] == "MR" and row["spacing"] == [1.0, 1.0, 1.0] and row["spacing_unit"] == "mm"
    # every slab is cut axially, which a model adapted on it records
    from msa_hf.training.config import TrainConfig
    from msa_hf.training.datasets import training_planes

    assert report.planes == dict.fromkeys(starts, "axial")
    assert training_planes(TrainConfig(dataset=str(folder))) == ("axial",)


def test_default_dataset_card_keeps_the_mcgill_notice_and_gives_binary_tasks(default_dataset):
    folder, _ = default_dataset
    card = (folder / "README.md").read_text()
    assert "Louis Collins, McConnell Brain Imaging Centre" in card and "McGill University" in card
    assert "not new subjects" in card
    tasks = to_binary_tasks(load_prepared(folder)["validation"], MNI_TISSUE_CLASSES)
    assert set(tasks["class_name"]) == {"csf", "grey_matter", "white_matter"}
    assert all(np.asarray(m).any() for m in tasks.select(range(0, len(tasks), 7))["mask"])


def test_ensure_default_dataset_builds_once(tmp_path, monkeypatch):
    folder = tmp_path / "mni"
    ensure_default_dataset(folder)
    stamp = (folder / "prepare_report.json").stat().st_mtime_ns
    ensure_default_dataset(folder)
    assert (folder / "prepare_report.json").stat().st_mtime_ns == stamp


def test_cli_prepare_and_build_default_data(tmp_path, capsys):
    from msa_hf.testing import write_png_folder

    write_png_folder(tmp_path / "src", count=4)
    assert (
        main(["prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--split", "0.5", "0.25", "0.25"]) == 0
    )
    printed = capsys.readouterr().out
    assert "| train | 2 | 2 |" in printed and "| lesion |" in printed
    assert main(["prepare", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (
        main(
            ["prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--overwrite", "--split", "1", "0", "0"]
        )
        == 0
    )
    assert len(load_prepared(tmp_path / "out")["train"]) == 4
    (tmp_path / "empty").mkdir()
    assert main(["prepare", str(tmp_path / "empty"), str(tmp_path / "out2")]) == 2
    assert "holds no volume (NIfTI" in capsys.readouterr().err
    assert main(["build-default-data", str(tmp_path / "mni"), "--targets", "tissue"]) == 0
    assert "| grey_matter |" in capsys.readouterr().out
    assert main(["build-default-data", str(tmp_path / "objects")]) == 0  # the default: brain structures
    assert "| deep_grey_left |" in capsys.readouterr().out
