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


def _sheared_affine(tilt: float = TILT) -> np.ndarray:
    """A RAS+ voxel grid of 0.75 x 0.5 mm pixels whose slices, 2 mm apart along the table, are tilted by `tilt`
    about the left-right axis (the x axis stays upright)."""
    radians = np.deg2rad(tilt)
    affine = np.eye(4)
    affine[:3, 0] = [0.75, 0.0, 0.0]
    affine[:3, 1] = [0.0, 0.5 * np.cos(radians), 0.5 * np.sin(radians)]
    affine[:3, 2] = [0.0, 0.0, THICKNESS]
    return affine


def _brute_force_hd95(prediction, target, spacing, axes) -> float:
    """HD95 with every surfel's distance to every surfel of the other side measured in world coordinates."""
    from msa_hf.evaluation.metrics.segmentation import _percentile_by_size
    from msa_hf.evaluation.metrics.surface_elements import block_codes, surfel_areas_3d

    codes = [block_codes(prediction), block_codes(target)]
    borders = [(c != 0) & (c != 255) for c in codes]
    points = [np.argwhere(b) @ axes for b in borders]
    sizes = surfel_areas_3d(spacing)
    one_way = []
    for own, other in ((0, 1), (1, 0)):
        distances = np.sqrt(((points[own][:, None] - points[other][None]) ** 2).sum(-1)).min(1)
        order = np.argsort(distances, kind="stable")
        weights = sizes[codes[own][borders[own]]]
        one_way.append(_percentile_by_size(distances[order], weights[order], 95.0))
    return max(one_way)


def test_surface_distances_on_a_tilted_grid_are_measured_in_the_world():
    """On a sheared grid HD95 and NSD measure the surfels' world positions (a brute force over every pair
    agrees); the spacings alone measure the grid as if upright and miss by several percent here. On an
    upright grid, rotated or not, the axes change nothing."""
    from msa_hf.data.planes import display_axes
    from msa_hf.evaluation.metrics.segmentation import is_sheared, surface_metrics

    rng = np.random.default_rng(0)
    target = np.zeros((10, 24, 24), bool)  # (Z, H, W) display stacks
    target[2:8, 5:19, 6:18] = True
    prediction = np.roll(target, (1, 3), axis=(0, 1)) | (rng.random(target.shape) > 0.995)
    axes = display_axes(_sheared_affine(), "axial")
    spacing = np.linalg.norm(axes, axis=1)  # (slice, row, col) steps' lengths
    assert is_sheared(axes) and not is_sheared(display_axes(SCRAMBLED_AFFINE, "axial"))
    exact_hd, exact_nsd = surface_metrics(prediction, target, 1.0, spacing, axes=axes)
    upright_hd, upright_nsd = surface_metrics(prediction, target, 1.0, spacing)
    assert exact_hd == pytest.approx(_brute_force_hd95(prediction, target, spacing, axes), rel=1e-9)
    assert abs(exact_hd - upright_hd) / exact_hd > 0.03 and exact_nsd != upright_nsd
    upright = display_axes(SCRAMBLED_AFFINE, "axial")
    assert surface_metrics(prediction, target, 1.0, np.linalg.norm(upright, axis=1), axes=upright) == (
        surface_metrics(prediction, target, 1.0, np.linalg.norm(upright, axis=1))
    )


def test_score_measures_surface_distances_on_the_tilted_grid(tmp_path):
    """`score` on NIfTI masks of a tilted series' grid (its sheared sform) gives the world-measured HD95."""
    from msa_hf.data.planes import display_axes
    from msa_hf.data.volumes import axial_slices, load_volume
    from msa_hf.evaluation.mask_files import score_mask_files

    affine = _sheared_affine()
    reference = np.zeros((24, 20, 10), np.uint8)  # RAS+ (X, Y, Z)
    reference[6:18, 4:15, 2:8] = 1
    predicted = np.roll(reference, (2, 3, 1), axis=(0, 1, 2))
    for folder, array in (("pred", predicted), ("ref", reference)):
        (tmp_path / folder).mkdir()
        image = nib.Nifti1Image(array, affine)
        image.set_qform(None, code=0)
        image.set_sform(affine, code=1)
        nib.save(image, tmp_path / folder / "ct.nii.gz")
    (score,), _ = score_mask_files(tmp_path / "pred", tmp_path / "ref")
    grid = load_volume(tmp_path / "ref" / "ct.nii.gz", is_label=True).affine
    axes = display_axes(grid, "axial")
    stacks = [
        axial_slices(load_volume(tmp_path / f / "ct.nii.gz", is_label=True).array) > 0
        for f in ("pred", "ref")
    ]
    assert score.hd95 == pytest.approx(
        _brute_force_hd95(*stacks, np.linalg.norm(axes, axis=1), axes), rel=1e-9
    )
