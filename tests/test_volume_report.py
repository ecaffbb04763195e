# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Volumetry as a PACS keeps it: each structure's whole volume in the prediction summary, and with a DICOM-SEG
a DICOM measurement report (Comprehensive 3D SR) of those volumes referencing the segments, read back with
highdicom and checked by the standard's validator."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from msa_hf.inference.predictor import Prompt, predict_file
from msa_hf.testing import BoxFillSam

highdicom = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

# a liver, a left kidney, a cyst inside the kidney and out past it (kept whole in the DICOM-SEG), a blob
PROMPTS = [
    Prompt(box=[2, 2, 10, 10], slice=2, name="liver", propagate=True),
    Prompt(box=[12, 2, 20, 10], slice=2, name="Kidney_L"),
    Prompt(box=[15, 5, 22, 12], slice=2, name="left kidney cyst"),
    Prompt(box=[12, 12, 20, 18], slice=3, name="blob"),
]


def _segment_volumes(segmentation_path, voxel_ml: float) -> dict[int, float]:
    """Each segment's voxels in the written DICOM-SEG's frames times the voxel volume: `{segment number: mL}`."""
    dataset = pydicom.dcmread(segmentation_path)
    frames = dataset.pixel_array.reshape(-1, int(dataset.Rows), int(dataset.Columns))
    volumes = {int(item.SegmentNumber): 0.0 for item in dataset.SegmentSequence}
    for frame, item in zip(frames, dataset.PerFrameFunctionalGroupsSequence, strict=True):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        volumes[number] += float(np.count_nonzero(frame)) * voxel_ml
    return {number: round(ml, 4) for number, ml in volumes.items()}


def test_a_dicom_seg_gets_a_report_of_each_segments_volume(block_series, tmp_path):
    """The summary's `volumes_ml` are the written segments' voxels times the voxel volume (the cyst whole,
    though it overlaps the kidney); the report holds one volumetric group per segment, tracked by its label,
    referencing that segment of that DICOM-SEG, its finding the segment's codes (the cyst's site the left
    kidney), its volume in millilitres; the standard's validator reports no error."""
    from msa_hf.data.volumes import load_volume, voxel_ml

    summary = predict_file(
        BoxFillSam(32), block_series, tmp_path / "seg.dcm", PROMPTS, volume_report=tmp_path / "report.dcm"
    )
    assert summary["volume_report"] == str(tmp_path / "report.dcm")
    expected = _segment_volumes(tmp_path / "seg.dcm", voxel_ml(load_volume(block_series).affine))
    assert summary["volumes_ml"] == {1: expected[1], 2: expected[2], 3: expected[3], 4: expected[4]}
    assert summary["volumes_ml"][1] > summary["masks"][0]["volume_ml"] / 2 > 0  # propagated: the whole liver

    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    report = highdicom.sr.srread(tmp_path / "report.dcm")
    assert report.Modality == "SR" and report.StudyInstanceUID == seg.StudyInstanceUID
    (procedure,) = [
        item for item in report.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "121058"
    ]
    assert (
        procedure.ConceptCodeSequence[0].CodeValue == "25045-6"
    )  # CT, unspecified body region (the series')
    groups = report.content.get_volumetric_roi_measurement_groups()
    assert [str(group.tracking_identifier) for group in groups] == [p.name for p in PROMPTS]
    for number, group in enumerate(groups, start=1):
        referenced = group.referenced_segment
        assert referenced.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert referenced.referenced_segment_numbers == [number]
        assert referenced.has_source_images  # the series' images the segment lies on
        (measurement,) = group.get_measurements()
        assert (measurement.name.value, measurement.unit.value) == ("118565006", "ml")
        assert measurement.value == pytest.approx(expected[number], abs=1e-4)
        kind = seg.SegmentSequence[number - 1].SegmentedPropertyTypeCodeSequence[0]
        assert group.finding_type.value == kind.CodeValue
    cyst_site = groups[2].finding_sites[0]
    assert cyst_site.value.value == "64033007" and cyst_site.laterality.value == "7771000"  # kidney, left
    if shutil.which("dciodvfy"):
        run = subprocess.run(["dciodvfy", str(tmp_path / "report.dcm")], capture_output=True, text=True)
        errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
        assert errors == [] and "Comprehensive3DSR" in run.stdout + run.stderr


def test_a_label_map_keeps_the_later_prompts_voxels_in_its_volumes(block_series, tmp_path):
    """In a NIfTI label map the cyst paints over part of the kidney: the summary's volumes are those the file
    holds, the kidney's smaller than its whole mask in the DICOM-SEG."""
    from msa_hf.data.volumes import load_volume, voxel_ml

    nifti = predict_file(BoxFillSam(32), block_series, tmp_path / "mask.nii.gz", PROMPTS)
    whole = predict_file(BoxFillSam(32), block_series, tmp_path / "seg.dcm", PROMPTS)
    labels = load_volume(tmp_path / "mask.nii.gz", is_label=True)
    per_voxel = voxel_ml(labels.affine)
    counted = {v: np.count_nonzero(labels.array == v) * per_voxel for v in (1, 2, 3, 4)}
    assert nifti["volumes_ml"] == pytest.approx(counted, abs=1e-4)
    assert (
        nifti["volumes_ml"][2] < whole["volumes_ml"][2] and nifti["volumes_ml"][3] == whole["volumes_ml"][3]
    )


@pytest.mark.parametrize(
    ("output", "dicom_output", "report", "message"),
    [
        ("mask.nii.gz", None, "report.dcm", "references the segments of a DICOM-SEG"),
        ("rs.dcm", "rtstruct", "report.dcm", "without --dicom-output rtstruct"),
        ("seg.dcm", None, "report.txt", "written to a .dcm file"),
        ("seg.dcm", None, "seg.dcm", "the mask's own path"),
    ],
)
def test_a_report_that_cannot_be_written_is_refused_before_anything_runs(
    block_series, tmp_path, output, dicom_output, report, message
):
    with pytest.raises(ValueError, match=message):
        predict_file(
            BoxFillSam(32), block_series, tmp_path / output, PROMPTS[:1], dicom_output=dicom_output or "seg",
            volume_report=tmp_path / report,
        )  # fmt: skip
    assert not any(tmp_path.glob("*.dcm")) and not (tmp_path / "mask.nii.gz").exists()


def test_the_command_writes_prints_and_keeps_an_earlier_report(
    block_series, tmp_path, serve_stand_in, capsys
):
    """`predict --volume-report` writes the report and prints the volumes; an existing report is kept unless
    --overwrite."""
    from msa_hf.cli import main

    serve_stand_in(BoxFillSam(32))
    arguments = ["predict", "m", str(block_series), str(tmp_path / "seg.dcm"), "--slice", "2",
                 "--box", "2", "2", "10", "10", "--name", "liver", "--volume-report", str(tmp_path / "r.dcm")]  # fmt: skip
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert f"written: {tmp_path / 'r.dcm'} (a DICOM SR of the structures' volumes: label 1 " in printed
    before = (tmp_path / "r.dcm").read_bytes()
    assert main([*arguments[:3], str(tmp_path / "seg2.dcm"), *arguments[4:]]) == 2
    assert "r.dcm exists" in capsys.readouterr().err
    assert (tmp_path / "r.dcm").read_bytes() == before and not (tmp_path / "seg2.dcm").exists()


def test_many_series_get_a_report_each_beside_their_segmentations(tmp_path, serve_stand_in, capsys):
    """`predict 'in/*' out --dicom-output seg --volume-report reports`: each series' DICOM-SEG gets
    `reports/<name>_volumes.dcm`, which references that segmentation."""
    from msa_hf.cli import main
    from msa_hf.testing import write_dicom_series

    for name in ("p1", "p2"):
        write_dicom_series(tmp_path / "in" / name, np.full((6, 20, 24), 60.0, np.float32))
    serve_stand_in(BoxFillSam(32))
    assert main(["predict", "m", str(tmp_path / "in" / "*"), str(tmp_path / "out"), "--box", "2", "2", "10", "10",
                 "--slice", "2", "--dicom-output", "seg", "--volume-report", str(tmp_path / "reports")]) == 0  # fmt: skip
    assert "written: 2 volume report(s) in" in capsys.readouterr().out
    for name in ("p1", "p2"):
        report = highdicom.sr.srread(tmp_path / "reports" / f"{name}_volumes.dcm")
        (group,) = report.content.get_volumetric_roi_measurement_groups()
        seg = pydicom.dcmread(tmp_path / "out" / f"{name}.dcm")
        assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert group.get_measurements()[0].value > 0
