"""The one rule for 3-D batches: slice order of the flatten, its inverse, and the choice of D."""

import pytest
import torch

from msa_hf.modeling.volume_batches import (
    flatten_volume_batch,
    flatten_volume_pixels,
    resolve_volume_batch,
    unflatten_slices,
)


def test_flatten_puts_slice_d_of_window_v_at_row_v_times_d_plus_d():
    pixel_values = torch.randn(2, 3, 4, 5, 5)
    flat, depth = flatten_volume_pixels(pixel_values)
    assert depth == 4
    for v in range(2):
        for d in range(4):
            assert torch.equal(flat[v * 4 + d], pixel_values[v, :, d])
    assert torch.equal(unflatten_slices(flat, depth), pixel_values.permute(0, 2, 1, 3, 4))


def test_batch_prompts_and_labels_flatten_in_the_pixels_order():
    batch = {
        "pixel_values": torch.randn(2, 3, 4, 8, 8),
        "input_points": torch.arange(2 * 4 * 2).reshape(2, 4, 1, 1, 2),
        "input_labels": torch.ones(2, 4, 1, 1),
        "labels": torch.randn(2, 4, 1, 8, 8),
        "class_name": ["liver", "spleen"],
    }
    out = flatten_volume_batch(batch)
    assert out["pixel_values"] is batch["pixel_values"]  # the model flattens the pixels itself
    assert torch.equal(out["input_points"][5], batch["input_points"][1, 1])
    assert torch.equal(out["labels"][6], batch["labels"][1, 2])
    assert out["class_name"] == ["liver"] * 4 + ["spleen"] * 4
    two_d = {"pixel_values": torch.randn(2, 3, 8, 8), "labels": torch.randn(2, 1, 8, 8)}
    assert flatten_volume_batch(two_d) is two_d


def test_the_choice_of_d():
    volume = torch.randn(3, 3, 2, 4, 4)
    flat, depth = resolve_volume_batch(volume, None, True, 8, "hint")
    assert depth == 2 and flat.shape == (6, 3, 4, 4)  # a 5-D input brings its own D
    assert resolve_volume_batch(torch.randn(16, 3, 4, 4), None, True, 8, "hint")[1] == 8  # the default
    assert resolve_volume_batch(torch.randn(8, 3, 4, 4), 4, True, 8, "hint")[1] == 4  # the call's D
    assert resolve_volume_batch(volume, None, False, 8, "hint")[1] is None  # no depth branch: slices alone
    with pytest.raises(ValueError, match="contradicts the 5-D"):
        resolve_volume_batch(volume, 4, True, 8, "hint")
    with pytest.raises(ValueError, match="does not divide"):
        resolve_volume_batch(torch.randn(6, 3, 4, 4), 4, True, 8, "hint")
    with pytest.raises(ValueError, match="was given but use the depth branch"):
        resolve_volume_batch(torch.randn(4, 3, 4, 4), 4, False, 8, "use the depth branch")
