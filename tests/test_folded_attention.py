"""Training through the folded relative-position attention gives SAM's outputs and gradients, without the
dense N x N mask; evaluation takes transformers' own path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch_support import needs_compiling_torch
from transformers import SamConfig, SamModel
from transformers.models.sam.modeling_sam import SamVisionAttention, SamVisionSdpaAttention

from benchmarks.measure import LiveTensorBytes
from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.modeling import folded_attention
from msa_hf.modeling.folded_attention import SamVisionFoldedAttention, fold_relative_position_attention
from msa_hf.testing import randomize_weights, tiny_sam_kwargs


def _stock_and_folded(image_size: int = 64):
    kwargs = tiny_sam_kwargs()
    kwargs["vision_config"] = dict(kwargs["vision_config"], image_size=image_size)
    kwargs["prompt_encoder_config"] = dict(kwargs["prompt_encoder_config"], image_size=image_size)
    stock = SamModel(SamConfig(**kwargs))
    randomize_weights(stock, seed=0)  # the relative-position tables too: zero tables would hide a wrong fold
    folded = fold_relative_position_attention(copy.deepcopy(stock))
    return stock, folded


def _encode_and_backpropagate(model: SamModel, pixels: torch.Tensor):
    model.zero_grad()
    out = model.vision_encoder(pixels).last_hidden_state
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.vision_encoder.named_parameters() if p.grad is not None}
    return out.detach(), grads


def _count_calls(monkeypatch, function: type) -> list[int]:
    """Calls of `function.apply` from now on, one entry each."""
    calls = []
    apply = function.apply
    monkeypatch.setattr(function, "apply", lambda *args: calls.append(1) or apply(*args))
    return calls


def _route_function(route: str, monkeypatch) -> type:
    """The narrow route's function, with the CPU kernel switched off for "recompute" (what CUDA runs)."""
    if route == "recompute":
        monkeypatch.setattr(folded_attention, "_HAS_CPU_FLASH_BACKWARD", False)
        return folded_attention.FoldedRecomputedAttention
    return folded_attention.FoldedFlashAttention


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("route", ["narrow", "recompute", "sdpa"])
def test_training_outputs_and_gradients_equal_sams_in_windowed_and_global_blocks(route, padded, monkeypatch):
    # "narrow": the CPU flash kernel keeping only q, k, v and the narrow output; "recompute": the route CUDA
    # takes, keeping q, k, v and recomputing the attention in backward; "sdpa": keeping the wide tensors.
    # padded: the folded width rounded up with zero columns as on CUDA (here 16 + 4 + 4 = 24 -> 32)
    if padded:
        monkeypatch.setitem(folded_attention.WIDTH_MULTIPLE, "cpu", 32)
    calls = _count_calls(monkeypatch, _route_function(route, monkeypatch))
    stock, folded = _stock_and_folded()
    assert type(folded.vision_encoder.layers[0].attn) is SamVisionFoldedAttention
    assert (
        folded.vision_encoder.layers[0].window_size > 0 and folded.vision_encoder.layers[1].window_size == 0
    )
    if route == "sdpa":  # the per-module switch the benchmarks use to measure what a GPU keeps
        for layer in folded.vision_encoder.layers:
            layer.attn.narrow_backward = False
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    expected, expected_grads = _encode_and_backpropagate(stock.train(), pixels)
    got, got_grads = _encode_and_backpropagate(folded.train(), pixels)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert set(got_grads) == set(expected_grads)
    assert any("rel_pos" in name for name in got_grads)  # the tables get their gradient through the fold
    for name, grad in expected_grads.items():
        torch.testing.assert_close(got_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert len(calls) == (0 if route == "sdpa" else 2)  # one windowed and one global block


@pytest.mark.parametrize("route", ["narrow", "recompute"])
def test_the_narrow_route_keeps_a_third_of_what_sdpa_keeps_and_agrees_under_bf16_autocast(route, monkeypatch):
    calls = _count_calls(monkeypatch, _route_function(route, monkeypatch))
    stock, folded = _stock_and_folded(image_size=256)
    folded.train()
    attention = folded.vision_encoder.layers[1].attn  # global: 32 x 32 tokens, 2 heads of 16 -> q' 80 wide
    tokens = torch.randn(2, 32, 32, 32, generator=torch.Generator().manual_seed(4), requires_grad=True)

    def kept_output_and_gradient(narrow: bool, autocast: bool):
        attention.narrow_backward = narrow  # the route is chosen by the module's switch, in either dtype
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            with LiveTensorBytes([tokens]) as live:
                out = folded_attention.folded_relative_position_attention(attention, tokens)
                kept = live.current
            (grad,) = torch.autograd.grad(
                (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), tokens
            )
        return kept, out.detach().float(), grad

    narrow_kept, narrow_out, narrow_grad = kept_output_and_gradient(narrow=True, autocast=False)
    sdpa_kept, sdpa_out, sdpa_grad = kept_output_and_gradient(narrow=False, autocast=False)
    torch.testing.assert_close(narrow_out, sdpa_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(narrow_grad, sdpa_grad, atol=1e-5, rtol=1e-4)
    # in units of N x 16 floats per image and head: both keep the qkv output (3), the projection's input
    # and output (2) and the tables; SDPA adds q', k', v' and the output at width 80 (4 x 5) and the einsum's
    # copy of q (1), the narrow route only the narrow output (1), the recomputing one nothing more. Measured:
    # 7.7 (narrow) and 6.7 (recompute) vs 25.7 units.
    assert narrow_kept < 0.4 * sdpa_kept
    narrow_kept, narrow_out, narrow_grad = kept_output_and_gradient(narrow=True, autocast=True)
    _, sdpa_out, sdpa_grad = kept_output_and_gradient(narrow=False, autocast=True)
    torch.testing.assert_close(narrow_out, sdpa_out, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(narrow_grad, sdpa_grad, atol=2e-2, rtol=5e-2)
    assert narrow_grad.dtype == torch.float32 and narrow_grad.abs().sum() > 0
    assert len(calls) == 2  # the narrow route ran in float32 and under bf16 autocast, the SDPA route never


def test_evaluation_takes_transformers_path_bit_for_bit():
    stock, folded = _stock_and_folded()
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(
            folded.eval().get_image_embeddings(pixels), stock.eval().get_image_embeddings(pixels)
        )


def test_the_fold_keeps_no_dense_mask_for_the_backward_pass():
    # 256 px, patch 8: the global block attends over 1024 tokens, so its (B, heads, N, N) mask is 2 x 2 x
    # 1024 x 1024 x 4 bytes = 16 MiB; the folded q', k', v' (80 wide instead of 16) are ~1.3 MiB each
    stock, folded = _stock_and_folded(image_size=256)
    pixels = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    saved = {}
    for name, model in (("stock", stock.train()), ("folded", folded.train())):
        with LiveTensorBytes() as live:
            out = model.vision_encoder(pixels).last_hidden_state
            saved[name] = live.current  # what the forward pass keeps alive for backward
        del out
    assert saved["folded"] < saved["stock"] - 8 * 2**20  # measured: 26.0 MB vs 13.7 MB


def test_models_that_train_here_fold_and_eager_attention_is_left_alone():
    msa = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs()))
    assert all(type(layer.attn) is SamVisionFoldedAttention for layer in msa.vision_encoder.layers)
    eager = SamModel(SamConfig(**tiny_sam_kwargs()))
    for layer in eager.vision_encoder.layers:
        layer.attn.__class__ = SamVisionAttention
    fold_relative_position_attention(eager)
    assert all(type(layer.attn) is SamVisionAttention for layer in eager.vision_encoder.layers)


def test_the_peft_method_and_the_trainers_other_methods_fold():
    from peft import get_peft_model

    from msa_hf.peft_msa import MsaAdapterConfig

    model = get_peft_model(SamModel(SamConfig(**tiny_sam_kwargs())), MsaAdapterConfig())
    attentions = [m for m in model.modules() if isinstance(m, SamVisionSdpaAttention)]
    assert attentions and all(type(m) is SamVisionFoldedAttention for m in attentions)


def test_under_activation_checkpointing_the_sdpa_route_runs(monkeypatch):
    # checkpointing keeps nothing of the forward: the narrow tensors would only add to the recomputation's peak.
    # torch 2.7 and older cannot tell that hooks are active: there the narrow route runs and only the values
    # are checked
    sees_hooks = folded_attention._TOP_SAVED_TENSOR_HOOKS is not None
    calls = []
    apply = folded_attention.FoldedFlashAttention.apply
    monkeypatch.setattr(
        folded_attention.FoldedFlashAttention, "apply", lambda *args: calls.append(1) or apply(*args)
    )
    _, folded = _stock_and_folded()
    attention = folded.train().vision_encoder.layers[1].attn
    tokens = torch.randn(1, 8, 8, 32, requires_grad=True)
    plain = folded_attention.folded_relative_position_attention(attention, tokens)
    assert len(calls) == 1
    checkpointed = torch.utils.checkpoint.checkpoint(
        folded_attention.folded_relative_position_attention, attention, tokens, use_reentrant=False
    )
    forward_calls = 1 if sees_hooks else 2  # with hooks seen, the forward did not take the narrow route
    assert len(calls) == forward_calls
    torch.testing.assert_close(checkpointed, plain)
    grads = [torch.autograd.grad(out.sum(), tokens)[0] for out in (plain, checkpointed)]
    if sees_hooks:
        assert len(calls) == 1  # nor did the recomputation
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-5)


def test_folded_inference_equals_transformers_path_and_runs_by_device():
    stock, folded = _stock_and_folded()
    stock.eval(), folded.eval()
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    attentions = [m for m in folded.modules() if isinstance(m, SamVisionFoldedAttention)]
    calls = []
    original = folded_attention.folded_relative_position_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(folded_attention, "folded_relative_position_attention", counting)
        expected = stock.vision_encoder(pixels).last_hidden_state
        assert torch.equal(folded.vision_encoder(pixels).last_hidden_state, expected)  # CPU: stock path
        assert not calls
        for attention in attentions:
            attention.fold_at_inference = True  # what CUDA runs by default
        got = folded.vision_encoder(pixels).last_hidden_state
        patch.setitem(folded_attention.WIDTH_MULTIPLE, "cpu", 32)  # zero columns as CUDA adds them
        padded = folded.vision_encoder(pixels).last_hidden_state
    assert len(calls) == 2 * len(attentions)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("kind", "mode"),
    [("sam", "eval"), ("msa", "eval"), ("msa", "folded eval"), ("msa", "train"), ("msa", "train recompute"),
     ("msa-3d", "eval"), ("msa", "whole model train")],
)  # fmt: skip
@needs_compiling_torch
def test_the_encoder_compiles_as_one_graph(kind, mode, monkeypatch):
    """torch.compile sees every path whole: no graph break in the image encoder (stock, MSA, 3-D; eval,
    the fold at inference, both narrow training routes) or in a whole MSA training forward with a box."""
    from benchmarks.geometry import build_model

    if mode == "train recompute":  # the route CUDA takes
        monkeypatch.setattr(folded_attention, "_HAS_CPU_FLASH_BACKWARD", False)
    model = fold_relative_position_attention(build_model(kind, "tiny", 64, depth=2))
    if mode.endswith("train") or mode == "train recompute":
        model.mark_only_adapters_as_trainable().train()
    else:
        model.eval()
    for module in model.modules():
        if isinstance(module, SamVisionFoldedAttention):
            module.fold_at_inference = True if mode == "folded eval" else None
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    torch._dynamo.reset()
    if mode == "whole model train":
        boxes = torch.tensor([[[5.0, 5.0, 40.0, 40.0]]]).expand(2, 1, 4)
        explanation = torch._dynamo.explain(model)(
            pixel_values=pixels, input_boxes=boxes, multimask_output=False
        )
    else:
        explanation = torch._dynamo.explain(model.vision_encoder)(pixels)
    assert explanation.graph_break_count == 0, [str(reason.reason) for reason in explanation.break_reasons]
    assert explanation.graph_count == 1
