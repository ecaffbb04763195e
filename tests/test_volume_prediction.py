"""Volumes in the interactive path: depth-window encoding, per-slice prompts, 3-D propagation, single DICOM."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from peft import get_peft_model
from transformers import SamConfig, SamModel

from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.data import axial_slices, load_nifti, read_dicom_image
from msa_hf.inference.image_encoding import (
    depth_branch_slices,
    encode_pictures,
    encode_slices,
    image_to_pixel_values,
)
from msa_hf.inference.predictor import Prompt, SegmentationPredictor, predict_file
from msa_hf.inference.volume_predictor import VolumePredictor, grown_box, main_parts
from msa_hf.peft_msa import MsaAdapterConfig, sam_adapter_to_peft_model
from msa_hf.testing import (
    BoxFillSam,
    BrightInBoxSam,
    randomize_adapter_weights,
    randomize_weights,
    sphere_volume,
    tiny_sam_kwargs,
)


def test_grown_box_grows_by_the_margin_and_stays_in_the_image():
    mask = np.zeros((20, 30), bool)
    mask[5:15, 2:12] = True  # 10 x 10 at columns 2..11, rows 5..14
    assert grown_box(mask, margin=0.2) == [0.0, 3.0, 13.0, 16.0]
    assert grown_box(mask, margin=0.0, min_margin=1) == [1.0, 4.0, 12.0, 15.0]
    assert grown_box(np.zeros((4, 4), bool), 0.1) is None


def test_main_parts_drop_specks_and_keep_real_parts():
    mask = np.zeros((30, 40), bool)
    mask[5:15, 5:15] = True  # the structure, 100 px
    mask[20:22, 30:32] = True  # a 4 px speck far away
    mask[15, 15] = True  # touching the structure diagonally: part of it
    kept = main_parts(mask)
    expected = mask.copy()
    expected[20:22, 30:32] = False
    np.testing.assert_array_equal(kept, expected)
    mask[20:28, 25:35] = True  # a second real part (80 px) swallows the speck: both parts stay
    np.testing.assert_array_equal(main_parts(mask), mask)
    assert not main_parts(np.zeros((4, 4), bool)).any()


def test_a_speck_on_the_seed_does_not_widen_the_next_slices_box():
    slices = np.zeros((3, 32, 32), np.float32)
    seed = np.zeros((32, 32), bool)
    seed[8:18, 8:18] = True
    seed[28, 29] = True  # a stray pixel a correction left behind
    predictor = VolumePredictor(BoxFillSam(32))  # predicts its prompt box filled
    predictor.set_volume(slices)
    result = predictor.propagate(1, seed, max_slices=1)
    expected = np.zeros((32, 32), bool)
    x0, y0, x1, y1 = (int(v) for v in grown_box(seed & ~(np.arange(32)[:, None] > 25), 0.15))
    expected[y0 : y1 + 1, x0 : x1 + 1] = True
    np.testing.assert_array_equal(result.masks[2], expected)  # the box of the structure, not of the speck
    np.testing.assert_array_equal(result.masks[0], expected)


@pytest.mark.parametrize("seed_slice", [8, 11])
def test_propagation_recovers_the_ball_slice_by_slice(seed_slice):
    ball = sphere_volume()
    slices = np.where(ball, 1000.0, 0.0).astype(np.float32)
    predictor = VolumePredictor(BrightInBoxSam(32))
    predictor.set_volume(slices)
    seed, score = predictor.predict(seed_slice, Prompt(box=grown_box(ball[seed_slice], 0.0)))
    np.testing.assert_array_equal(seed, ball[seed_slice])
    result = predictor.propagate(seed_slice, seed)
    np.testing.assert_array_equal(result.masks, ball)
    present = np.flatnonzero(ball.any(axis=(1, 2)))
    assert (result.first, result.last) == (present.min(), present.max())
    assert np.isnan(result.scores[: present.min()]).all() and (result.scores[present] >= 0.5).sum() == (
        len(present) - 1
    )  # every slice but the seed was predicted


def test_propagation_stops_where_the_structure_ends_and_at_max_slices():
    ball = sphere_volume()
    slices = np.where(ball, 1000.0, 0.0).astype(np.float32)
    slices[0] = 1000.0  # a bright slice beyond a gap: propagation must not jump the gap
    predictor = VolumePredictor(BrightInBoxSam(32))
    predictor.set_volume(slices)
    result = predictor.propagate(8, ball[8], max_slices=2)
    assert (result.first, result.last) == (6, 10) and not result.masks[:6].any()
    assert not predictor.propagate(8, ball[8]).masks[0].any()
    with pytest.raises(ValueError, match="seed mask is empty"):
        predictor.propagate(8, np.zeros((32, 32), bool))
    with pytest.raises(ValueError, match="outside the volume"):
        predictor.predict(16, Prompt(box=[1, 1, 5, 5]))


def tiny_model() -> SamAdapterModel:
    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs())).eval()
    randomize_weights(model, seed=1)
    randomize_adapter_weights(model, seed=2)
    return model


def depth_model(num_slices: int = 4) -> SamAdapterModel:
    config = SamAdapterConfig(**tiny_sam_kwargs(), use_depth_branch=True, num_slices=num_slices)
    model = SamAdapterModel(config).eval()
    randomize_weights(model, seed=1)
    randomize_adapter_weights(model, seed=2)
    return model


def test_depth_branch_encodes_whole_windows_with_the_last_one_padded():
    model = depth_model(num_slices=4)
    pixel_values = torch.randn(10, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    got = encode_slices(model, pixel_values, batch_size=4)
    assert got.shape == (10, 16, 8, 8)
    first = model.get_image_embeddings(pixel_values[:4], num_slices=4)
    last = model.get_image_embeddings(
        torch.cat([pixel_values[8:], pixel_values[9:].expand(2, -1, -1, -1)]), 4
    )
    torch.testing.assert_close(got[:4], first)
    torch.testing.assert_close(got[8:], last[:2])
    # the neighbours matter: slice 0 alone (as four copies) embeds differently from slice 0 in its window
    alone = encode_slices(model, pixel_values[:1])
    assert (alone[0] - got[0]).abs().max() > 1e-3
    # a peft model with the same MSA adapters encodes the same windows identically
    as_peft = sam_adapter_to_peft_model(model)
    assert depth_branch_slices(as_peft) == 4
    torch.testing.assert_close(encode_slices(as_peft, pixel_values, batch_size=8), got, atol=1e-5, rtol=0)


def test_pictures_are_encoded_in_batches_each_as_its_own_window():
    pixel_values = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    for model in (depth_model(num_slices=4), tiny_model()):
        alone = torch.cat([encode_slices(model, picture[None]) for picture in pixel_values])
        for batch_size in (1, 2, 8):
            torch.testing.assert_close(
                encode_pictures(model, pixel_values, batch_size), alone, atol=1e-5, rtol=0
            )
    # with a depth branch, encoding the pictures as slices would let them see each other: different
    model = depth_model(num_slices=4)
    as_slices = encode_slices(model, pixel_values)
    assert (as_slices[0] - encode_pictures(model, pixel_values)[0]).abs().max() > 1e-3


def test_volume_predictor_decodes_on_window_embeddings_and_caches_them():
    model = depth_model(num_slices=4)
    slices = np.random.default_rng(0).normal(100, 20, (6, 40, 50)).astype(np.float32)
    predictor = VolumePredictor(model)
    predictor.set_volume(slices, "MR")
    prompt = Prompt(points=[[20, 15]], labels=[1])
    got, _ = predictor.predict(5, prompt)
    window = torch.stack([image_to_pixel_values(s, 64, "MR") for s in slices[4:6]])
    expected_embedding = encode_slices(model, window)[1:2]
    reference = SegmentationPredictor(model)
    reference.set_image_embedding(expected_embedding, (40, 50))
    expected, _ = reference.predict(prompt)
    np.testing.assert_array_equal(got, expected)
    assert sorted(predictor._embeddings) == [4, 5]  # only slice 5's window was encoded


@pytest.mark.parametrize("use_depth", [False, True])
def test_volume_slices_are_encoded_in_aligned_groups_with_the_same_embeddings(use_depth):
    model = depth_model(num_slices=2) if use_depth else tiny_model()
    slices = np.random.default_rng(2).normal(100, 20, (11, 40, 50)).astype(np.float32)
    one_by_one = VolumePredictor(model)  # the CPU default: one slice (one depth window) per call
    assert one_by_one.batch_size == (2 if use_depth else 1)
    one_by_one.set_volume(slices, "MR")
    grouped = VolumePredictor(model, batch_size=3)  # rounded up to whole windows with a depth branch
    assert grouped.batch_size == (4 if use_depth else 3)
    grouped.set_volume(slices, "MR")
    torch.testing.assert_close(grouped.embedding(7), one_by_one.embedding(7), atol=1e-5, rtol=0)
    group = range(4, 8) if use_depth else range(6, 9)  # slice 7's aligned group, encoded in one call
    assert sorted(grouped._embeddings) == list(group)
    torch.testing.assert_close(grouped.embedding(10), one_by_one.embedding(10), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        VolumePredictor(model, batch_size=0)


def test_a_bounded_embedding_cache_drops_the_least_recently_used_and_encodes_it_again():
    """`max_cached_bytes`: room for two slices' embeddings; a third drops the one used longest ago, which is
    encoded again (the same values) when asked for; slices still cached are not."""
    model = tiny_model()
    calls = []
    encode = model.get_image_embeddings

    def counted(pixel_values, **kwargs):
        calls.append(len(pixel_values))
        return encode(pixel_values, **kwargs)

    model.get_image_embeddings = counted
    slices = np.random.default_rng(3).normal(100, 20, (5, 40, 50)).astype(np.float32)
    unbounded = VolumePredictor(model)
    unbounded.set_volume(slices, "MR")
    reference = [unbounded.embedding(index).clone() for index in range(3)]
    one = reference[0].element_size() * reference[0].nelement()
    predictor = VolumePredictor(model, max_cached_bytes=2 * one)
    predictor.set_volume(slices, "MR")
    calls.clear()
    for index in (0, 1, 0, 2):  # 0 used again after 1: 1 is the least recently used when 2 arrives
        predictor.embedding(index)
    assert calls == [1, 1, 1] and sorted(predictor._embeddings) == [0, 2]
    predictor.embedding(0)
    assert len(calls) == 3  # still cached
    torch.testing.assert_close(predictor.embedding(1), reference[1], atol=0, rtol=0)  # again, alike
    assert len(calls) == 4 and sorted(predictor._embeddings) == [0, 1]
    predictor.forget_embeddings()
    assert not predictor._embeddings


def test_two_d_predictor_runs_a_depth_model_on_one_picture():
    model = depth_model(num_slices=2)
    image = np.random.default_rng(1).integers(0, 255, (30, 30), dtype=np.uint8)
    predictor = SegmentationPredictor(model)
    predictor.set_image(image)  # D copies of the picture: no num_slices error
    mask, score = predictor.predict(Prompt(box=[5, 5, 20, 20]))
    assert mask.shape == (30, 30) and np.isfinite(score)


def test_predict_file_propagates_through_a_nifti_volume(tmp_path):
    ball = sphere_volume(shape=(12, 32, 32), centre=(6, 14, 17), radius=4.5)
    canonical = np.ascontiguousarray(
        np.transpose(ball, (2, 1, 0))[:, ::-1, :]
    )  # display slices -> RAS voxels
    assert np.array_equal(axial_slices(canonical), ball)
    nib.save(
        nib.Nifti1Image(np.where(canonical, 900.0, 100.0).astype(np.float32), np.eye(4)),
        tmp_path / "s.nii.gz",
    )
    prompt = Prompt(box=grown_box(ball[6], 0.0), slice=6, propagate=True)
    summary = predict_file(BrightInBoxSam(32), tmp_path / "s.nii.gz", tmp_path / "mask.nii.gz", [prompt])
    written = axial_slices(load_nifti(tmp_path / "mask.nii.gz", is_label=True).array)
    np.testing.assert_array_equal(written == 1, ball)
    present = np.flatnonzero(ball.any(axis=(1, 2)))
    assert summary["masks"][0]["slices"] == [present.min(), present.max()]
    assert summary["masks"][0]["pixels"] == ball.sum()


def test_single_dicom_images_read_in_their_units_and_predict(tmp_path):
    from pydicom.data import get_testdata_file

    ct, modality = read_dicom_image(get_testdata_file("CT_small.dcm"))
    assert modality == "CT" and ct.shape == (128, 128) and ct.dtype == np.float32
    assert ct.min() < -500  # Hounsfield units: air is near -1000
    summary = predict_file(
        BrightInBoxSam(64),
        get_testdata_file("CT_small.dcm"),
        tmp_path / "ct.png",
        [Prompt(box=[30, 30, 90, 90])],
    )
    assert summary["masks"][0]["pixels"] > 0
    with pytest.raises(ValueError, match=r"frames \(a multi-frame volume or cine loop\).*dcm2niix"):
        read_dicom_image(get_testdata_file("rtdose.dcm"))
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    with pytest.raises(ValueError, match="broken.dcm"):
        read_dicom_image(tmp_path / "broken.dcm")


def test_plain_sam_has_no_depth_branch_and_lora_neither():
    from peft import LoraConfig

    sam = SamModel(SamConfig(**tiny_sam_kwargs()))
    assert depth_branch_slices(sam) is None
    lora = get_peft_model(sam, LoraConfig(target_modules=["qkv"], r=2))
    assert depth_branch_slices(lora) is None
    msa = get_peft_model(
        SamModel(SamConfig(**tiny_sam_kwargs())), MsaAdapterConfig(use_depth_branch=True, num_slices=3)
    )
    assert depth_branch_slices(msa) == 3


def _high_scoring_tiny_sam() -> SamAdapterModel:
    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs())).eval()
    randomize_weights(model, seed=0, std=0.1)
    head = model.mask_decoder.iou_prediction_head.proj_out
    with torch.no_grad():  # every mask scores high: the walk goes on until a mask vanishes or grows
        head.weight.zero_()
        head.bias.fill_(0.9)
    return model


def test_propagation_carries_the_previous_slices_logits_as_the_mask_prompt():
    ball = sphere_volume()
    slices = np.where(ball, 1000.0, 0.0).astype(np.float32)
    predictor = VolumePredictor(_high_scoring_tiny_sam())
    predictor.set_volume(slices)
    seed = predictor.predict_masks(8, Prompt(box=grown_box(ball[8], 0.0)))
    carried = predictor.propagate(8, seed.mask, seed_logits=seed.low_res[seed.best], max_area_ratio=None)
    # the same walk by hand, upwards: box of the previous mask plus its low-resolution logits
    previous, logits = seed.mask, seed.low_res[seed.best]
    for position in range(9, carried.last + 1):
        step = predictor.predict_masks(position, Prompt(box=grown_box(previous, 0.15)), mask_prompt=logits)
        np.testing.assert_array_equal(carried.masks[position], step.mask)
        np.testing.assert_array_equal(carried.low_res[position], step.low_res[step.best])  # for a correction
        previous, logits = step.mask, step.low_res[step.best]
    assert carried.last >= 10
    boxes_only = predictor.propagate(8, seed.mask, carry_logits=False, max_area_ratio=None)
    assert not np.array_equal(boxes_only.masks, carried.masks)  # the mask prompt changes what is predicted


def test_several_seeds_fill_between_them_and_corrections_are_kept():
    ball = sphere_volume()
    slices = np.where(ball, 1000.0, 0.0).astype(np.float32)
    predictor = VolumePredictor(BrightInBoxSam(32))
    predictor.set_volume(slices)
    result = predictor.propagate_seeds({7: ball[7], 10: ball[10]})
    np.testing.assert_array_equal(result.masks, ball)
    assert set(result.stopped) == {"down from 7", "up from 10"}  # the walks between the seeds met
    assert np.isnan(result.scores[[7, 10]]).all() and not np.isnan(result.scores[8:10]).any()
    corrected = ball[9].copy()
    corrected[:, :16] = False  # a correction on slice 9 (half the disk) is kept as given
    again = predictor.propagate_seeds({7: ball[7], 9: corrected, 10: ball[10]})
    np.testing.assert_array_equal(again.masks[9], corrected)
    np.testing.assert_array_equal(np.delete(again.masks, 9, axis=0), np.delete(ball, 9, axis=0))
    # a slice a correction cleared: no walk enters it, and the walk says why it stopped there
    blocked = predictor.propagate_seeds({8: ball[8]}, empty_slices=[11])
    assert blocked.last == 10 and not blocked.masks[11:].any() and blocked.masks[:11].any()
    assert blocked.stopped["up"] == "slice 11, marked empty by a correction"
    with pytest.raises(ValueError, match="both seeds and marked empty"):
        predictor.propagate_seeds({8: ball[8]}, empty_slices=[8])
    with pytest.raises(ValueError, match="at least one seed"):
        predictor.propagate_seeds({})
    with pytest.raises(ValueError, match="max_area_ratio"):
        predictor.propagate_seeds({5: ball[5]}, max_area_ratio=1.0)


def test_a_mask_that_grows_too_fast_ends_the_walk_and_says_so():
    slices = np.zeros((9, 48, 48), np.float32)
    predictor = VolumePredictor(BoxFillSam(64))
    predictor.set_volume(slices)
    seed = np.zeros((48, 48), bool)
    seed[18:30, 18:30] = True  # 144 pixels; each grown box adds 15% per side, about 1.7x the area
    free = predictor.propagate(4, seed, max_area_ratio=None)
    assert (free.first, free.last) == (0, 8)
    limited = predictor.propagate(4, seed, max_area_ratio=1.5)
    assert (limited.first, limited.last) == (4, 4)
    assert "grew" in limited.stopped["up"] and "limit 1.5" in limited.stopped["up"]
    assert predictor.propagate(4, seed).last == 8  # the default (3x) lets ordinary growth through
