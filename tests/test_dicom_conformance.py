# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The DICOM files `predict` writes, checked by tools of others: they conform to the standard as its
reference validator reads it, and an independent radiotherapy converter reads the RT structure sets back.

Viewers, PACS and radiotherapy planning systems import DICOM-SEG and RT structure sets only as far as the
files carry what their information object definitions require. `dciodvfy` (David Clunie's dicom3tools, the
validator the DICOM community checks files with; Debian's `dicom3tools` package) checks every module the
standard lists for a file's SOP class; these tests run it on each kind of file `predict` writes, from a
series of classic images and from an enhanced multi-frame file, with structures that overlap, and fail on any
error it reports. `plastimatch` (Debian's `plastimatch`) rasterizes our RT structure sets onto the series,
and writes structure sets of its own that our reader reads. Each test is skipped where its tool is not
installed; what they found once is also asserted directly in test_rtstruct and test_structure_names.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import numpy as np
import pytest

from msa_hf.inference.predictor import predict_file
from msa_hf.testing import BoxFillSam, overlapping_prompts

pytest.importorskip("highdicom")
DCIODVFY = shutil.which("dciodvfy")
needs_dciodvfy = pytest.mark.skipif(
    DCIODVFY is None, reason="dciodvfy (Debian's dicom3tools) is not installed"
)

LIVER, TUMOUR = overlapping_prompts()  # a liver, and a tumour inside it and out past its edge


def _validator_errors(path) -> list[str]:
    """The lines `dciodvfy` reports as errors for the file at `path` (its warnings are advice, not breaches)."""
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A CT series of classic images, and the same slices as one enhanced multi-frame file."""
    from msa_hf.testing import write_dicom_series
    from msa_hf.testing.files import write_enhanced_acquisitions

    folder = tmp_path_factory.mktemp("sources")
    volume = np.full((6, 20, 24), -1000.0, np.float32)
    volume[1:5, 3:16, 2:20] = 60.0
    write_dicom_series(folder / "series", volume, description="abdomen")
    enhanced = write_enhanced_acquisitions(folder / "enhanced", [volume])
    latin = {"SpecificCharacterSet": "ISO_IR 100", "PatientName": "Müller^Jörg"}  # Latin-1, as many scanners
    write_dicom_series(
        folder / "latin", volume, description="Thorax mit Kontrastmittel, " + "äöü " * 5, attributes=latin
    )
    return {"series": folder / "series", "enhanced": enhanced, "latin": folder / "latin"}


@needs_dciodvfy
@pytest.mark.parametrize("source_kind", ["series", "enhanced", "latin"])
@pytest.mark.parametrize("output_kind", ["seg", "rtstruct"])
def test_predicted_dicom_files_pass_the_standards_validator(sources, tmp_path, source_kind, output_kind):
    """A liver and a tumour that overlaps it, named beyond ASCII and at greater length than DICOM holds,
    written as a DICOM-SEG or an RT structure set of a classic series, of an enhanced file, or of a series in
    Latin-1 with a patient's name beyond ASCII: `dciodvfy` reports no error."""
    import pydicom

    output = tmp_path / f"{source_kind}-{output_kind}.dcm"
    tumour = [
        dataclasses.replace(prompt, name="Läsion 肝, a tumour inside the liver and out past its edge " * 2)
        for prompt in TUMOUR
    ]
    predict_file(BoxFillSam(32), sources[source_kind], output, LIVER + tumour, dicom_output=output_kind)
    written = pydicom.dcmread(output)
    assert written.Modality == {"seg": "SEG", "rtstruct": "RTSTRUCT"}[output_kind]
    assert _validator_errors(output) == []


@needs_dciodvfy
@pytest.mark.parametrize("output_kind", ["seg", "rtstruct"])
def test_coded_structures_pass_the_standards_validator(sources, tmp_path, output_kind):
    """Structures coded from their names (`structure_codes`), with a type's laterality modifier and an
    abnormal structure's anatomic region and its laterality, as DICOM-SEG segments or RT structure set ROI
    observations: `dciodvfy` reports no error."""
    import pydicom

    kidney = [dataclasses.replace(prompt, name="Kidney_L") for prompt in LIVER]
    prompts = kidney + [dataclasses.replace(prompt, name="left kidney cyst") for prompt in TUMOUR]
    output = tmp_path / f"{output_kind}.dcm"
    predict_file(BoxFillSam(32), sources["series"], output, prompts, dicom_output=output_kind)
    written = pydicom.dcmread(output)
    items, type_keyword = (
        (written.SegmentSequence, "SegmentedPropertyTypeCodeSequence")
        if output_kind == "seg"
        else (written.RTROIObservationsSequence, "RTROIIdentificationCodeSequence")
    )
    assert "SegmentedPropertyTypeModifierCodeSequence" in items[0][type_keyword][0]
    assert "AnatomicRegionModifierSequence" in items[-1].AnatomicRegionSequence[0]
    assert _validator_errors(output) == []


@needs_dciodvfy
def test_the_validator_reports_a_missing_required_attribute(sources, tmp_path):
    """The check can fail: an RT structure set without its Frame of Reference UID is an error to it."""
    import pydicom

    output = tmp_path / "rs.dcm"
    predict_file(BoxFillSam(32), sources["series"], output, LIVER, dicom_output="rtstruct")
    broken = pydicom.dcmread(output)
    del broken.FrameOfReferenceUID
    broken.save_as(tmp_path / "broken.dcm")
    assert any("FrameOfReferenceUID" in line for line in _validator_errors(tmp_path / "broken.dcm"))


PLASTIMATCH = shutil.which("plastimatch")


@pytest.mark.skipif(PLASTIMATCH is None, reason="plastimatch (Debian's plastimatch) is not installed")
@pytest.mark.parametrize("orientation", ["axial", "rotated in plane"])
@pytest.mark.parametrize("nested", ["or", "xor"])
def test_an_independent_rasterizer_reads_rt_structure_sets_back_to_their_masks(tmp_path, orientation, nested):
    """plastimatch, the radiotherapy toolkit's converter, rasterizes an RT structure set of random masks
    (holes, islands in holes, pixels touching at a corner) back onto the series' grid voxel for voxel, whether
    it unites a slice's contours (its default) or takes nested ones as holes (`--xor-contours`)."""
    import nibabel as nib

    from msa_hf.data.volumes import load_volume
    from msa_hf.inference.rtstruct import write_rtstruct
    from msa_hf.testing import write_dicom_series

    cosine, sine = np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))
    planes = {"axial": (1, 0, 0, 0, 1, 0), "rotated in plane": (cosine, sine, 0, -sine, cosine, 0)}
    write_dicom_series(tmp_path / "ct", np.zeros((6, 30, 34), np.float32), orientation=planes[orientation])
    volume = load_volume(tmp_path / "ct")
    draw = np.random.default_rng(3).random(volume.array.shape)
    labels = np.zeros(volume.array.shape, np.uint8)
    labels[draw > 0.3] = 1  # dense speckle: holes and corner contacts on every slice
    labels[4:24, 4:24, 2] = 1  # and a square ring with an island in its hole
    labels[8:20, 8:20, 2] = 0
    labels[12:15, 12:15, 2] = 1
    labels[draw < 0.05] = 2
    write_rtstruct(
        tmp_path / "ct", labels, volume.affine, tmp_path / "rs.dcm", names={1: "speckle", 2: "sparse"}
    )
    command = [PLASTIMATCH, "convert", "--input", str(tmp_path / "rs.dcm"), "--referenced-ct", str(tmp_path / "ct"),
               "--output-prefix", str(tmp_path / "read"), "--prefix-format", "nii.gz"]  # fmt: skip
    subprocess.run(command + (["--xor-contours"] if nested == "xor" else []), capture_output=True, check=True)
    for value, name in ((1, "speckle"), (2, "sparse")):
        read = nib.as_closest_canonical(nib.load(tmp_path / "read" / f"{name}.nii.gz"))
        assert np.allclose(read.affine, volume.affine, atol=1e-3)
        assert np.array_equal(np.asarray(read.dataobj) > 0, labels == value), name


@pytest.mark.skipif(PLASTIMATCH is None, reason="plastimatch (Debian's plastimatch) is not installed")
def test_rt_structure_sets_another_tool_writes_are_read_to_their_masks(tmp_path):
    """An RT structure set plastimatch writes from a label map (its contours its own, not on our pixel
    edges) is read by `load_rtstruct_labels` onto the series as that label map, voxel for voxel."""
    import nibabel as nib
    import pydicom

    from msa_hf.data.rtstruct_labels import load_rtstruct_labels
    from msa_hf.data.volumes import load_volume
    from msa_hf.testing import write_dicom_series

    write_dicom_series(tmp_path / "ct", np.zeros((6, 40, 44), np.float32))
    volume = load_volume(tmp_path / "ct")
    labels = np.zeros(volume.array.shape, np.uint8)
    rows, columns = np.mgrid[: labels.shape[0], : labels.shape[1]]
    labels[..., 1:5][((rows - 20) ** 2 / 100 + (columns - 18) ** 2 / 60) < 1] = 1  # an ellipse on four slices
    labels[5:9, 30:36, 2] = 1  # and a rectangle beside it on one
    nib.save(nib.Nifti1Image(labels, volume.affine), tmp_path / "labels.nii.gz")
    command = [PLASTIMATCH, "convert", "--input-ss-img", str(tmp_path / "labels.nii.gz"), "--referenced-ct",
               str(tmp_path / "ct"), "--output-dicom", str(tmp_path / "written")]  # fmt: skip
    subprocess.run(command, capture_output=True, check=True)
    (structure_set,) = [
        path for path in (tmp_path / "written").rglob("*")
        if path.is_file() and pydicom.dcmread(path, stop_before_pixels=True).Modality == "RTSTRUCT"
    ]  # fmt: skip
    read = load_rtstruct_labels(structure_set, tmp_path / "ct")
    assert np.allclose(read.affine, volume.affine) and np.array_equal(read.array > 0, labels > 0)


@pytest.mark.parametrize("orientation", ["axial", "sagittal", "coronal", "rotated in plane"])
def test_itk_lays_a_series_mask_where_it_lays_the_series(tmp_path, orientation):
    """The NIfTI mask `predict` writes for a DICOM series, read by ITK (what 3D Slicer and ITK-SNAP read NIfTI
    and DICOM with) and resampled onto ITK's own reading of the series, is the mask on the series' images
    voxel for voxel, as msa_hf maps it there (`labels_on_series_grid`): a viewer overlays it where it
    belongs, for series acquired in any plane."""
    sitk = pytest.importorskip("SimpleITK")

    from msa_hf.data.volumes import load_volume
    from msa_hf.inference.dicom_seg import labels_on_series_grid
    from msa_hf.inference.predictor import Prompt
    from msa_hf.testing import write_dicom_series

    cosine, sine = np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))
    planes = {
        "axial": (1, 0, 0, 0, 1, 0), "sagittal": (0, 1, 0, 0, 0, -1), "coronal": (1, 0, 0, 0, 0, -1),
        "rotated in plane": (cosine, sine, 0, -sine, cosine, 0),
    }  # fmt: skip
    volume = np.zeros((8, 30, 34), np.float32)
    volume[2:6, 5:20, 8:25] = 100.0
    write_dicom_series(tmp_path / "ct", volume, orientation=planes[orientation])
    prompts = [Prompt(box=[8, 5, 24, 19], slice=3), Prompt(box=[2, 3, 9, 7], slice=4)]
    predict_file(BoxFillSam(32), tmp_path / "ct", tmp_path / "mask.nii.gz", prompts)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    series = reader.Execute()
    mask = sitk.ReadImage(str(tmp_path / "mask.nii.gz"))
    on_series = sitk.Resample(mask, series, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    ours = load_volume(tmp_path / "mask.nii.gz", is_label=True)
    expected = labels_on_series_grid(tmp_path / "ct", ours.array, ours.affine)  # (instances, rows, columns)
    assert np.isin([1, 2], expected).all()
    assert np.array_equal(sitk.GetArrayFromImage(on_series), expected)
