"""HD95 and NSD against DeepMind's `surface-distance` (the reference the NSD paper, FLARE and MedSAM use),
on random and organ-shaped masks, 2-D and 3-D, with anisotropic spacing, and the empty-mask convention."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from msa_hf.evaluation.metrics import hd95, normalized_surface_dice, surface_distances, surface_metrics

surface_distance = pytest.importorskip("surface_distance")


def random_blobs(shape, seed: int, smooth: float = 2.0, level: float = 0.6) -> np.ndarray:
    """Smoothed noise thresholded: irregular blobs, holes and islands."""
    noise = np.random.default_rng(seed).random(shape)
    field = ndimage.gaussian_filter(noise, smooth)
    return field > np.quantile(field, level)


def ellipsoid(shape, centre, radii) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True)) <= 1.0


def reference(prediction, target, spacing, tolerance):
    distances = surface_distance.compute_surface_distances(target, prediction, spacing)
    return (
        surface_distance.compute_robust_hausdorff(distances, 95),
        surface_distance.compute_surface_dice_at_tolerance(distances, tolerance),
    )


CASES_3D = [
    ("random blobs, isotropic", lambda: (random_blobs((20, 24, 28), 0), random_blobs((20, 24, 28), 1)), (1.0, 1.0, 1.0)),
    ("random blobs, thick slices", lambda: (random_blobs((16, 30, 30), 2), random_blobs((16, 30, 30), 3)), (5.0, 0.7, 0.7)),
    ("organ and a shifted, smaller guess", lambda: (ellipsoid((30, 48, 40), (15, 22, 20), (9, 15, 12)), ellipsoid((30, 48, 40), (14, 25, 19), (8, 13, 12))), (2.5, 0.8, 0.9)),
    ("organ with a far false positive", lambda: (ellipsoid((24, 40, 40), (12, 20, 20), (6, 12, 10)) | ellipsoid((24, 40, 40), (20, 5, 34), (2, 2, 2)), ellipsoid((24, 40, 40), (12, 20, 20), (6, 12, 10))), (3.0, 0.6, 0.6)),
    ("one slice", lambda: (random_blobs((1, 40, 40), 4), random_blobs((1, 40, 40), 5)), (3.0, 1.0, 1.0)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "masks", "spacing"), CASES_3D, ids=[c[0] for c in CASES_3D])
@pytest.mark.parametrize("tolerance", [1.0, 2.0])
def test_3d_matches_deepmind_surface_distance(name, masks, spacing, tolerance):
    prediction, target = masks()
    expected_hd95, expected_nsd = reference(prediction, target, spacing, tolerance)
    assert hd95(prediction, target, spacing) == pytest.approx(expected_hd95, rel=1e-12)
    assert normalized_surface_dice(prediction, target, tolerance, spacing) == pytest.approx(
        expected_nsd, rel=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.5, 1.7)])
def test_2d_matches_deepmind_surface_distance(seed, spacing):
    prediction, target = (
        random_blobs((50, 60), seed, smooth=3.0),
        random_blobs((50, 60), seed + 10, smooth=3.0),
    )
    expected_hd95, expected_nsd = reference(prediction, target, spacing, 2.0)
    assert hd95(prediction, target, spacing) == pytest.approx(expected_hd95, rel=1e-12)
    assert normalized_surface_dice(prediction, target, 2.0, spacing) == pytest.approx(expected_nsd, rel=1e-12)


def test_surfels_carry_their_areas():
    cube = np.zeros((6, 6, 6), bool)
    cube[1:5, 1:5, 1:5] = True  # a 4-voxel cube at 2 x 1 x 1 mm
    surfaces = surface_distances(cube, cube, (2.0, 1.0, 1.0))
    mine = surfaces.prediction_sizes.sum()
    theirs = surface_distance.compute_surface_distances(cube, cube, (2.0, 1.0, 1.0))["surfel_areas_gt"].sum()
    assert mine == pytest.approx(theirs) and 0 < mine < 2 * (8 * 4 + 8 * 4 + 4 * 4)  # corners are cut
    assert np.all(surfaces.prediction_to_target == 0.0)


def test_hd95_is_the_larger_one_way_percentile_not_a_pooled_one():
    target = np.zeros((40, 40), bool)
    target[5:25, 5:25] = True
    prediction = target.copy()
    prediction[30:36, 30:36] = True  # a false-positive island: far for the prediction's surfels only
    surfaces = surface_distances(prediction, target, (1.0, 1.0))
    assert np.all(surfaces.target_to_prediction == 0.0)  # every target surfel lies on the prediction
    pooled = np.percentile(np.concatenate([surfaces.prediction_to_target, surfaces.target_to_prediction]), 95)
    assert hd95(prediction, target) > pooled
    assert hd95(prediction, target) == pytest.approx(reference(prediction, target, (1.0, 1.0), 1.0)[0])


def test_empty_masks():
    mask = np.zeros((8, 8, 8), bool)
    mask[2:5, 2:5, 2:5] = True
    empty = np.zeros_like(mask)
    assert math.isinf(hd95(mask, empty)) and math.isinf(
        hd95(empty, mask)
    )  # one side empty: no surface to reach
    assert (
        normalized_surface_dice(mask, empty, 2.0) == 0.0 and normalized_surface_dice(empty, mask, 2.0) == 0.0
    )
    # both empty: undefined, counted apart by `summarise` (the reference gives inf and NaN)
    assert hd95(empty, empty) is None and normalized_surface_dice(empty, empty, 2.0) is None
    assert surface_metrics(mask, empty, 2.0) == (float("inf"), 0.0) and surface_metrics(
        empty, empty, 2.0
    ) == (None, None)
