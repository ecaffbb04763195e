"""Metrics against hand-computed cases, including anisotropic spacing and empty masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from msa_hf.evaluation.metrics import (
    dice,
    hd95,
    iou,
    normalized_surface_dice,
    summarise,
    surface_distances,
    surface_metrics,
)


def test_dice_and_iou_by_hand():
    prediction = np.zeros((4, 4), bool)
    target = np.zeros((4, 4), bool)
    prediction[0, :3] = True  # 3 pixels
    target[0, 1:] = True  # 3 pixels, 2 shared
    assert dice(prediction, target) == pytest.approx(2 * 2 / 6)
    assert iou(prediction, target) == pytest.approx(2 / 4)
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) is None  # empty on empty: undefined, not 1.0
    assert dice(prediction, np.zeros((4, 4), bool)) == 0.0
    with pytest.raises(ValueError, match="threshold"):
        dice(np.full((2, 2), 0.3), target[:2, :2])


def test_hd95_with_anisotropic_spacing():
    target = np.zeros((1, 10), bool)
    prediction = np.zeros((1, 10), bool)
    target[0, 2] = True
    prediction[0, 5] = True  # three columns away
    assert hd95(prediction, target, spacing=(1.0, 1.0)) == pytest.approx(3.0)
    assert hd95(prediction, target, spacing=(4.0, 0.5)) == pytest.approx(1.5)  # columns are 0.5 mm
    vertical_t = np.zeros((10, 1), bool)
    vertical_p = np.zeros((10, 1), bool)
    vertical_t[2, 0] = vertical_p[6, 0] = True
    assert hd95(vertical_p, vertical_t, spacing=(2.5, 1.0)) == pytest.approx(10.0)  # rows are 2.5 mm
    # 3-D: slices 3 mm apart
    a, b = np.zeros((5, 4, 4), bool), np.zeros((5, 4, 4), bool)
    a[1, 1:3, 1:3] = True
    b[3, 1:3, 1:3] = True
    assert hd95(a, b, spacing=(3.0, 0.8, 0.8)) == pytest.approx(6.0)


def test_hd95_is_the_95th_percentile_not_the_maximum():
    target = np.zeros((40, 40), bool)
    target[5:25, 5:25] = True  # a 20 x 20 square: an 80 mm contour
    prediction = target.copy()
    prediction[35, 35] = True  # one far outlier pixel: the Hausdorff distance is large, HD95 is not
    surfaces = surface_distances(prediction, target, (1.0, 1.0))
    assert surfaces.prediction_to_target.max() == pytest.approx(np.hypot(11, 11))  # its far corner
    assert surfaces.prediction_sizes.sum() == pytest.approx(80 + 4 * np.sqrt(0.5) - 4 * (2 - np.sqrt(2)) / 2)
    assert hd95(prediction, target) == 0.0  # the outlier's contour is 2.8 mm of 82 mm: under 5%
    assert math.isinf(hd95(prediction, np.zeros_like(target)))
    assert hd95(np.zeros_like(target), np.zeros_like(target)) is None


def test_normalised_surface_dice_by_hand():
    # Each pixel's contour runs through the corners between pixels: for pixels two columns apart, the
    # facing half of each contour is 1 mm from the other contour, the far half 2 mm.
    target = np.zeros((1, 10), bool)
    prediction = np.zeros((1, 10), bool)
    target[0, 2] = True
    prediction[0, 4] = True
    assert normalized_surface_dice(prediction, target, tolerance_mm=2.0) == 1.0
    assert normalized_surface_dice(prediction, target, tolerance_mm=1.9) == 0.5
    assert normalized_surface_dice(prediction, target, tolerance_mm=0.9) == 0.0
    assert normalized_surface_dice(prediction, target, tolerance_mm=1.0, spacing=(1.0, 0.5)) == 1.0
    assert normalized_surface_dice(prediction, np.zeros_like(target), 1.0) == 0.0


def test_summary_counts_empty_on_empty_apart():
    summary = summarise([1.0, None, 0.5, None])
    assert summary.mean == 0.75 and summary.count == 2 and summary.empty_on_empty == 2
    assert math.isnan(summarise([None]).mean)


def test_evaluate_module_loads_by_path_and_matches_numpy(tmp_path, monkeypatch):
    import evaluate

    from msa_hf.evaluation.metrics import EVALUATE_MODULE

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    metric = evaluate.load(EVALUATE_MODULE)
    a = np.zeros((12, 12), np.uint8)
    b = np.zeros((12, 12), np.uint8)
    a[2:8, 2:8] = 1
    b[3:9, 2:8] = 1
    empty = np.zeros((12, 12), np.uint8)
    result = metric.compute(predictions=[a, empty], references=[b, empty], spacing=[2.0, 1.0])
    assert result["dice"] == pytest.approx(dice(a, b)) and result["empty_on_empty"] == 1
    assert result["hd95"] == pytest.approx(hd95(a, b, (2.0, 1.0)))
    assert result["nsd"] == pytest.approx(normalized_surface_dice(a, b, 2.0, (2.0, 1.0)))


def _square(shape: tuple[int, int], top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_a_case_of_pictures_is_scored_in_2d_not_as_a_one_slice_volume():
    from msa_hf.evaluation.case_scores import score_cases
    from msa_hf.evaluation.metrics import surface_metrics

    prediction, target = _square((64, 64), 10, 10, 30), _square((64, 64), 14, 12, 30)
    rows = [("case", 0, "disk", [prediction], target)]
    picture = score_cases(rows, {"case": None})[0]  # None: a 2-D picture (spacing unit "pixel")
    assert (picture.hd95, picture.nsd) == surface_metrics(prediction, target, 2.0, (1.0, 1.0)) == (4.0, 0.5)
    assert picture.dice == pytest.approx(dice(prediction, target))
    # stacked as a one-slice volume, the slab's top and bottom faces become surface: other numbers
    slab = score_cases(rows, {"case": (1.0, 1.0, 1.0)})[0]
    assert slab.nsd == pytest.approx(0.942, abs=1e-3) and slab.hd95 == 3.0


def test_pictures_of_one_case_pool_their_own_contours_and_may_differ_in_size():
    from msa_hf.evaluation.case_scores import score_cases
    from msa_hf.evaluation.metrics import picture_surface_metrics

    a_prediction, a_target = _square((40, 40), 5, 5, 20), _square((40, 40), 5, 5, 20)  # exact
    b_prediction, b_target = _square((30, 50), 2, 2, 10), _square((30, 50), 2, 8, 10)  # 6 px apart
    a, b = (
        surface_distances(a_prediction, a_target, (1.0, 1.0)),
        surface_distances(b_prediction, b_target, (1.0, 1.0)),
    )
    within = sum(s.prediction_sizes[s.prediction_to_target <= 2].sum() for s in (a, b)) + sum(
        s.target_sizes[s.target_to_prediction <= 2].sum() for s in (a, b)
    )
    total = sum(s.prediction_sizes.sum() + s.target_sizes.sum() for s in (a, b))
    pairs = [(a_prediction, a_target), (b_prediction, b_target)]
    hd, nsd = picture_surface_metrics(pairs, 2.0)
    assert nsd == pytest.approx(within / total) and 0.5 < nsd < 1.0
    # the pooled contour: 80 mm exact, 40 + 40 mm in picture b, most of it 6 mm off -> HD95 6 mm
    assert hd == pytest.approx(6.0)
    score = score_cases(
        [("p", 0, "s", [a_prediction], a_target), ("p", 1, "s", [b_prediction], b_target)], {"p": None}
    )[0]
    assert (score.hd95, score.nsd) == (hd, nsd)
    shared = (a_prediction & a_target).sum() + (b_prediction & b_target).sum()
    assert score.dice == pytest.approx(2 * shared / (400 + 400 + 100 + 100))
    # a picture empty on both sides adds nothing; one side empty everywhere: inf and 0
    empty = np.zeros((8, 8), bool)
    assert picture_surface_metrics([*pairs, (empty, empty)], 2.0) == (hd, nsd)
    assert picture_surface_metrics([(np.zeros_like(a_target), a_target)], 2.0) == (math.inf, 0.0)
    assert picture_surface_metrics([(empty, empty)], 2.0) == (None, None)


def test_a_structure_with_gaps_between_its_slices_keeps_them_when_scored():
    from msa_hf.evaluation.case_scores import score_cases

    # two lesions of one class, one above the other on slices 2-3 and 8-9 of a case; the prediction misses
    # the upper lesion's top slice
    target = np.zeros((12, 32, 32), bool)
    target[2:4, 4:20, 4:20] = True
    target[8:10, 4:20, 4:20] = True
    prediction = target.copy()
    prediction[9] = False
    rows = [("case", k, "lesion", [prediction[k]], target[k]) for k in range(12) if target[k].any()]
    score = score_cases(rows, {"case": (1.0, 1.0, 3.0)})[0]
    expected = surface_metrics(prediction, target, 2.0, (3.0, 1.0, 1.0))
    assert (score.hd95, score.nsd) == pytest.approx(expected)
    assert score.dice == pytest.approx(dice(prediction, target))
    # the slices stacked one after another (the lesions touching) gave other numbers
    squeezed = [k for k in range(12) if target[k].any()]
    assert surface_metrics(prediction[squeezed], target[squeezed], 2.0, (3.0, 1.0, 1.0)) != pytest.approx(
        expected
    )
