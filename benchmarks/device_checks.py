# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Correctness of the training paths on a device, before its benchmarks are trusted.

    python -m benchmarks.device_checks --device cuda   # first step of benchmarks/gpu_session.sh
    python -m benchmarks.device_checks --device cpu    # the same checks here (tests/test_benchmarks.py)

The suite only times and measures; these checks say whether what it timed computes the right thing on that
device: SAM's training-mode image encoder through the folded attention against transformers' own (outputs and
gradients, float32 and bf16 autocast), MSA's frozen-MLP recomputation against keeping the activations, the
device's MSA forward against the CPU's, the narrow training route of the folded attention (what it keeps
for the backward pass and its gradients) against the SDPA route, the folded attention at inference, and the predictor on the device in
its default dtype against the CPU's float32. TF32 is off for all of them. Tiny random models, seconds. Exit
status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable

import torch
from transformers import SamConfig, SamModel

from msa_hf import SamAdapterConfig, SamAdapterModel, set_frozen_mlp_recompute
from msa_hf.modeling.folded_attention import fold_relative_position_attention
from msa_hf.testing import randomize_weights, tiny_sam_kwargs

IMAGE_SIZE = 128  # patch 8: a 16 x 16 grid, so windowed and global blocks both run


def _kwargs() -> dict:
    kwargs = tiny_sam_kwargs()
    # window 7 (padded to 21: 3 x 3 windows): the windowed blocks' folded width 16 + 7 + 7 = 30 is not a
    # multiple of 8, so on CUDA the checks run the fold with its zero columns (30 -> 32), as ViT-B's (92 -> 96)
    kwargs["vision_config"] = dict(kwargs["vision_config"], image_size=IMAGE_SIZE, window_size=7)
    kwargs["prompt_encoder_config"] = dict(kwargs["prompt_encoder_config"], image_size=IMAGE_SIZE)
    return kwargs


def _encoder_output_and_gradients(model, pixels: torch.Tensor, autocast: bool):
    model.zero_grad()
    with torch.autocast(pixels.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model.vision_encoder(pixels).last_hidden_state.float()
    (out * torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)).sum().backward()
    grads = {
        n: p.grad.float().clone() for n, p in model.vision_encoder.named_parameters() if p.grad is not None
    }
    return out.detach(), grads


def _pairs(
    got: dict | torch.Tensor, want: dict | torch.Tensor
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, got, want) per tensor: the entries of two dicts of gradients, or two outputs."""
    if isinstance(want, dict):
        return [(name, got[name], want[name]) for name in want]
    return [("output", got, want)]


def _close(got: dict | torch.Tensor, want: dict | torch.Tensor, atol: float, rtol: float) -> str | None:
    """None when every tensor matches, else what differs first."""
    if isinstance(want, dict) and set(got) != set(want):
        return f"parameters with gradients differ: {sorted(set(got) ^ set(want))}"
    for name, a, b in _pairs(got, want):
        try:
            torch.testing.assert_close(a, b, atol=atol, rtol=rtol)
        except AssertionError as error:
            return f"{name}: {str(error).splitlines()[0]}"
    return None


def check_folded_attention(device: torch.device, autocast: bool) -> str | None:
    stock = SamModel(SamConfig(**_kwargs()))
    randomize_weights(stock, seed=0)
    folded = fold_relative_position_attention(copy.deepcopy(stock))
    stock, folded = stock.to(device).train(), folded.to(device).train()
    pixels = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1)).to(device)
    want_out, want_grads = _encoder_output_and_gradients(stock, pixels, autocast)
    got_out, got_grads = _encoder_output_and_gradients(folded, pixels, autocast)
    if autocast:  # bf16 rounds both paths differently: compare each tensor as a whole, not element by element
        return _relative_error(got_out, want_out, 0.03) or _relative_error(got_grads, want_grads, 0.05)
    return _close(got_out, want_out, atol=1e-4, rtol=1e-3) or _close(
        got_grads, want_grads, atol=1e-4, rtol=1e-3
    )


def check_narrow_route(device: torch.device) -> str | None:
    """The folded attention's narrow training route on `device` (the CPU kernel's own backward there, the
    recomputing route on CUDA) runs, gives the SDPA route's output and gradients in float32, and keeps at
    most 0.4x of the SDPA route's tensors for the backward pass (one global block, 32 x 32 tokens)."""
    from benchmarks.measure import LiveTensorBytes
    from msa_hf.modeling import folded_attention

    kwargs = _kwargs()
    kwargs["vision_config"] = dict(kwargs["vision_config"], image_size=256)
    folded = fold_relative_position_attention(SamModel(SamConfig(**kwargs)))
    randomize_weights(folded, seed=0)
    attention = folded.vision_encoder.layers[1].attn.to(device).train()  # a global block
    tokens = (
        torch.randn(2, 32, 32, 32, generator=torch.Generator().manual_seed(4)).to(device).requires_grad_()
    )
    weights = torch.linspace(-1, 1, tokens.numel(), device=device).view_as(tokens)
    results = {}
    for narrow in (True, False):
        attention.narrow_backward = narrow
        with LiveTensorBytes([tokens]) as live:
            out = folded_attention.folded_relative_position_attention(attention, tokens)
            kept = live.current
        (grad,) = torch.autograd.grad((out * weights).sum(), tokens)
        results[narrow] = kept, out.detach(), grad
    query = tokens.new_empty(1, requires_grad=True)
    if folded_attention._narrow_route(query, (query, query)) is None:
        return f"no narrow route runs on {device.type}"
    (narrow_kept, *narrow), (sdpa_kept, *sdpa) = results[True], results[False]
    if narrow_kept > 0.4 * sdpa_kept:
        return f"the narrow route keeps {narrow_kept / 2**20:.2f} MiB, SDPA {sdpa_kept / 2**20:.2f} MiB"
    return _close(narrow[0], sdpa[0], 1e-4, 1e-3) or _close(narrow[1], sdpa[1], 1e-4, 1e-3)


def _relative_error(got: dict | torch.Tensor, want: dict | torch.Tensor, limit: float) -> str | None:
    """None when `|got - want| / |want|` (Frobenius norms) is at most `limit` for every tensor."""
    for name, a, b in _pairs(got, want):
        error = float((a - b).norm() / b.norm().clamp(min=1e-12))
        if not error <= limit:
            return f"{name}: relative error {error:.3g} > {limit}"
    return None


def _trainable_msa() -> SamAdapterModel:
    msa = SamAdapterModel(SamAdapterConfig(**_kwargs()))
    randomize_weights(msa, seed=11, std=0.3, include_adapters=True)
    randomize_weights(msa, seed=0)
    return msa.mark_only_adapters_as_trainable().train()


def _msa_step(msa: SamAdapterModel, device: torch.device):
    msa.zero_grad()
    pixels = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(2)).to(device)
    boxes = torch.tensor([[[20.0, 24.0, 90.0, 100.0]]], device=device).expand(2, 1, 4)
    masks = msa(pixel_values=pixels, input_boxes=boxes, multimask_output=False).pred_masks
    masks.square().mean().backward()
    grads = {n: p.grad.clone().cpu() for n, p in msa.named_parameters() if p.grad is not None}
    return masks.detach().cpu(), grads


def check_frozen_mlp_recompute(device: torch.device) -> str | None:
    msa = _trainable_msa().to(device)
    recomputed = _msa_step(msa, device)
    set_frozen_mlp_recompute(msa, False)
    kept = _msa_step(msa, device)
    return _close(recomputed[0], kept[0], atol=1e-5, rtol=1e-4) or _close(recomputed[1], kept[1], 1e-5, 1e-4)


def check_device_matches_cpu(device: torch.device) -> str | None:
    on_cpu = _msa_step(_trainable_msa(), torch.device("cpu"))
    on_device = _msa_step(_trainable_msa().to(device), device)
    # TF32 and other kernels: the device's float32 differs from the CPU's in the last bits
    return _close(on_device[0], on_cpu[0], atol=1e-3, rtol=1e-2) or _close(
        on_device[1], on_cpu[1], 1e-3, 5e-2
    )


def check_folded_inference(device: torch.device) -> str | None:
    """Evaluation through the fold (what CUDA runs by default) = transformers' encoder, float32."""
    stock = SamModel(SamConfig(**_kwargs()))
    randomize_weights(stock, seed=0)
    folded = fold_relative_position_attention(copy.deepcopy(stock))
    for module in folded.modules():
        if hasattr(module, "fold_at_inference"):
            module.fold_at_inference = True
    stock, folded = stock.to(device).eval(), folded.to(device).eval()
    pixels = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(5)).to(device)
    with torch.no_grad():
        return _close(folded.get_image_embeddings(pixels), stock.get_image_embeddings(pixels), 1e-4, 1e-4)


def check_predictor_on_device(device: torch.device) -> str | None:
    """`SegmentationPredictor` on `device` with its default dtype (bf16 encoder on CUDA) gives the CPU's
    float32 masks: at least 98% of pixels equal, scores within 0.05."""
    import numpy as np

    from msa_hf.inference.predictor import Prompt, SegmentationPredictor

    model = SamAdapterModel(SamAdapterConfig(**_kwargs()))
    randomize_weights(model, seed=4, std=0.05)
    image = np.random.default_rng(0).integers(0, 255, (90, 120)).astype(np.uint8)
    image[20:60, 30:80] = 220
    prompts = [Prompt(box=[30, 20, 79, 59]), Prompt(points=[[50, 40]], labels=[1])]
    results = []
    for where, dtype in ((torch.device("cpu"), "float32"), (device, None)):
        predictor = SegmentationPredictor(copy.deepcopy(model), device=where, dtype=dtype)
        predictor.set_image(image)
        results.append([predictor.predict(p) for p in prompts])
    for (mask, score), (got, got_score) in zip(*results, strict=True):
        agreement = float((mask == got).mean())
        if agreement < 0.98 or abs(score - got_score) > 0.05:
            return f"masks agree on {agreement:.3f} of pixels, scores {score:.3f} vs {got_score:.3f}"
    return None


def run_checks(device: torch.device) -> list[tuple[str, str | None]]:
    """(check, None or what failed) for every check on `device`."""
    checks: list[tuple[str, Callable[[], str | None]]] = [
        ("folded attention = transformers' attention, float32", lambda: check_folded_attention(device, False)),
        ("folded attention = transformers' attention, bf16 autocast", lambda: check_folded_attention(device, True)),
        ("folded attention's narrow route = SDPA route, keeping <= 0.4x", lambda: check_narrow_route(device)),
        ("frozen-MLP recomputation = kept activations", lambda: check_frozen_mlp_recompute(device)),
        (f"MSA training step on {device.type} = on cpu", lambda: check_device_matches_cpu(device)),
        ("folded attention at inference = transformers' encoder, float32", lambda: check_folded_inference(device)),
        (f"predictor on {device.type} (default dtype) = cpu float32", lambda: check_predictor_on_device(device)),
    ]  # fmt: skip
    return [(name, check()) for name, check in checks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.device_checks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    # float32 comparisons mean float32: CUDA's TF32 (on by default for cuDNN convolutions) would differ by
    # ~3e-4 in the patch embedding, in both paths alike, and fail the tight checks for no fault of the code
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    results = run_checks(torch.device(args.device))
    for name, failure in results:
        print(f"{'FAIL' if failure else 'ok  '} {name}" + (f": {failure}" if failure else ""))
    return 1 if any(failure for _, failure in results) else 0


if __name__ == "__main__":
    sys.exit(main())
