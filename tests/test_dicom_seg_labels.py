# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Annotations saved as DICOM-SEG by a clinic's viewer, read as the label maps of the series they were drawn on:
`msa-hf prepare` with `images/<series>/` + `labels/<series>.dcm`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from msa_hf.data import axial_slices, load_prepared, load_volume, prepare_dataset, volume_from_axial_slices
from msa_hf.data.dicom_seg_labels import load_seg_labels
from msa_hf.data.volumes import VolumeReadError
from msa_hf.testing.files import write_dicom_series

highdicom = pytest.importorskip("highdicom")
SHAPE = (8, 24, 28)  # display slices (slices, rows, columns)


def _case(
    source: Path, case: str, structures: dict[str, tuple[slice, slice, slice]], seed: int
) -> np.ndarray:
    """A CT series with a SEG drawn on it, `structures` {segment label: display-frame block} numbered by the
    SEG writer in the given order; returns the display-frame label map with those numbers."""
    from msa_hf.inference.dicom_seg import write_dicom_seg

    volume = np.random.default_rng(seed).integers(-100, 100, SHAPE).astype(np.float32)
    write_dicom_series(source / "images" / case, volume, series_number=2)
    series = load_volume(source / "images" / case)
    drawn = np.zeros(SHAPE, np.uint8)
    for number, block in enumerate(structures.values(), start=1):
        drawn[block] = number
    (source / "labels").mkdir(parents=True, exist_ok=True)
    names = dict(enumerate(structures, start=1))
    write_dicom_seg(source / "images" / case, volume_from_axial_slices(drawn), series.affine,
                    source / "labels" / f"{case}.dcm", names)  # fmt: skip
    return drawn


LIVER = (slice(2, 6), slice(3, 11), slice(4, 14))
SPLEEN = (slice(3, 7), slice(14, 22), slice(15, 25))


def _prepared_labels(output: Path) -> dict[str, np.ndarray]:
    """Each case's label slices, stacked in slice order, from the prepared dataset."""
    rows = load_prepared(output)["train"]
    cases: dict[str, list] = {}
    for row in rows:
        cases.setdefault(row["case_id"], []).append((row["slice"], np.asarray(row["label"])))
    return {
        case: np.stack([label for _, label in sorted(items, key=lambda item: item[0])])
        for case, items in cases.items()
    }


def test_seg_label_maps_are_valued_by_segment_label_across_files(tmp_path):
    # case1 numbers liver 1 and spleen 2; case2 has only the spleen, as its segment 1
    drawn1 = _case(tmp_path / "src", "case1", {"liver": LIVER, "spleen": SPLEEN}, seed=1)
    drawn2 = _case(tmp_path / "src", "case2", {"spleen": SPLEEN}, seed=2)
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0))
    assert not report.skipped_cases and report.class_names == {1: "liver", 2: "spleen"}
    assert any("number their segments differently" in warning for warning in report.warnings)
    assert json.loads((tmp_path / "out" / "classes.json").read_text()) == {"1": "liver", "2": "spleen"}
    labels = _prepared_labels(tmp_path / "out")
    assert np.array_equal(labels["case1"], drawn1[2:7])  # labelled slices 2-6, liver 1 and spleen 2
    assert np.array_equal(labels["case2"], np.where(drawn2 == 1, 2, 0)[3:7])  # its segment 1 is the spleen: 2


def test_segments_labelled_otherwise_in_some_files_are_one_structure_without_a_table(tmp_path):
    """Two SEGs label a segment `left kidney`, a third `Kidney_L`, each as its segment 2: without a table they
    are one class (named as most files name it) valued 2 in every case; so is the third's liver, labelled
    `Leber` but coded Liver; the report says which labels were joined. Two segments of one concept in one
    file (two lesions) stay apart."""
    import pydicom

    drawn = [
        _case(tmp_path / "src", f"case{k}", {"liver": LIVER, name: SPLEEN}, seed=k)
        for k, name in enumerate(("left kidney", "left kidney", "Kidney_L"))
    ]
    german = pydicom.dcmread(tmp_path / "src" / "labels" / "case2.dcm")
    german.SegmentSequence[0].SegmentLabel = "Leber"  # its codes kept: Liver
    german.save_as(tmp_path / "src" / "labels" / "case2.dcm")
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0))
    assert not report.skipped_cases and report.class_names == {1: "liver", 2: "left kidney"}
    assert any("Kidney_L as 'left kidney'; Leber as 'liver'" in warning for warning in report.warnings)
    labels = _prepared_labels(tmp_path / "out")
    for k in range(3):
        np.testing.assert_array_equal(labels[f"case{k}"], drawn[k][2:7])

    _case(tmp_path / "two", "case0", {"lesion 1": LIVER, "lesion 2": SPLEEN}, seed=0)
    _case(tmp_path / "two", "case1", {"lesion 1": LIVER}, seed=1)
    report = prepare_dataset(tmp_path / "two", tmp_path / "out2", kind="volumes", split=(1.0, 0.0, 0.0))
    assert report.class_names == {1: "lesion 1", 2: "lesion 2"}
    assert not any("read as one" in warning for warning in report.warnings)


def test_a_label_table_gives_the_segments_their_values(tmp_path):
    drawn = _case(tmp_path / "src", "case1", {"liver": LIVER, "spleen": SPLEEN}, seed=1)
    (tmp_path / "src" / "labels.json").write_text(
        json.dumps({"0": "background", "4": "spleen", "7": "liver"})
    )
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0))
    assert report.class_names == {4: "spleen", 7: "liver"} and not report.skipped_cases
    expected = np.select([drawn == 1, drawn == 2], [7, 4], 0)[2:7]
    assert np.array_equal(_prepared_labels(tmp_path / "out")["case1"], expected)
    # a segment the table does not name skips its case with the reason; the others are prepared
    _case(tmp_path / "src", "case2", {"spleen": SPLEEN}, seed=2)
    (tmp_path / "src" / "labels.json").write_text(json.dumps({"0": "background", "4": "spleen"}))
    report = prepare_dataset(tmp_path / "src", tmp_path / "out2", kind="volumes", split=(1.0, 0.0, 0.0))
    assert [case["case_id"] for case in report.skipped_cases] == ["case1"]
    assert "segments ['liver'] have no label value" in report.skipped_cases[0]["reason"]
    assert np.array_equal(_prepared_labels(tmp_path / "out2")["case2"], 4 * _block(SPLEEN)[3:7])


def test_a_seg_is_read_only_onto_the_series_it_was_drawn_on(tmp_path):
    _case(tmp_path / "src", "case1", {"liver": LIVER}, seed=1)
    _case(tmp_path / "src", "case2", {"liver": LIVER}, seed=2)
    labels = load_seg_labels(tmp_path / "src" / "labels" / "case1.dcm", tmp_path / "src" / "images" / "case1")
    series = load_volume(tmp_path / "src" / "images" / "case1")
    assert np.allclose(labels.affine, series.affine) and labels.array.shape == series.array.shape
    assert np.array_equal(axial_slices(labels.array), _block(LIVER))
    with pytest.raises(VolumeReadError, match="Pair each DICOM-SEG with the series it was drawn on"):
        load_seg_labels(tmp_path / "src" / "labels" / "case1.dcm", tmp_path / "src" / "images" / "case2")
    with pytest.raises(VolumeReadError, match="not a DICOM Segmentation"):
        load_seg_labels(
            next((tmp_path / "src" / "images" / "case1").iterdir()), tmp_path / "src" / "images" / "case1"
        )


def test_overlapping_segments_are_refused_by_name(tmp_path):
    from msa_hf.data.volumes import dicom_series_slices
    from msa_hf.inference.dicom_seg import labels_on_series_grid

    _case(tmp_path / "src", "case1", {"liver": LIVER, "spleen": SPLEEN}, seed=1)
    series_folder, path = tmp_path / "src" / "images" / "case1", tmp_path / "src" / "labels" / "case1.dcm"
    series = load_volume(series_folder)
    # the same two segments, the spleen's frames now also covering the liver
    drawn = [_block(LIVER), _block(LIVER) | _block(SPLEEN)]
    frames = np.stack(
        [labels_on_series_grid(series_folder, volume_from_axial_slices(d), series.affine) for d in drawn],
        axis=-1,
    )
    found, _ = dicom_series_slices(series_folder)
    highdicom.seg.Segmentation(
        source_images=[dataset for _, dataset in found], pixel_array=frames.astype(bool),
        segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=list(highdicom.seg.segread(path).SegmentSequence), series_instance_uid=highdicom.UID(),
        series_number=99, sop_instance_uid=highdicom.UID(), instance_number=1, manufacturer="test",
        manufacturer_model_name="test", software_versions="0", device_serial_number="0",
    ).save_as(path)  # fmt: skip
    with pytest.raises(VolumeReadError, match=r"segments \['liver', 'spleen'\] overlap"):
        load_seg_labels(path, series_folder)


def _block(block: tuple[slice, slice, slice]) -> np.ndarray:
    drawn = np.zeros(SHAPE, np.uint8)
    drawn[block] = 1
    return drawn


def test_predict_takes_its_prompts_from_seg_files_as_from_nifti_label_maps(tmp_path, tiny_base, capsys):
    """Re-segmenting series from their DICOM-SEG annotations writes what the same annotations as NIfTI give,
    a structure valued alike in every case: the two files number the spleen differently (2, then 1), so the
    values go by name (liver 1, spleen 2), as the NIfTI label maps here value them."""
    import nibabel as nib

    from msa_hf.cli import main

    drawn = {"case1": _case(tmp_path / "src", "case1", {"liver": LIVER, "spleen": SPLEEN}, seed=1)}
    drawn["case2"] = (
        _case(tmp_path / "src", "case2", {"spleen": SPLEEN}, seed=2) * 2
    )  # its SEG's 1: the spleen
    (tmp_path / "nifti").mkdir()
    for case, display in drawn.items():
        affine = load_volume(tmp_path / "src" / "images" / case).affine
        nib.save(
            nib.Nifti1Image(volume_from_axial_slices(display), affine), tmp_path / "nifti" / f"{case}.nii.gz"
        )
    written = {}
    for labels in ("labels", "nifti"):
        source = tmp_path / "src" / labels if labels == "labels" else tmp_path / "nifti"
        arguments = ["predict", str(tiny_base), str(tmp_path / "src" / "images" / "*"), str(tmp_path / f"out-{labels}"),
                     "--prompts-from-labels", str(source), "--device", "cpu"]  # fmt: skip
        assert main(arguments) == 0, capsys.readouterr()
        written[labels] = {
            case: load_volume(tmp_path / f"out-{labels}" / f"{case}.nii.gz", is_label=True).array
            for case in drawn
        }
    for case in drawn:
        assert written["labels"][case].any() and np.array_equal(
            written["labels"][case], written["nifti"][case]
        ), case
    assert set(np.unique(written["labels"]["case2"]).tolist()) == {0, 2}  # the spleen, as in case1
    assert json.loads((tmp_path / "out-labels" / "labels.json").read_text()) == {"1": "liver", "2": "spleen"}


def test_a_study_is_read_in_the_series_its_seg_was_drawn_on(tmp_path, tiny_base):
    """A case folder as a PACS exports a study (two series); its DICOM-SEG names the series it annotates, which
    prepare and predict read without being told; NIfTI labels need --series."""
    import nibabel as nib

    from msa_hf.cli import main

    drawn = _case(tmp_path / "src", "case1", {"liver": LIVER}, seed=1)  # series 2, annotated
    other = np.random.default_rng(9).integers(-100, 100, (5, 24, 28)).astype(np.float32)
    write_dicom_series(tmp_path / "src" / "images" / "case1" / "SER7", other, series_number=7)  # beside it
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0))
    assert not report.skipped_cases
    assert np.array_equal(_prepared_labels(tmp_path / "out")["case1"], drawn[2:6])
    image_rows = load_prepared(tmp_path / "out")["train"]
    series = load_volume(tmp_path / "src" / "images" / "case1", series="2")
    assert np.array_equal(np.asarray(image_rows[0]["image"]), axial_slices(series.array)[2])
    # the same labels as NIfTI: the folder's two series are a choice
    (tmp_path / "nifti" / "labels").mkdir(parents=True)
    (tmp_path / "nifti" / "images").symlink_to(tmp_path / "src" / "images")
    nib.save(
        nib.Nifti1Image(volume_from_axial_slices(drawn), series.affine),
        tmp_path / "nifti" / "labels" / "case1.nii.gz",
    )
    with pytest.raises(ValueError, match="no usable case, nothing written") as refused:
        prepare_dataset(tmp_path / "nifti", tmp_path / "out2", kind="volumes", split=(1.0, 0.0, 0.0))
    assert "holds 2 DICOM image stacks" in str(refused.value) and "7: 5 axial CT slices" in str(refused.value)
    report = prepare_dataset(
        tmp_path / "nifti", tmp_path / "out3", kind="volumes", split=(1.0, 0.0, 0.0), series="2"
    )
    assert not report.skipped_cases and np.array_equal(
        _prepared_labels(tmp_path / "out3")["case1"], drawn[2:6]
    )
    # predict from the SEG's prompts: the annotated series, as if it were alone
    arguments = ["predict", str(tiny_base), str(tmp_path / "src" / "images" / "*"), "--device", "cpu"]
    assert (
        main(
            [
                *arguments[:3],
                str(tmp_path / "masks"),
                "--prompts-from-labels",
                str(tmp_path / "src" / "labels"),
                *arguments[3:],
            ]
        )
        == 0
    )
    assert main([*arguments[:3], str(tmp_path / "alone"), "--prompts-from-labels", str(tmp_path / "nifti" / "labels"),
                 "--series", "2", *arguments[3:]]) == 0  # fmt: skip
    written = load_volume(tmp_path / "masks" / "case1.nii.gz", is_label=True).array
    assert written.any() and np.array_equal(
        written, load_volume(tmp_path / "alone" / "case1.nii.gz", is_label=True).array
    )


def test_a_seg_drawn_on_an_enhanced_file_labels_it(tmp_path):
    """An enhanced multi-frame CT file (`images/case1.dcm`) with a DICOM-SEG drawn on its frames
    (`labels/case1.dcm`) prepares to the rows of the same series as single-frame files with its SEG."""
    from msa_hf.data.volumes import dicom_series_slices
    from msa_hf.inference.dicom_seg import write_dicom_seg

    drawn = _case(tmp_path / "classic", "case1", {"liver": LIVER, "spleen": SPLEEN}, seed=1)
    series = tmp_path / "classic" / "images" / "case1"
    found, _ = dicom_series_slices(series)
    enhanced = tmp_path / "enhanced" / "images" / "case1.dcm"
    enhanced.parent.mkdir(parents=True)
    highdicom.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=[dataset for _, dataset in found], series_instance_uid=highdicom.UID(), series_number=2,
        sop_instance_uid=highdicom.UID(), instance_number=1,
    ).save_as(enhanced)  # fmt: skip
    (tmp_path / "enhanced" / "labels").mkdir()
    affine = load_volume(enhanced).affine
    write_dicom_seg(enhanced, volume_from_axial_slices(drawn), affine, tmp_path / "enhanced" / "labels" / "case1.dcm",
                    {1: "liver", 2: "spleen"})  # fmt: skip
    labels = load_seg_labels(tmp_path / "enhanced" / "labels" / "case1.dcm", enhanced)
    assert np.array_equal(axial_slices(labels.array), drawn) and np.allclose(labels.affine, affine)
    for source in ("classic", "enhanced"):
        report = prepare_dataset(
            tmp_path / source, tmp_path / f"out-{source}", kind="volumes", split=(1.0, 0.0, 0.0)
        )
        assert not report.skipped_cases and report.class_names == {1: "liver", 2: "spleen"}, source
    rows = {source: load_prepared(tmp_path / f"out-{source}")["train"] for source in ("classic", "enhanced")}
    assert rows["classic"].num_rows == rows["enhanced"].num_rows == 5
    for classic, enhanced_row in zip(rows["classic"], rows["enhanced"], strict=True):
        assert np.array_equal(np.asarray(classic["label"]), np.asarray(enhanced_row["label"]))
        assert np.array_equal(np.asarray(classic["image"]), np.asarray(enhanced_row["image"]))


def test_seg_files_that_number_their_segments_alike_keep_their_numbers(tmp_path):
    """Every file numbers the spleen 1 and the liver 2: those are the values (not the alphabetical liver 1)."""
    drawn = {case: _case(tmp_path / "src", case, {"spleen": SPLEEN, "liver": LIVER}, seed=seed)
             for case, seed in (("case1", 1), ("case2", 2))}  # fmt: skip
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0))
    assert report.class_names == {1: "spleen", 2: "liver"}
    assert not any("number their segments differently" in warning for warning in report.warnings)
    labels = _prepared_labels(tmp_path / "out")
    for case, display in drawn.items():
        assert np.array_equal(labels[case], display[2:7]), case  # spleen 1, liver 2, as drawn


def test_a_seg_drawn_on_one_of_two_volumes_of_a_series_labels_that_volume(tmp_path):
    """A series holding two volumes at the same positions (two acquisitions as single-frame files, or the same
    converted into one enhanced file) with a DICOM-SEG drawn on the second: prepare reads that volume with its
    labels, chosen by the images the SEG references, where the series number alone names both."""
    import shutil

    from msa_hf.data.dicom_seg_labels import seg_series
    from msa_hf.inference.dicom_seg import write_dicom_seg
    from msa_hf.testing import write_enhanced_acquisitions

    rng = np.random.default_rng(4)
    volumes = [rng.integers(-100, 100, SHAPE).astype(np.float32) for _ in range(2)]
    enhanced = write_enhanced_acquisitions(tmp_path / "made", volumes)
    sources = {  # (the case's image, the second volume's key, its own series alone)
        "classic": (tmp_path / "classic" / "images" / "case1", "3/AcquisitionNumber=2"),
        "enhanced": (tmp_path / "enhanced" / "images" / "case1.dcm", "4/FrameAcquisitionNumber=2"),
    }
    shutil.copytree(tmp_path / "made" / "dual", sources["classic"][0])
    sources["enhanced"][0].parent.mkdir(parents=True)
    shutil.copy(enhanced, sources["enhanced"][0])
    second = axial_slices(load_volume(sources["classic"][0], series="3/AcquisitionNumber=2").array)
    drawn = np.zeros(second.shape, np.uint8)
    drawn[LIVER] = 1
    for name, (image, key) in sources.items():
        affine = load_volume(image, series=key).affine
        (image.parents[1] / "labels").mkdir()
        label = image.parents[1] / "labels" / "case1.dcm"
        write_dicom_seg(image, volume_from_axial_slices(drawn), affine, label, {1: "liver"}, series=key)
        assert seg_series(label, image) == key, name
        report = prepare_dataset(
            image.parents[1], tmp_path / f"out-{name}", kind="volumes", split=(1.0, 0.0, 0.0)
        )
        assert not report.skipped_cases, name
        rows = sorted(load_prepared(tmp_path / f"out-{name}")["train"], key=lambda row: row["slice"])
        images, labels = (
            np.stack([np.asarray(row[column]) for row in rows]) for column in ("image", "label")
        )
        assert np.array_equal(images, second[LIVER[0]]), name  # the labelled slices of the second volume
        assert np.array_equal(labels, drawn[LIVER[0]]), name


def test_overlapping_segments_are_read_as_bits_when_asked(tmp_path):
    """A viewer's SEG whose two segments overlap (a tumour drawn inside its organ): refused by default, and with
    `overlapping` each segment sets its own bit of the label map."""
    import pydicom
    from pydicom.sr.codedict import codes

    from msa_hf.data.volumes import dicom_series_slices

    write_dicom_series(tmp_path / "series", np.zeros(SHAPE, np.float32), series_number=2)
    found, _ = dicom_series_slices(tmp_path / "series")
    sources = [pydicom.dcmread(path) for path, _ in found]
    organ, tumour = np.zeros((len(found), *SHAPE[1:]), bool), np.zeros((len(found), *SHAPE[1:]), bool)
    organ[2:6, 3:15, 4:20] = True
    tumour[3:5, 6:10, 8:12] = True  # inside the organ
    descriptions = [
        highdicom.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue, algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for number, label in ((1, "organ"), (2, "tumour"))
    ]  # fmt: skip
    highdicom.seg.Segmentation(
        source_images=sources, pixel_array=np.stack([organ, tumour], axis=-1), segment_descriptions=descriptions,
        segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY, series_instance_uid=highdicom.UID(),
        series_number=100, sop_instance_uid=highdicom.UID(), instance_number=1, manufacturer="test",
        manufacturer_model_name="test", software_versions="1", device_serial_number="1",
    ).save_as(tmp_path / "seg.dcm")  # fmt: skip
    with pytest.raises(VolumeReadError, match=r"segments \['organ', 'tumour'\] overlap"):
        load_seg_labels(tmp_path / "seg.dcm", tmp_path / "series")
    read = load_seg_labels(
        tmp_path / "seg.dcm", tmp_path / "series", {"organ": 1, "tumour": 2}, overlapping=True
    )
    on_instances = np.zeros(organ.shape, np.uint16)
    on_instances[organ] |= 1
    on_instances[tumour] |= 2
    from msa_hf.inference.dicom_seg import labels_on_series_grid

    assert np.array_equal(labels_on_series_grid(tmp_path / "series", read.array, read.affine), on_instances)
