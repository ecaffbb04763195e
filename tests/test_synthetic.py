"""The synthetic data engine: deterministic, and its masks are exactly the objects in its images."""

from __future__ import annotations

import numpy as np

from msa_hf.base_model.data_engine import SyntheticConfig, SyntheticSegmentationDataset, generate_sample


def test_same_seed_and_index_give_the_same_sample():
    first, again, other = generate_sample(3, 17), generate_sample(3, 17), generate_sample(3, 18)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.masks, again.masks)
    assert first.kinds == again.kinds
    assert not np.array_equal(first.image, other.image)
    assert not np.array_equal(first.image, generate_sample(4, 17).image)


def test_masks_are_exactly_the_visible_objects():
    """Flat objects, no blur or noise: each visible object is one colour, different from its surroundings."""
    config = SyntheticConfig(max_texture_amplitude=0.0, max_gradient=0.0, blur_sigma=(0, 0), noise_std=(0, 0))
    checked = 0
    for index in range(30):
        sample = generate_sample(0, index, config)
        assert sample.image.shape == (128, 128, 3) and sample.image.dtype == np.uint8
        assert sample.masks.dtype == bool and len(sample.masks) == len(sample.kinds)
        for mask, kind in zip(sample.masks, sample.kinds, strict=True):
            assert mask.sum() >= config.min_target_pixels
            if kind == "whole":
                continue
            colours = np.unique(sample.image[mask].reshape(-1, 3), axis=0)
            assert len(colours) == 1, f"sample {index}: a {kind} mask covers {len(colours)} colours"
            checked += 1
        # objects never share pixels, except a nested pair with its whole
        parts = [m for m, k in zip(sample.masks, sample.kinds, strict=True) if k != "whole"]
        if parts:
            assert np.stack(parts).sum(0).max() <= 1
    assert checked > 60


def test_the_engine_draws_every_kind_and_nested_objects():
    kinds = set()
    for index in range(60):
        kinds.update(generate_sample(1, index).kinds)
    assert kinds == {"ellipse", "polygon", "blob", "band", "whole"}


def test_dataset_items_pick_one_target_deterministically():
    dataset = SyntheticSegmentationDataset(5, seed=2, start=100)
    item = dataset[3]
    sample = generate_sample(2, 103)
    assert np.array_equal(item["image"], sample.image)
    assert any(np.array_equal(item["mask"], m) for m in sample.masks)
    assert np.array_equal(dataset[3]["mask"], item["mask"]) and len(dataset) == 5
