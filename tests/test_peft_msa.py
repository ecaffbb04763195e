"""The `msa` PEFT method: injection, parity, save/load, disable, several adapters, conversion, checkpointing."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from peft import PeftConfig, PeftModel, get_peft_model
from safetensors.torch import load_file

from msa_hf import MsaAdapterConfig, SamAdapterModel, peft_model_to_sam_adapter, sam_adapter_to_peft_model
from msa_hf.modeling.activation_checkpointing import enable_activation_checkpointing
from msa_hf.peft_msa import MsaTwoWayBlockLayer, MsaVisionLayer
from msa_hf.testing import fresh_sam, make_msa, randomize_adapter_weights

BOXES = torch.tensor(
    [[[4.0, 6.0, 40.0, 50.0]], [[10.0, 3.0, 60.0, 30.0]], [[0.0, 0.0, 63.0, 63.0]], [[20, 20, 30, 30]]]
)


def test_injection_places_every_adapter_kind():
    model = get_peft_model(fresh_sam(), MsaAdapterConfig(use_depth_branch=True))
    base = model.get_base_model()
    assert all(isinstance(layer, MsaVisionLayer) for layer in base.vision_encoder.layers)
    decoder_layers = base.mask_decoder.transformer.layers
    assert isinstance(decoder_layers[0], MsaTwoWayBlockLayer) and not isinstance(
        decoder_layers[1], MsaTwoWayBlockLayer
    )
    kinds = {name.split(".msa_")[1].split(".")[0] for name, _ in model.named_parameters() if ".msa_" in name}
    assert kinds == {
        "space_adapter",
        "mlp_adapter",
        "depth_adapter",
        "prompt_adapter",
        "image_to_token_adapter",
    }
    trainable, total = model.get_nb_trainable_parameters()
    native = make_msa(use_depth_branch=True).mark_only_adapters_as_trainable()
    assert trainable == native.trainable_parameter_report().trainable  # same method, same count
    assert 0 < trainable < total


def test_zero_init_equals_sam_and_disable_adapter_equals_sam(images):
    sam = fresh_sam()
    expected = sam(pixel_values=images, input_boxes=BOXES).pred_masks
    model = get_peft_model(sam, MsaAdapterConfig(use_depth_branch=True))
    torch.testing.assert_close(
        model(pixel_values=images, input_boxes=BOXES, num_slices=2).pred_masks, expected, atol=1e-5, rtol=0
    )
    randomize_adapter_weights(model, seed=1)
    adapted = model(pixel_values=images, input_boxes=BOXES, num_slices=2).pred_masks
    assert (adapted - expected).abs().max() > 1e-2
    with model.disable_adapter():
        torch.testing.assert_close(
            model(pixel_values=images, input_boxes=BOXES).pred_masks, expected, atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("decoder_training", ["adapters", "full"])
def test_save_and_load_round_trip(tmp_path, images, decoder_training):
    model = get_peft_model(
        fresh_sam(), MsaAdapterConfig(use_depth_branch=True, decoder_training=decoder_training)
    )
    randomize_adapter_weights(model, seed=2)
    if decoder_training == "full":  # the fully trained decoder parts must travel with the adapter
        with torch.no_grad():
            model.get_base_model().mask_decoder.iou_prediction_head.proj_in.weight.add_(0.5)
    expected = model(pixel_values=images, input_boxes=BOXES, num_slices=2)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in {".json", ".safetensors"}) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert json.loads((tmp_path / "adapter_config.json").read_text())["peft_type"] == "MSA"
    # an adapter folder is not a model: said by name, not as transformers' network error for a base "None"
    with pytest.raises(ValueError, match="adapter-only checkpoint .* PeftModel.from_pretrained"):
        SamAdapterModel.from_pretrained(tmp_path)
    keys = load_file(tmp_path / "adapter_model.safetensors").keys()
    adapter_keys = {k for k in keys if ".msa_" in k}
    assert adapter_keys and all(".default." not in k for k in keys)  # adapter name stripped, as peft does
    if decoder_training == "adapters":
        assert set(keys) == adapter_keys  # adapter tensors only
    else:
        extra = set(keys) - adapter_keys
        assert extra and all(k.startswith("base_model.model.mask_decoder.") for k in extra)
        assert not any("transformer.layers.0." in k for k in extra)  # frozen SAM weights of the adapted block
    assert isinstance(PeftConfig.from_pretrained(tmp_path), MsaAdapterConfig)
    loaded = PeftModel.from_pretrained(fresh_sam(), tmp_path)
    got = loaded(pixel_values=images, input_boxes=BOXES, num_slices=2)
    torch.testing.assert_close(got.pred_masks, expected.pred_masks, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.iou_scores, expected.iou_scores, atol=1e-5, rtol=0)


def test_two_named_adapters_switch(images):
    model = get_peft_model(fresh_sam(), MsaAdapterConfig(decoder_training="adapters"), adapter_name="liver")
    model.add_adapter("kidney", MsaAdapterConfig(decoder_training="adapters"))
    randomize_adapter_weights(model, seed=3)
    outputs = {}
    for name in ("liver", "kidney"):
        model.set_adapter(name)
        outputs[name] = model(pixel_values=images, input_boxes=BOXES).pred_masks
        alone = peft_model_to_sam_adapter(model, name)(pixel_values=images, input_boxes=BOXES).pred_masks
        torch.testing.assert_close(outputs[name], alone, atol=1e-5, rtol=0)
    assert (outputs["liver"] - outputs["kidney"]).abs().max() > 1e-2
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".kidney." in n for n in trainable)


@pytest.mark.parametrize("use_depth_branch", [False, True])
def test_native_and_peft_convert_both_ways_with_equal_outputs(images, use_depth_branch):
    native = make_msa(fresh_sam(), use_depth_branch=use_depth_branch)
    randomize_adapter_weights(native, seed=4)
    kwargs = {"num_slices": 2} if use_depth_branch else {}
    expected = native(pixel_values=images, input_boxes=BOXES, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # peft's deprecated-property read stays quiet here
        as_peft = sam_adapter_to_peft_model(native)
    got = as_peft(pixel_values=images, input_boxes=BOXES, **kwargs)
    torch.testing.assert_close(got.pred_masks, expected.pred_masks, atol=1e-5, rtol=0)
    back = peft_model_to_sam_adapter(as_peft)
    assert isinstance(back, SamAdapterModel)
    for name, tensor in native.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name


def test_depth_reaches_layers_per_call_and_survives_checkpointing(images):
    model = get_peft_model(fresh_sam(), MsaAdapterConfig(use_depth_branch=True))
    randomize_adapter_weights(model, seed=5)
    as_volumes = images.reshape(2, 2, 3, 64, 64).permute(0, 2, 1, 3, 4)
    by_argument = model(pixel_values=images, input_boxes=BOXES, num_slices=2).pred_masks
    torch.testing.assert_close(model(pixel_values=as_volumes, input_boxes=BOXES).pred_masks, by_argument)
    one_volume = model(pixel_values=images, input_boxes=BOXES, num_slices=4).pred_masks
    assert (one_volume - by_argument).abs().max() > 1e-3  # D really changes what the blocks compute
    # No hook outlives its call.
    assert not any(layer._forward_pre_hooks for layer in model.get_base_model().vision_encoder.layers)
    assert all(layer.call_num_slices is None for layer in model.get_base_model().vision_encoder.layers)

    model.train()

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        out = model(pixel_values=images, input_boxes=BOXES, num_slices=2)
        (out.pred_masks.square().mean() + out.iou_scores.square().mean()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    enable_activation_checkpointing(model)
    checkpointed = gradients()
    assert any("msa_depth_adapter" in n for n in plain)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


def test_bad_peft_inputs(images):
    with pytest.raises(ValueError, match="decoder_training"):
        MsaAdapterConfig(decoder_training="everything")
    with pytest.raises(ValueError, match="has 2 two-way blocks"):
        get_peft_model(fresh_sam(), MsaAdapterConfig(decoder_adapter_layers=[3]))
    with pytest.raises(TypeError, match="not supported by MSA"):
        get_peft_model(fresh_sam(), MsaAdapterConfig(target_modules=["qkv"]))
    model = get_peft_model(fresh_sam(), MsaAdapterConfig(use_depth_branch=True))
    with pytest.raises(ValueError, match="does not divide the batch"):
        model(pixel_values=images, input_boxes=BOXES, num_slices=3)
    with pytest.raises(NotImplementedError, match="cannot be merged"):
        model.merge_and_unload()
