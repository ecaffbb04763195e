"""Preprocessing transforms against hand-computed values, numpy and torch alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_hf.data.transforms import (
    CT_WINDOW_PRESETS,
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    GrayscaleToRGB,
    IntensityJitter,
    OnKeys,
    PercentileNormalize,
    RandomSpatialAugment,
    SamNormalize,
    ScaleIntensity,
    WindowIntensity,
    check_finite,
    intensity_transform_for,
    resample_to_spacing,
    resize_and_pad,
)


def test_ct_window_presets_and_explicit_ranges_by_hand():
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 1000.0])
    # abdomen: level 40, width 400 -> [-160, 240]
    assert np.allclose(WindowIntensity(preset="abdomen")(hu), [0.0, 0.0, 0.5, 1.0, 1.0])
    assert np.allclose(WindowIntensity(hu_range=(-160, 240))(hu), [0.0, 0.0, 0.5, 1.0, 1.0])
    # lung: level -600, width 1500 -> [-1350, 150]
    assert np.allclose(WindowIntensity(preset="lung")(hu), [350 / 1500, 1190 / 1500, 1390 / 1500, 1.0, 1.0])
    # brain: level 40 width 80 -> [0, 80]
    assert np.allclose(WindowIntensity(level=40, width=80)(np.array([0.0, 20.0, 80.0])), [0.0, 0.25, 1.0])
    assert WindowIntensity(preset="bone").bounds == (-500.0, 1300.0)
    assert set(CT_WINDOW_PRESETS) >= {"abdomen", "lung", "bone", "brain"}


def test_window_is_the_same_on_numpy_and_torch():
    hu = np.linspace(-1200, 1500, 50).astype(np.float32)
    window = WindowIntensity(preset="abdomen")
    out_numpy, out_torch = window(hu), window(torch.from_numpy(hu))
    assert isinstance(out_numpy, np.ndarray) and isinstance(out_torch, torch.Tensor)
    assert np.array_equal(out_numpy, out_torch.numpy())


@pytest.mark.parametrize(
    "kwargs",
    [{"preset": "kidney"}, {}, {"preset": "lung", "hu_range": (0, 1)}, {"level": 10}, {"hu_range": (5, 5)}],
)
def test_window_rejects_unknown_or_ambiguous_options(kwargs):
    with pytest.raises(ValueError):
        WindowIntensity(**kwargs)


def test_percentile_normalisation_by_hand():
    values = np.concatenate([np.zeros(100), np.arange(1, 101, dtype=np.float64)])  # 100 background zeros
    out = PercentileNormalize(lower=0.0, upper=100.0, nonzero=True)(values)
    assert np.allclose(out[100:], (np.arange(1, 101) - 1) / 99)
    assert np.allclose(out[:100], 0.0)
    # 10th/90th percentiles of 1..100 (numpy's linear): 10.9 and 90.1
    out = PercentileNormalize(lower=10, upper=90)(torch.arange(1, 101, dtype=torch.float32))
    assert torch.allclose(out[[0, 49, 99]], torch.tensor([0.0, (50 - 10.9) / (90.1 - 10.9), 1.0]), atol=1e-6)
    with pytest.raises(ValueError):
        PercentileNormalize(lower=90, upper=10)


def test_scale_intensity_and_modality_defaults():
    assert np.allclose(ScaleIntensity(0, 255)(np.array([0, 51, 255], np.uint8)), [0.0, 0.2, 1.0])
    assert isinstance(intensity_transform_for("CT"), WindowIntensity)
    assert isinstance(intensity_transform_for("MR"), PercentileNormalize)
    # a 16-bit image is scaled by its own range, not by 65535 (which left narrow-range scans black)
    narrow = np.array([[1000, 2000], [3000, 1500]], np.uint16)
    assert np.allclose(intensity_transform_for("other", np.uint16)(narrow), [[0.0, 0.5], [1.0, 0.25]])
    assert intensity_transform_for("CT", window="lung").bounds == (-1350.0, 150.0)
    assert intensity_transform_for("MR", window=(0.0, 100.0)).bounds == (0.0, 100.0)


def test_check_finite_names_the_input():
    with pytest.raises(ValueError, match=r"scan\.nii: 2 NaN/Inf"):
        check_finite(np.array([1.0, np.nan, np.inf]), "scan.nii")
    check_finite(np.array([1, 2], np.int16), "ok")


def test_grayscale_to_rgb_layouts():
    gray = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = GrayscaleToRGB()(gray)
    assert out.shape == (3, 2, 3) and all(np.array_equal(c, gray) for c in out)
    hwc = np.stack([gray, gray + 1, gray + 2], axis=-1)
    assert np.array_equal(GrayscaleToRGB()(hwc)[1], gray + 1)
    assert GrayscaleToRGB()(torch.ones(1, 4, 5)).shape == (3, 4, 5)
    with pytest.raises(ValueError, match="expected"):
        GrayscaleToRGB()(np.zeros((2, 3, 4, 5)))


def test_sam_normalisation_matches_sam_image_processor():
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    processor = SamImageProcessorPil()
    assert tuple(processor.image_mean) == SAM_PIXEL_MEAN and tuple(processor.image_std) == SAM_PIXEL_STD
    assert np.isclose(processor.rescale_factor, 1 / 255)
    out = SamNormalize()(torch.full((3, 2, 2), 0.5))
    assert torch.allclose(out[:, 0, 0], (0.5 - torch.tensor(SAM_PIXEL_MEAN)) / torch.tensor(SAM_PIXEL_STD))


def test_resize_and_pad_matches_sam_processor_and_keeps_masks_binary():
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    rng = np.random.default_rng(0)
    height, width = 48, 80
    # a smooth image: both bilinear resizers then agree closely
    yy, xx = np.mgrid[0:height, 0:width]
    photo = np.stack([(xx * 3) % 256, (yy * 5) % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    processor = SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    expected = processor(images=photo, return_tensors="pt")["pixel_values"][0]
    pixels, _ = resize_and_pad(torch.from_numpy(photo).permute(2, 0, 1).float() / 255, None, 64)
    ours = SamNormalize()(pixels)
    assert ours.shape == expected.shape == (3, 64, 64)
    valid = ours[:, :38, :]  # 48 * 64/80 = 38.4 -> 38 rows of image, the rest is padding
    assert (valid - expected[:, :38, :]).abs().mean() < 0.05
    assert torch.equal(ours[:, 38:, :], SamNormalize()(torch.zeros(3, 26, 64)))
    mask = torch.from_numpy(rng.integers(0, 2, size=(height, width)).astype(np.uint8)) * 3
    _, resized = resize_and_pad(torch.zeros(1, height, width), mask, 64)
    assert set(resized.unique().tolist()) <= {0, 3} and resized.dtype == torch.uint8
    assert resized[38:].sum() == 0


def test_resample_to_spacing_shapes_and_exact_labels():
    volume = np.random.default_rng(0).random((10, 12, 5)).astype(np.float32)
    out = resample_to_spacing(volume, (1.0, 1.0, 3.0), (2.0, 1.0, 1.5))
    assert out.shape == (5, 12, 10) and isinstance(out, np.ndarray)
    labels = np.zeros((10, 12, 5), np.uint8)
    labels[2:8, 3:9, 1:4] = 2
    resampled = resample_to_spacing(torch.from_numpy(labels), (1.0, 1.0, 3.0), (1.0, 1.0, 1.0), is_label=True)
    assert resampled.shape == (10, 12, 15) and set(resampled.unique().tolist()) == {0, 2}
    # each 3 mm slice becomes three 1 mm slices with the same labels
    assert torch.equal(resampled[..., 3], torch.from_numpy(labels[..., 1]))
    # a constant image stays constant under linear interpolation
    assert np.allclose(resample_to_spacing(np.full((4, 4, 4), 7.0, np.float32), (1, 1, 1), (0.5, 2, 1)), 7.0)


def test_spatial_augment_moves_image_and_mask_together():
    image = torch.zeros(1, 32, 32)
    image[0, 4:12, 20:28] = 1.0
    mask = (image[0] > 0).to(torch.uint8)
    augment = RandomSpatialAugment(horizontal_flip_prob=1.0, max_rotation_degrees=0.0, scale_range=(1.0, 1.0))
    flipped_image, flipped_mask = augment(image, mask, torch.Generator().manual_seed(0))
    assert torch.equal(flipped_mask, torch.flip(mask, dims=[1]))
    assert torch.allclose(flipped_image, torch.flip(image, dims=[2]), atol=1e-5)
    rotate = RandomSpatialAugment(horizontal_flip_prob=0.0, max_rotation_degrees=30.0, scale_range=(0.8, 1.2))
    for seed in range(5):
        out_image, out_mask = rotate(image, mask, torch.Generator().manual_seed(seed))
        assert set(out_mask.unique().tolist()) <= {0, 1}
        inside = out_image[0][out_mask.bool()]
        assert inside.numel() > 0 and inside.mean() > 0.8  # the mask still covers the bright square


def test_intensity_jitter_is_seeded_and_bounded():
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    jitter = IntensityJitter()
    first = jitter(image, torch.Generator().manual_seed(3))
    assert torch.equal(first, jitter(image, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, image) and first.min() >= 0 and first.max() <= 1


def test_on_keys_wraps_an_array_transform():
    sample = {"image": np.array([-160.0, 240.0]), "label": np.array([0, 1])}
    out = OnKeys(WindowIntensity(preset="abdomen"), keys=("image",))(sample)
    assert np.allclose(out["image"], [0.0, 1.0]) and out["label"] is sample["label"]
    with pytest.raises(KeyError, match="no key 'mask'"):
        OnKeys(WindowIntensity(preset="abdomen"), keys=("mask",))(sample)


def test_a_covering_mask_sets_every_model_pixel_the_mask_touches():
    """Where the nearest-neighbour resize keeps only the pixels whose centres a mask covers, the covering mask
    sets each model pixel any of whose picture pixels the mask holds: with a fourfold reduction, each model
    pixel is a 4x4 block."""
    from msa_hf.data.transforms import covering_mask

    rng = np.random.default_rng(0)
    mask = torch.from_numpy((rng.random((64, 48)) > 0.97).astype(np.uint8))
    covered = covering_mask(mask, 16)  # 64 x 48 -> 16 x 12, padded to 16 x 16
    blocks = mask.reshape(16, 4, 12, 4).any(dim=3).any(dim=1)
    assert covered.shape == (16, 16) and covered.dtype == torch.uint8
    assert torch.equal(covered[:, :12].bool(), blocks) and not covered[:, 12:].any()
    thin = torch.zeros(64, 48, dtype=torch.uint8)
    thin[8:10, 20:22] = 1  # no pixel centre of the 16 x 12 grid on it
    _, nearest = resize_and_pad(torch.zeros(1, 64, 48), thin, 16)
    assert not nearest.any()
    assert torch.nonzero(covering_mask(thin, 16)).tolist() == [[2, 5]]
