"""Prompt simulation: clicks land where they must, boxes bound the mask, error clicks fix the largest error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from msa_hf.data.transforms import resize_and_pad
from msa_hf.processing.prompts import (
    PADDING_LABEL,
    append_clicks,
    box_from_mask,
    most_interior_point,
    next_error_clicks,
    resized_shape,
    sample_error_click,
    sample_negative_clicks,
    sample_point_prompt,
    sample_positive_clicks,
    to_model_frame,
    to_original_frame,
)

masks = arrays(np.bool_, st.tuples(st.integers(2, 24), st.integers(2, 24)))


@settings(max_examples=60, deadline=None)
@given(mask=masks, seed=st.integers(0, 2**32 - 1), strategy=st.sampled_from(["uniform", "interior"]))
def test_positive_clicks_land_inside_and_negative_outside(mask, seed, strategy):
    rng = np.random.default_rng(seed)
    if mask.any():
        clicks = sample_positive_clicks(mask, 5, rng, strategy)
        assert clicks.shape == (5, 2)
        assert mask[clicks[:, 1], clicks[:, 0]].all()  # (x, y) indexes mask[y, x]
    if not mask.all():
        clicks = sample_negative_clicks(mask, 4, rng)
        assert not mask[clicks[:, 1], clicks[:, 0]].any()


@settings(max_examples=60, deadline=None)
@given(mask=masks, seed=st.integers(0, 2**32 - 1), jitter=st.sampled_from([0.0, 0.1, 0.5]))
def test_box_bounds_the_mask_and_stays_in_the_image(mask, seed, jitter):
    if not mask.any():
        with pytest.raises(ValueError, match="empty"):
            box_from_mask(mask)
        return
    x0, y0, x1, y1 = box_from_mask(mask, jitter, np.random.default_rng(seed))
    h, w = mask.shape
    assert 0 <= x0 <= x1 <= w - 1 and 0 <= y0 <= y1 <= h - 1
    if jitter == 0.0:
        rows, cols = np.nonzero(mask)
        assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max(), rows.max())


def test_box_jitter_moves_the_box_by_bounded_amounts():
    mask = np.zeros((100, 100), bool)
    mask[30:60, 20:80] = True
    rng = np.random.default_rng(0)
    boxes = np.stack([box_from_mask(mask, 0.1, rng, max_jitter_pixels=5) for _ in range(200)])
    exact = np.array([20, 30, 79, 59])
    assert np.abs(boxes - exact).max() <= 5 + 1e-6
    assert np.abs(boxes - exact).mean() > 1.0  # it does move


def test_interior_click_is_the_centre_of_a_rectangle_away_from_the_frame():
    mask = np.zeros((20, 30), bool)
    mask[4:15, 10:21] = True  # 11 x 11 square centred at (x=15, y=9)
    assert most_interior_point(mask).tolist() == [15, 9]
    assert sample_positive_clicks(mask, 1, np.random.default_rng(0), "interior").tolist() == [[15, 9]]
    # a region touching the image border: the click keeps away from the edge
    edge = np.zeros((10, 10), bool)
    edge[:, :5] = True
    x, y = most_interior_point(edge)
    assert x >= 2 and 2 <= y <= 7


def test_point_prompt_protocols_order_and_labels():
    mask = np.zeros((32, 32), bool)
    mask[8:20, 8:20] = True
    prompt = sample_point_prompt(mask, 3, 2, np.random.default_rng(0))
    assert prompt.labels.tolist() == [1, 1, 1, 0, 0]
    inside = mask[prompt.points[:, 1].astype(int), prompt.points[:, 0].astype(int)]
    assert inside.tolist() == [True, True, True, False, False]


def test_error_click_goes_to_the_largest_error_region():
    target = np.zeros((40, 40), bool)
    target[5:15, 5:15] = True  # fully predicted
    target[25:38, 20:33] = True  # 13x13 missed: the largest error
    prediction = np.zeros_like(target)
    prediction[5:15, 5:15] = True
    prediction[0:3, 30:40] = True  # 3x10 false positive (smaller)
    click = sample_error_click(prediction, target)
    assert click.label == 1 and click.region_size == 169
    assert click.point.tolist() == [26, 31]  # centre of the missed square
    # make the false positive the largest: the click turns negative and moves there
    prediction[0:20, 20:40] = True
    click = sample_error_click(prediction, target)
    assert click.label == 0
    x, y = click.point
    assert prediction[y, x] and not target[y, x]


def test_error_click_is_none_for_a_perfect_prediction_and_batched_pads():
    target = torch.zeros(2, 16, 16)
    target[:, 4:10, 4:10] = 1
    logits = torch.where(target > 0, 5.0, -5.0)
    logits[1, 4:10, 4:10] = -5.0  # second prediction misses everything
    points, labels = next_error_clicks(logits, target)
    assert labels.tolist() == [[PADDING_LABEL], [1]]
    x, y = points[1, 0].long().tolist()
    assert target[1, y, x] == 1
    assert sample_error_click(target[0] > 0, target[0] > 0) is None


def test_append_clicks_grows_the_point_axis():
    points, labels = torch.zeros(2, 1, 1, 2), torch.ones(2, 1, 1, dtype=torch.long)
    new_points, new_labels = append_clicks(
        points, labels, torch.tensor([[3.0, 4.0], [5.0, 6.0]]), torch.tensor([[0], [1]])
    )
    assert new_points.shape == (2, 1, 2, 2) and new_labels[:, 0].tolist() == [[1, 0], [1, 1]]
    assert new_points[1, 0, 1].tolist() == [5.0, 6.0]


@pytest.mark.parametrize("original_size", [(48, 80), (80, 48), (33, 61)])
def test_click_lands_on_the_intended_pixel_after_resize_round_trip(original_size):
    """A click on a marked pixel of the original image lands on that mark in the model frame, (x, y) order."""
    height, width = original_size
    mask = torch.zeros(height, width, dtype=torch.uint8)
    target_y, target_x = height // 3, (2 * width) // 3  # asymmetric: swapping x and y would miss it
    mask[target_y - 1 : target_y + 2, target_x - 1 : target_x + 2] = 1
    image_size = 128
    _, resized = resize_and_pad(torch.zeros(1, height, width), mask, image_size)
    x, y = to_model_frame(np.array([target_x, target_y]), original_size, image_size)
    assert resized[int(round(y)), int(round(x))] == 1
    assert resized[int(round(x)), int(round(y))] == 0 or height == width  # the swapped order misses
    back = to_original_frame(np.array([x, y]), original_size, image_size)
    assert np.allclose(back, [target_x, target_y])
    # SamProcessor's own point normalisation gives the same coordinates
    from transformers import SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    image_processor = SamImageProcessorPil(
        size={"longest_edge": image_size}, pad_size={"height": image_size, "width": image_size}
    )
    processor = SamProcessor(image_processor)
    inputs = processor(
        images=np.zeros((height, width, 3), np.uint8),
        input_points=[[[[target_x, target_y]]]],
        return_tensors="pt",
    )
    assert torch.allclose(inputs["input_points"][0, 0, 0].float(), torch.tensor([x, y]).float(), atol=1e-4)
    assert tuple(inputs["reshaped_input_sizes"][0].tolist()) == resized_shape(original_size, image_size)
