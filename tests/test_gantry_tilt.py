# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A CT series acquired with the gantry tilted: its images are tilted about the left-right axis while the
table moves straight, so its slices step off their normal and its voxel grid is sheared. `predict` segments
it as acquired, says so, measures volumes on the tilted voxels, and writes a NIfTI that holds the shear
where NIfTI can (the sform), with no rigid qform that would place voxels elsewhere. A stand-in model whose
masks are the prompt boxes filled gives masks known in advance."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from msa_hf.data.volumes import load_volume, tilt_degrees, voxel_ml
from msa_hf.inference.predictor import Prompt, predict_file
from msa_hf.testing import SCRAMBLED_AFFINE, BoxFillSam, write_dicom_series

TILT = 20.0  # degrees, as head CT is often acquired
SPACING, THICKNESS = (0.75, 0.5), 2.0  # PixelSpacing (rows, columns) and the table's step, mm


def _tilted_series(folder, tilt: float = TILT):
    radians = np.deg2rad(tilt)
    volume = np.full((8, 20, 24), -1000.0, np.float32)
    volume[2:6, 4:16, 4:20] = 60.0
    write_dicom_series(
        folder, volume, spacing=SPACING, thickness=THICKNESS,
        orientation=(1, 0, 0, 0, np.cos(radians), -np.sin(radians)), step=(0.0, 0.0, THICKNESS),
    )  # fmt: skip
    return folder


def test_voxel_volume_and_tilt_are_read_from_the_affine():
    """The voxel's volume is the affine's determinant (spacings multiplied overstate a sheared one by
    1 / cos(tilt)); the tilt is 0 for any orthogonal grid, however its axes are ordered."""
    radians = np.deg2rad(TILT)
    sheared = np.eye(4)
    sheared[:3, 0] = [0.5, 0.0, 0.0]
    sheared[:3, 1] = [0.0, 0.75 * np.cos(radians), 0.75 * np.sin(radians)]
    sheared[:3, 2] = [0.0, 0.0, THICKNESS]
    assert voxel_ml(sheared) == pytest.approx(0.5 * 0.75 * THICKNESS * np.cos(radians) / 1000)
    assert tilt_degrees(sheared) == pytest.approx(TILT)
    assert tilt_degrees(SCRAMBLED_AFFINE) == pytest.approx(0.0, abs=1e-6)
    assert voxel_ml(SCRAMBLED_AFFINE) == pytest.approx(abs(np.linalg.det(SCRAMBLED_AFFINE[:3, :3])) / 1000)


def test_a_tilted_series_is_segmented_as_acquired_and_said_so(tmp_path):
    """The summary names the tilt; the mask's mL is its voxels times the tilted voxel's true volume (6% below
    the product of the spacings); the NIfTI mask lies on the series' sheared grid in its sform (code 1) with
    no qform (code 0), and reads back as the mask on the same RAS+ grid as the series."""
    series = _tilted_series(tmp_path / "series")
    volume = load_volume(series)
    summary = predict_file(
        BoxFillSam(32), series, tmp_path / "mask.nii.gz", [Prompt(box=[4, 4, 19, 15], slice=3)]
    )
    (note,) = summary["warnings"]
    assert f"{TILT:.1f} degrees off their normal" in note and "gantry" in note
    (mask,) = summary["masks"]
    true_ml = SPACING[0] * SPACING[1] * THICKNESS * np.cos(np.deg2rad(TILT)) / 1000
    assert mask["pixels"] > 100 and mask["volume_ml"] == pytest.approx(mask["pixels"] * true_ml, abs=1e-4)

    written = nib.load(tmp_path / "mask.nii.gz")
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (0, 1)
    assert np.allclose(written.header.get_sform(), volume.affine, atol=1e-4)
    read = load_volume(tmp_path / "mask.nii.gz", is_label=True)
    assert np.allclose(read.affine, volume.affine, atol=1e-4) and int(read.array.sum()) == mask["pixels"]


def test_score_measures_a_tilted_masks_volume_as_predict_does(tmp_path):
    """`score`'s sizes in mL of a mask on a tilted grid equal `predict`'s `volume_ml`."""
    from msa_hf.evaluation.mask_files import score_mask_files

    series = _tilted_series(tmp_path / "series")
    (tmp_path / "pred").mkdir()
    summary = predict_file(
        BoxFillSam(32), series, tmp_path / "pred" / "ct.nii.gz", [Prompt(box=[4, 4, 19, 15], slice=3)]
    )
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "ct.nii.gz").write_bytes((tmp_path / "pred" / "ct.nii.gz").read_bytes())
    (score,), _ = score_mask_files(tmp_path / "pred", tmp_path / "ref")
    assert score.sizes == pytest.approx((summary["masks"][0]["volume_ml"],) * 2, abs=1e-4)
