"""The frozen encoder MLPs recompute their hidden layer in the backward pass: same outputs and gradients,
without the 4C-wide activation kept for backward."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from transformers import SamConfig, SamModel

from benchmarks.measure import LiveTensorBytes
from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.modeling.activation_checkpointing import enable_activation_checkpointing
from msa_hf.modeling.frozen_mlp import frozen_mlp_forward, set_frozen_mlp_recompute
from msa_hf.peft_msa import MsaAdapterConfig
from msa_hf.testing import randomize_weights, tiny_sam_kwargs

BOXES = torch.tensor([[[8.0, 10.0, 40.0, 50.0]]])


def _kwargs(image_size: int = 64) -> dict:
    kwargs = tiny_sam_kwargs()
    kwargs["vision_config"] = dict(kwargs["vision_config"], image_size=image_size)
    kwargs["prompt_encoder_config"] = dict(kwargs["prompt_encoder_config"], image_size=image_size)
    return kwargs


def _trainable_msa(image_size: int = 64, **adapter_kwargs) -> SamAdapterModel:
    msa = SamAdapterModel(SamAdapterConfig(**_kwargs(image_size), **adapter_kwargs))
    randomize_weights(msa, seed=11, std=0.3, include_adapters=True)  # adapters off their zero init
    randomize_weights(msa, seed=0)  # a SAM-like random base under them
    return msa.mark_only_adapters_as_trainable().train()


def _outputs_and_gradients(model, pixels: torch.Tensor, **forward_kwargs):
    model.zero_grad()
    out = model(pixel_values=pixels, input_boxes=BOXES.expand(len(pixels), 1, 4), **forward_kwargs)
    (out.pred_masks.square().mean() + out.iou_scores.square().mean()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.pred_masks.detach(), grads


def _assert_same(first, second) -> None:
    torch.testing.assert_close(first[0], second[0], atol=1e-6, rtol=1e-5)
    assert set(first[1]) == set(second[1]) and sum(g.abs().sum() for g in first[1].values()) > 0
    for name, grad in first[1].items():
        torch.testing.assert_close(second[1][name], grad, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "with-block-checkpointing"])
def test_recomputing_gives_the_same_outputs_and_adapter_gradients(checkpointing):
    msa = _trainable_msa(use_depth_branch=True)
    assert all(layer.recompute_frozen_mlp for layer in msa.vision_encoder.layers)  # on by default
    if checkpointing:
        enable_activation_checkpointing(msa)
    pixels = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    recomputed = _outputs_and_gradients(msa, pixels, num_slices=2)
    assert set_frozen_mlp_recompute(msa, False) == 2
    kept = _outputs_and_gradients(msa, pixels, num_slices=2)
    _assert_same(kept, recomputed)
    assert any("vision_encoder" in name and "mlp_adapter" in name for name in kept[1])


def test_the_hidden_layer_is_not_kept_for_backward():
    # 256 px, patch 8: 32 x 32 tokens; the MLP hidden layer is 64 wide, so each of the 2 blocks keeps
    # 4 x 1024 x 64 x 4 bytes = 1 MiB for backward unless it recomputes
    msa = _trainable_msa(image_size=256)
    pixels = torch.randn(4, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    kept_for_backward = {}
    for recompute in (True, False):
        set_frozen_mlp_recompute(msa, recompute)
        with LiveTensorBytes() as live:
            out = msa(pixel_values=pixels, input_boxes=BOXES.expand(4, 1, 4)).pred_masks
            kept_for_backward[recompute] = live.current
        del out
    hidden_bytes = 2 * 4 * 32 * 32 * 64 * 4
    assert kept_for_backward[False] - kept_for_backward[True] == pytest.approx(hidden_bytes, rel=0.05)


def test_a_trainable_mlp_is_left_alone(monkeypatch):
    # full fine-tuning of an MLP needs its activations for the weight gradients: nothing is recomputed
    import msa_hf.modeling.frozen_mlp

    checkpointed = []
    checkpoint = msa_hf.modeling.frozen_mlp.checkpoint
    monkeypatch.setattr(
        msa_hf.modeling.frozen_mlp,
        "checkpoint",
        lambda *args, **kwargs: checkpointed.append(1) or checkpoint(*args, **kwargs),
    )
    msa = _trainable_msa()
    mlp = msa.vision_encoder.layers[0].mlp
    hidden_states = torch.randn(2, 8, 8, 32, requires_grad=True)
    frozen_mlp_forward(mlp, hidden_states, recompute=True)
    assert len(checkpointed) == 1  # frozen: recomputed
    mlp.requires_grad_(True)
    out = frozen_mlp_forward(mlp, hidden_states, recompute=True)
    assert len(checkpointed) == 1  # trainable: left alone
    out.square().sum().backward()
    expected = torch.autograd.grad(mlp(hidden_states).square().sum(), mlp.lin1.weight)[0]
    torch.testing.assert_close(mlp.lin1.weight.grad, expected)
    with torch.no_grad():  # evaluation: plain forward, nothing recorded
        torch.testing.assert_close(frozen_mlp_forward(mlp, hidden_states, recompute=True), mlp(hidden_states))
    assert len(checkpointed) == 1


def test_the_peft_method_recomputes_too_and_can_be_switched_off(monkeypatch):
    import msa_hf.modeling.frozen_mlp

    checkpointed = []  # equal values alone would also hold if the PEFT layers never recomputed
    checkpoint = msa_hf.modeling.frozen_mlp.checkpoint
    monkeypatch.setattr(
        msa_hf.modeling.frozen_mlp,
        "checkpoint",
        lambda *args, **kwargs: checkpointed.append(1) or checkpoint(*args, **kwargs),
    )
    sam = SamModel(SamConfig(**tiny_sam_kwargs()))
    randomize_weights(sam, seed=0)
    model = get_peft_model(sam, MsaAdapterConfig())
    randomize_weights(model, seed=11, std=0.3, include_adapters=True)
    randomize_weights(model.base_model.model, seed=0)
    model.train()
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    recomputed = _outputs_and_gradients(model, pixels)
    assert len(checkpointed) == 2  # one frozen MLP per encoder block
    assert set_frozen_mlp_recompute(model, False) == 2
    _assert_same(_outputs_and_gradients(model, pixels), recomputed)
    assert len(checkpointed) == 2  # switched off: nothing recomputed
