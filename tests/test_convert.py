"""Original segment-anything checkpoints -> SamAdapterModel, compared with the original implementation."""

from __future__ import annotations

import pytest
import torch
from original_sam import build_tiny_original_sam

from msa_hf.modeling.convert import convert_segment_anything_checkpoint, detect_sam_config_kwargs


@pytest.fixture
def original_checkpoint(tmp_path):
    sam = build_tiny_original_sam()
    path = tmp_path / "sam_tiny.pth"
    torch.save(sam.state_dict(), path)
    return sam, path


@torch.no_grad()
def original_predict(sam, images, points=None, labels=None, boxes=None, multimask=True):
    embeddings = sam.image_encoder(images)
    sparse, dense = sam.prompt_encoder(
        points=None if points is None else (points, labels), boxes=boxes, masks=None
    )
    masks, iou = sam.mask_decoder(
        image_embeddings=embeddings,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )
    return masks, iou


@pytest.mark.parametrize("prompt", ["points", "box"])
def test_converted_model_matches_original_segment_anything(original_checkpoint, prompt):
    sam, path = original_checkpoint
    model = convert_segment_anything_checkpoint(path)
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    points = torch.tensor([[[12.0, 40.0], [50.0, 9.0]]])  # (x, y)
    labels = torch.tensor([[1, 0]])
    box = torch.tensor([[6.0, 10.0, 44.0, 58.0]])
    if prompt == "points":
        expected_masks, expected_iou = original_predict(sam, image, points=points, labels=labels)
        out = model(pixel_values=image, input_points=points[:, None], input_labels=labels[:, None])
    else:
        expected_masks, expected_iou = original_predict(sam, image, boxes=box)
        out = model(pixel_values=image, input_boxes=box[:, None])
    assert expected_masks.std() > 0.05
    # transformers' decoder LayerNorms use eps 1e-6 where the original uses 1e-5: agreement to ~1e-4.
    torch.testing.assert_close(out.pred_masks[:, 0], expected_masks, atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(out.iou_scores[:, 0], expected_iou, atol=2e-4, rtol=1e-3)


def test_geometry_is_read_from_the_tensors(original_checkpoint):
    sam, _ = original_checkpoint
    kwargs = detect_sam_config_kwargs(sam.state_dict())
    vision = kwargs["vision_config"]
    assert (vision["hidden_size"], vision["num_hidden_layers"], vision["num_attention_heads"]) == (32, 2, 2)
    assert (vision["image_size"], vision["patch_size"], vision["window_size"]) == (64, 8, 4)
    assert vision["global_attn_indexes"] == [1] and vision["mlp_dim"] == 64
    assert kwargs["mask_decoder_config"]["num_hidden_layers"] == 2


def test_adapter_settings_pass_through_and_model_still_equals_original(original_checkpoint):
    sam, path = original_checkpoint
    model = convert_segment_anything_checkpoint(path, use_depth_branch=True)
    assert model.config.use_depth_branch
    image = torch.randn(2, 3, 64, 64)
    box = torch.tensor([[6.0, 10.0, 44.0, 58.0]]).repeat(2, 1)
    # The original decoder takes one image per call (its Sam.forward loops over the batch).
    expected = torch.cat([original_predict(sam, image[i : i + 1], boxes=box[i : i + 1])[0] for i in range(2)])
    got = model(pixel_values=image, input_boxes=box[:, None], num_slices=2).pred_masks[:, 0]
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-3)


def test_missing_and_extra_keys_are_reported(original_checkpoint, tmp_path):
    sam, _ = original_checkpoint
    state = sam.state_dict()
    state.pop("mask_decoder.iou_token.weight")
    state.pop("image_encoder.blocks.0.mlp.lin2.bias")
    state["image_encoder.blocks.0.attn.extra"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(ValueError, match="iou_token"):
        convert_segment_anything_checkpoint(broken)
    del state["image_encoder.blocks.0.attn.extra"]
    state["mask_decoder.iou_token.weight"] = sam.state_dict()["mask_decoder.iou_token.weight"]
    torch.save(state, broken)
    with pytest.raises(ValueError, match=r"missing 1 key\(s\).*layers\.0\.mlp\.lin2\.bias"):
        convert_segment_anything_checkpoint(broken)


def test_corrupt_and_absent_files_get_clear_errors(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="tensors-only PyTorch checkpoint"):
        convert_segment_anything_checkpoint(corrupt)
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        convert_segment_anything_checkpoint(tmp_path / "absent.pth")
