"""SamAdapterModel: parity with SAM at init, training behaviour, depth branch, prompt conditioning, I/O."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging

from msa_hf import SamAdapterConfig, SamAdapterModel, build_at_image_size
from msa_hf.modeling.activation_checkpointing import enable_activation_checkpointing
from msa_hf.modeling.adapter_layers import depth_attention
from msa_hf.testing import make_msa, randomize_weights, tiny_sam_kwargs

BOXES = torch.tensor(
    [[[4.0, 6.0, 40.0, 50.0]], [[10.0, 3.0, 60.0, 30.0]], [[0.0, 0.0, 63.0, 63.0]], [[20, 20, 30, 30]]]
)


def test_zero_initialised_adapters_equal_sam_2d(sam_model, images, point_prompts):
    points, labels = point_prompts
    msa = make_msa(sam_model)
    expected = sam_model(pixel_values=images, input_points=points, input_labels=labels)
    got = msa(pixel_values=images, input_points=points, input_labels=labels)
    assert expected.pred_masks.std() > 0.05  # the base is really random, not ~1e-10
    torch.testing.assert_close(got.pred_masks, expected.pred_masks, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.iou_scores, expected.iou_scores, atol=1e-5, rtol=0)


@pytest.mark.parametrize("as_5d", [False, True])
def test_zero_initialised_adapters_equal_sam_3d(sam_model, images, as_5d):
    msa = make_msa(sam_model, use_depth_branch=True, num_slices=2)
    expected = sam_model(pixel_values=images, input_boxes=BOXES, multimask_output=False)
    if as_5d:  # (V, C, D, H, W) with V=2, D=2, slice index inner in the flattened batch
        volume = images.reshape(2, 2, 3, 64, 64).permute(0, 2, 1, 3, 4)
        got = msa(pixel_values=volume, input_boxes=BOXES, multimask_output=False)
    else:
        got = msa(pixel_values=images, input_boxes=BOXES, multimask_output=False, num_slices=2)
    torch.testing.assert_close(got.pred_masks, expected.pred_masks, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.iou_scores, expected.iou_scores, atol=1e-5, rtol=0)


def test_plain_sam_checkpoint_loads_unchanged_and_msa_round_trips(sam_model, tmp_path, images):
    sam_model.save_pretrained(tmp_path / "sam")
    with CaptureLogger(logging.get_logger("transformers.configuration_utils")) as config_log:
        msa = SamAdapterModel.from_pretrained(tmp_path / "sam", use_depth_branch=True)
    assert "model of type" not in config_log.out  # no "sam into sam_adapter can yield errors" false alarm
    assert msa.config.model_type == "sam_adapter"
    assert AutoConfig.from_pretrained(tmp_path / "sam").model_type == "sam"  # the SAM folder is read as is
    sam_state = sam_model.state_dict()
    for name, tensor in msa.state_dict().items():
        if "_adapter." in name:
            continue
        assert torch.equal(tensor, sam_state[name]), name
    for name, parameter in msa.named_parameters():  # v5 init path: up zero, down alive
        if name.endswith("up.weight") and "_adapter." in name:
            assert parameter.abs().max() == 0, name
        if name.endswith("down.weight") and "_adapter." in name:
            assert parameter.std() > 1e-3, name
    expected = sam_model(pixel_values=images, input_boxes=BOXES)
    torch.testing.assert_close(
        msa(pixel_values=images, input_boxes=BOXES, num_slices=4).pred_masks, expected.pred_masks
    )

    randomize_weights(msa, seed=5, include_adapters=True)
    msa.save_pretrained(tmp_path / "msa")
    assert AutoConfig.from_pretrained(tmp_path / "msa").model_type == "sam_adapter"
    reloaded = AutoModel.from_pretrained(tmp_path / "msa")
    assert isinstance(reloaded, SamAdapterModel) and reloaded.config.use_depth_branch
    original, loaded = msa.state_dict(), reloaded.state_dict()
    assert original.keys() == loaded.keys()
    for name in original:
        assert torch.equal(original[name], loaded[name]), name


def test_optimiser_steps_move_every_adapter_and_no_frozen_weight(sam_model, images):
    # the adapters' down-projections start from the global generator: a fixed start, so that no ReLU
    # bottleneck of a decoder adapter starts all dead on these few prompt tokens (then its up-projection
    # would rightly get no gradient, whatever the code); the global seed differs between test runs
    torch.manual_seed(0)
    msa = make_msa(sam_model, use_depth_branch=True, decoder_training="adapters")
    msa.mark_only_adapters_as_trainable().train()
    before = {n: p.detach().clone() for n, p in msa.named_parameters()}
    trainable = {n for n, p in msa.named_parameters() if p.requires_grad}
    assert trainable and all("_adapter." in n for n in trainable)
    optimizer = torch.optim.AdamW([p for p in msa.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    target = (torch.rand(4, 1, 1, 32, 32, generator=torch.Generator().manual_seed(3)) > 0.5).float()

    def step() -> None:
        optimizer.zero_grad()
        out = msa(pixel_values=images, input_boxes=BOXES, num_slices=2, multimask_output=False)
        torch.nn.functional.binary_cross_entropy_with_logits(out.pred_masks, target).backward()
        optimizer.step()

    step()
    # Step 1: with zero up-projections only the up-projections get a gradient (as LoRA's B); downs wait.
    for name in trainable:
        moved = not torch.equal(msa.get_parameter(name), before[name])
        assert moved == (".up." in name), f"{name}: moved={moved} after the first step"
    step()
    for name, parameter in msa.named_parameters():
        if name in trainable:
            assert not torch.equal(parameter, before[name]), f"adapter parameter {name} did not move"
        else:
            assert torch.equal(parameter, before[name]), f"frozen parameter {name} changed"


def test_decoder_training_modes_select_parameters():
    full = make_msa(decoder_training="full").mark_only_adapters_as_trainable()
    names = {n for n, p in full.named_parameters() if p.requires_grad}
    assert "mask_decoder.iou_prediction_head.proj_in.weight" in names
    assert "mask_decoder.transformer.layers.1.self_attn.q_proj.weight" in names
    assert (
        "mask_decoder.transformer.layers.0.self_attn.q_proj.weight" not in names
    )  # adapted block stays frozen
    assert not any(n.startswith(("prompt_encoder.", "shared_image_embedding")) for n in names)
    frozen = make_msa(decoder_training="frozen").mark_only_adapters_as_trainable()
    assert not any(n.startswith("mask_decoder.") and p.requires_grad for n, p in frozen.named_parameters())
    assert not any("prompt_adapter" in n for n, _ in frozen.named_parameters())
    report = full.trainable_parameter_report()
    assert report.trainable == sum(p.numel() for p in full.parameters() if p.requires_grad)
    assert report.by_group["decoder (full)"] > 0 and report.by_group["encoder adapters"] > 0


def _randomised_msa(sam_model, **kwargs) -> SamAdapterModel:
    msa = make_msa(sam_model, **kwargs)
    randomize_weights(msa, seed=11, std=0.3, include_adapters=True)
    randomize_weights(msa, seed=0)  # base weights back to the SAM-like random base
    return msa


def test_depth_branch_keeps_volumes_independent(sam_model):
    msa = _randomised_msa(sam_model, use_depth_branch=True)
    volumes = torch.randn(3, 2, 3, 64, 64, generator=torch.Generator().manual_seed(4))  # V=3, D=2
    boxes = BOXES[:1].repeat(6, 1, 1)
    full = msa.get_image_embeddings(volumes.flatten(0, 1), num_slices=2).reshape(3, 2, -1)
    permuted = msa.get_image_embeddings(volumes[[2, 0, 1]].flatten(0, 1), num_slices=2).reshape(3, 2, -1)
    alone = msa.get_image_embeddings(volumes[1], num_slices=2).reshape(1, 2, -1)
    torch.testing.assert_close(permuted, full[[2, 0, 1]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone[0], full[1], atol=1e-5, rtol=1e-5)
    # The depth branch is really active: treating the batch as one D=6 volume changes the output.
    mixed = msa.get_image_embeddings(volumes.flatten(0, 1), num_slices=6).reshape(3, 2, -1)
    assert (mixed - full).abs().max() > 1e-3
    out = msa(pixel_values=volumes.flatten(0, 1), input_boxes=boxes, num_slices=2)
    assert torch.isfinite(out.pred_masks).all()


def test_depth_attention_with_one_slice_is_the_value_projection(sam_model):
    msa = _randomised_msa(sam_model, use_depth_branch=True)
    attention = msa.vision_encoder.layers[0].attn
    tokens = torch.randn(2, 8, 8, 32)
    out = depth_attention(attention, tokens, num_slices=1)
    # Attention over a single slice returns that slice's value, projected.
    value = attention.qkv(tokens)[..., 64:]
    torch.testing.assert_close(out, attention.proj(value), atol=1e-5, rtol=1e-5)
    assert torch.isfinite(msa.get_image_embeddings(torch.randn(2, 3, 64, 64), num_slices=1)).all()


def test_gradients_equal_with_and_without_activation_checkpointing(sam_model, images):
    msa = _randomised_msa(sam_model, use_depth_branch=True)
    msa.mark_only_adapters_as_trainable().train()

    def gradients() -> dict[str, torch.Tensor]:
        msa.zero_grad()
        out = msa(pixel_values=images, input_boxes=BOXES, num_slices=2)
        (out.pred_masks.square().mean() + out.iou_scores.square().mean()).backward()
        return {n: p.grad.clone() for n, p in msa.named_parameters() if p.requires_grad}

    plain = gradients()
    enable_activation_checkpointing(msa)
    assert all(layer.gradient_checkpointing for layer in msa.vision_encoder.layers)
    checkpointed = gradients()
    assert sum(g.abs().sum() for g in plain.values()) > 0
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


def test_prompt_conditioning_changes_only_with_the_prompt(sam_model):
    msa = _randomised_msa(sam_model)
    block = msa.mask_decoder.transformer.layers[0]
    adapter = block.prompt_adapter
    tokens = torch.randn(1, 1, 7, 16)
    prompt_a, prompt_b = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    out_a, out_b = adapter(tokens, prompt_a), adapter(tokens, prompt_b)
    assert (out_a - out_b).abs().max() > 1e-4
    torch.testing.assert_close(adapter(tokens, prompt_a), out_a)
    # No sparse prompt (mask prompt only): the prompt term is absent, the forward works.
    embeddings = torch.randn(1, 16, 8, 8)
    out = msa(image_embeddings=embeddings, input_masks=torch.randn(1, 1, 32, 32))
    assert torch.isfinite(out.pred_masks).all()
    # Through the model: same image, different clicks -> the prompt adapter sees different prompts.
    captured = []
    hook = adapter.register_forward_hook(lambda module, args, output: captured.append(output.detach()))
    for x in (5.0, 50.0):
        msa(
            image_embeddings=embeddings,
            input_points=torch.tensor([[[[x, 20.0]]]]),
            input_labels=torch.tensor([[[1]]]),
        )
    hook.remove()
    assert (captured[0] - captured[1]).abs().max() > 1e-4


def test_prompt_conditioning_off_has_no_prompt_projection():
    msa = make_msa(prompt_conditioning=False)
    assert msa.mask_decoder.transformer.layers[0].prompt_adapter.prompt_down is None


def test_build_at_another_image_size(sam_model):
    msa = _randomised_msa(sam_model)
    small = build_at_image_size(msa, 32)
    assert small.vision_encoder.pos_embed.shape == (1, 4, 4, 32)
    assert small.vision_encoder.layers[1].attn.rel_pos_h.shape[0] == 2 * 4 - 1  # global block resized
    assert (
        small.vision_encoder.layers[0].attn.rel_pos_h.shape
        == msa.vision_encoder.layers[0].attn.rel_pos_h.shape
    )
    torch.testing.assert_close(
        small.vision_encoder.layers[0].attn.qkv.weight, msa.vision_encoder.layers[0].attn.qkv.weight
    )
    out = small(pixel_values=torch.randn(1, 3, 32, 32), input_boxes=torch.tensor([[[2.0, 2.0, 20.0, 24.0]]]))
    assert out.pred_masks.shape[-2:] == (16, 16) and torch.isfinite(out.pred_masks).all()
    # A constant position embedding stays constant after resampling (a value check of the interpolation).
    flat = msa.vision_encoder.pos_embed.detach().clone()
    with torch.no_grad():
        msa.vision_encoder.pos_embed.fill_(0.25)
    torch.testing.assert_close(
        build_at_image_size(msa, 32).vision_encoder.pos_embed, torch.full((1, 4, 4, 32), 0.25)
    )
    with torch.no_grad():
        msa.vision_encoder.pos_embed.copy_(flat)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        build_at_image_size(msa, 30)


def test_bad_inputs_get_clear_errors(sam_model):
    msa = make_msa(sam_model, use_depth_branch=True)
    with pytest.raises(ValueError, match="num_slices=3 does not divide the batch of 4"):
        msa(pixel_values=torch.randn(4, 3, 64, 64), input_boxes=BOXES, num_slices=3)
    with pytest.raises(ValueError, match=r"takes \(3, 64, 64\).*SamProcessor"):
        msa(pixel_values=torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="contradicts the 5-D"):
        msa(pixel_values=torch.randn(1, 3, 2, 64, 64), num_slices=4)
    with pytest.raises(TypeError, match="unexpected keyword"):
        msa(pixel_values=torch.randn(1, 3, 64, 64), input_point=torch.zeros(1, 1, 1, 2))
    with pytest.raises(TypeError, match="output_attentions"):  # SamModel accepts it, then ignores it
        msa(pixel_values=torch.randn(1, 3, 64, 64), output_attentions=True)
    with pytest.raises(ValueError, match="no depth branch"):
        make_msa()(pixel_values=torch.randn(2, 3, 64, 64), num_slices=2)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("adapter_bottleneck_ratio", 0.0, "adapter_bottleneck_ratio"),
        ("mlp_adapter_scale", -1.0, "mlp_adapter_scale"),
        ("encoder_adapter_activation", "swishy", "encoder_adapter_activation"),
        ("decoder_training", "partial", "decoder_training"),
        ("decoder_adapter_layers", [5], "has 2 two-way blocks"),
        ("decoder_adapter_layers", [0, 0], "distinct"),
        ("num_slices", 0, "num_slices"),
        ("use_depth_branch", "yes", "True or False"),
    ],
)
def test_invalid_config_values_raise(field, value, message):
    with pytest.raises(ValueError, match=message):
        SamAdapterConfig(**tiny_sam_kwargs(), **{field: value})
