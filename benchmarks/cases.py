# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The benchmark cases. Each takes a parameter dict and returns one result row; `benchmarks.run` runs each in
its own process so that peak memory is the case's own.

Parameters shared by all cases: `geometry` (ViT-B/L/H or tiny), `size` (input side), `batch`, `device`,
`dtype` ("float32", or "bfloat16" autocast on CUDA), `repeats`, `warmup`, and `compile` (`torch.compile` the
model first; its first call, compilation included, is reported as `compile_s`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from msa_hf.modeling.activation_checkpointing import enable_activation_checkpointing
from msa_hf.modeling.folded_attention import SamVisionFoldedAttention, fold_relative_position_attention
from msa_hf.modeling.frozen_mlp import set_frozen_mlp_recompute

from .geometry import build_model, encoder_macs
from .measure import LiveTensorBytes, PeakMemory, synchronise, time_calls

# bf16 dense peak of the cards we are lent (H100/H200 SXM), for model FLOP utilisation
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}


def _autocast(device: torch.device, dtype: str):
    if dtype == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _boxes(batch: int, size: int, device: torch.device) -> torch.Tensor:
    """One box per image, `(B, 1, 4)` in the input frame."""
    return torch.tensor([[[0.2 * size, 0.25 * size, 0.7 * size, 0.8 * size]]], device=device).expand(
        batch, 1, 4
    )


def _row(params: dict[str, Any], timing, peak: int, **extra: Any) -> dict[str, Any]:
    return {
        **params,
        "median_ms": 1000 * timing.median,
        "min_ms": 1000 * timing.low,
        "max_ms": 1000 * timing.high,
        "repeats": timing.repeats,
        "peak_mb": peak / 2**20,
        **extra,
    }


def _first_call_seconds(function, device: torch.device) -> float:
    """The first call of a `torch.compile`d function: compilation plus one run."""
    import time

    start = time.perf_counter()
    function()
    synchronise(device)
    return time.perf_counter() - start


def encoder_forward(params: dict[str, Any]) -> dict[str, Any]:
    """Image-encoder forward (`get_image_embeddings`) of `model` ("sam", "msa", "msa-3d" with `depth`) on a
    batch of `batch` images (3-D: `batch` slices = batch/D volumes). Also reports analytic MACs."""
    device = torch.device(params["device"])
    memory = PeakMemory(device)
    memory.start()
    # "msa+fallback" encodes twice: the adapted encoder and the base's
    kind, depth = params["model"], params.get("depth") or 1
    model = build_model(kind, params["geometry"], params["size"], depth=depth).to(device).eval()
    pixels = torch.randn(params["batch"], 3, params["size"], params["size"], device=device)
    extra = {"num_slices": depth} if kind == "msa-3d" else {}
    encode = (
        torch.compile(model.get_image_embeddings) if params.get("compile") else model.get_image_embeddings
    )

    @torch.no_grad()
    def call():
        with _autocast(device, params["dtype"]):
            return encode(pixels, **extra)

    compile_s = _first_call_seconds(call, device) if params.get("compile") else None
    timing = time_calls(call, device, params["repeats"], params["warmup"])
    macs = params["batch"] * encoder_macs(
        params["geometry"], params["size"], adapters=kind != "sam", depth=depth if kind == "msa-3d" else None
    )
    if kind == "msa+fallback":  # the base's own pass beside the adapted one
        macs += params["batch"] * encoder_macs(params["geometry"], params["size"], adapters=False)
    row = _row(
        params, timing, memory.peak_bytes(), gmacs=macs / 1e9, images_per_s=params["batch"] / timing.median,
        compile_s=compile_s,
    )  # fmt: skip
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
        if peak and params["dtype"] == "bfloat16":
            row["mfu"] = 2 * macs / timing.median / peak
    return row


def _training_model(params: dict[str, Any]):
    """The model of `method` ("msa", "msa-3d", "lora", "full", "decoder") with only what trains requiring
    gradients, as train.py builds them (LoRA: rank 4 on qkv, decoder trained, as SAMed)."""
    method, geometry, size = params["method"], params["geometry"], params["size"]
    if method in ("msa", "msa-3d"):
        model = build_model(method, geometry, size, depth=params.get("depth") or 1, decoder_training="full")
        return model.mark_only_adapters_as_trainable()
    # as train.py builds them: every method trains with MSA's attention (no dense relative-position mask)
    model = fold_relative_position_attention(build_model("sam", geometry, size))
    if method == "full":
        return model.requires_grad_(True)
    model.requires_grad_(False)
    if method == "decoder":
        model.mask_decoder.requires_grad_(True)
        return model
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=4,
            lora_alpha=4,
            target_modules=r"vision_encoder\.layers\.\d+\.attn\.qkv",
            modules_to_save=["mask_decoder"],
        )
        return get_peft_model(model, lora)
    raise ValueError(f"unknown method {method!r}; choose msa, msa-3d, lora, full or decoder.")


def train_step(params: dict[str, Any]) -> dict[str, Any]:
    """One optimiser step (forward, Dice-free BCE on the low-res masks, backward, AdamW) of `method` on a batch
    of `batch` images (`msa-3d`: `batch` = D slices of one volume), with or without activation checkpointing;
    MSA with or without recomputing its frozen MLPs' hidden layer (`recompute_mlp`, default on); with
    `narrow_attention` False the folded attention takes its SDPA route (keeping the wide tensors).

    `retention` (MSA, 2-D) times what train.py's retention options add to a step: "distill", a
    self-distillation step (the base inside the model, adapters off, answers the step's prompts first and its
    masks are the targets: train.py's `--distill-probability` makes that share of steps such); "replay", a
    step whose first `REPLAY_SHARE` of rows are pictures of the base's synthetic data engine, drawn ahead of
    the step as train.py's loader workers draw them (`--replay-share`), so the row times mixing them in."""
    device = torch.device(params["device"])
    memory = PeakMemory(device)
    memory.start()
    model = _training_model(params).to(device).train()
    if params.get("checkpointing"):
        enable_activation_checkpointing(model)
    if params["method"] in ("msa", "msa-3d"):  # on by default; a row without shows what it trades
        set_frozen_mlp_recompute(model, params.get("recompute_mlp", True) is not False)
    if params.get("narrow_attention") is False:  # the SDPA route: what the narrow route saves
        for module in model.modules():
            if isinstance(module, SamVisionFoldedAttention):
                module.narrow_backward = False
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=1e-4)
    batch, size = params["batch"], params["size"]
    generator = torch.Generator(device=device).manual_seed(0)
    pixels = torch.randn(batch, 3, size, size, device=device, generator=generator)
    boxes = _boxes(batch, size, device)
    extra = {"num_slices": params["depth"]} if params["method"] == "msa-3d" else {}
    forward = torch.compile(model) if params.get("compile") else model
    retained = _retention(params, model, batch, size, device)

    def step():
        step_pixels, step_boxes, target = retained(pixels, boxes)
        with _autocast(device, params["dtype"]):
            logits = forward(
                pixel_values=step_pixels, input_boxes=step_boxes, multimask_output=False, **extra
            ).pred_masks
        if target is None:
            target = (torch.arange(logits.shape[-1], device=device) < logits.shape[-1] // 2).float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target.expand_as(logits))
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    compile_s = _first_call_seconds(step, device) if params.get("compile") else None
    timing = time_calls(step, device, params["repeats"], params["warmup"])
    peak = memory.peak_bytes()
    return _row(
        params, timing, peak, images_per_s=batch / timing.median,
        trainable_m=sum(p.numel() for p in trainable) / 1e6, compile_s=compile_s,
        allocated_mb=_allocated_mb(step, model, optimiser, (pixels, boxes), device, peak, params.get("compile")),
    )  # fmt: skip


REPLAY_SHARE = 0.25  # the docs' replay setting (--replay-share 0.25)


def _retention(params: dict[str, Any], model, batch: int, size: int, device: torch.device):
    """`(pixels, boxes) -> (pixels, boxes, low-res target or None)` for one step of `params["retention"]`
    (None: the step's own inputs and the fixed target)."""
    retention = params.get("retention")
    if retention is None:
        return lambda pixels, boxes: (pixels, boxes, None)
    if params["method"] != "msa":
        raise ValueError(f"retention={retention!r} is timed for method 'msa' (2-D) only.")
    if retention == "distill":
        from msa_hf.training.retention import BaseTeacher

        teacher = BaseTeacher(model)  # before the first step, as train.py makes it

        def distilled(pixels, boxes):
            with _autocast(device, params["dtype"]):
                masks = teacher(pixels, input_boxes=boxes)  # (B, 1, 1, h, w) logits of the base
            return pixels, boxes, (masks > 0).float()

        return distilled
    if retention == "replay":
        import itertools

        from msa_hf.training.retention import (
            ReplayDraws,
            SyntheticReplay,
            mix_replayed_rows,
            replayed_row_count,
        )

        # drawn before the timing, as train.py's loader workers draw them ahead of the step (on a GPU a
        # picture costs about as much CPU as the step itself); the step mixes them into its batch
        draws = ReplayDraws(SyntheticReplay(size), replayed_row_count(batch, REPLAY_SHARE), 1, seed=0)
        drawn = itertools.cycle([draws[index] for index in range(4)])
        points = torch.full((batch, 1, 1, 2), size / 2, device=device)
        rows = {"input_points": points, "input_labels": torch.ones(batch, 1, 1, device=device).long(),
                "labels": torch.zeros(batch, 1, size, size, device=device)}  # fmt: skip

        def replayed(pixels, boxes):
            mixed = mix_replayed_rows({**rows, "pixel_values": pixels, "input_boxes": boxes}, next(drawn))
            return mixed["pixel_values"], mixed["input_boxes"], None

        return replayed
    raise ValueError(f"unknown retention {retention!r}; choose distill or replay.")


def _allocated_mb(
    step, model, optimiser, inputs, device: torch.device, cuda_peak: int, compiled: bool | None
) -> float | None:
    """Peak MiB of live tensors over one more `step` (CUDA: `max_memory_allocated`, already measured).

    The optimiser state exists by now (the timed steps made it), so the step starts from the steady state.
    None for compiled CPU steps: a Python dispatch mode would see the compiled graph, not the eager ops.
    """
    if device.type == "cuda":
        return cuda_peak / 2**20
    if compiled:
        return None
    state = [v for s in optimiser.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    alive = [*model.parameters(), *model.buffers(), *state, *inputs]
    with LiveTensorBytes(alive) as live:
        step()
    return live.peak / 2**20


def decoder_click(params: dict[str, Any]) -> dict[str, Any]:
    """One click with a cached image embedding: prompt encoder + mask decoder of `model` ("sam", "msa" with
    its decoder adapters, or "msa+fallback": both decoders and the choice between them), one mask or three
    (`multimask`); `fast` decodes with `msa_hf.inference.click_decoder`. On CPU
    the process keeps freed memory (`keep_freed_memory`), as the demo and `msa-hf predict` do."""
    device = torch.device(params["device"])
    if (
        device.type == "cpu"
    ):  # as msa-hf predict and the demo run (msa_hf.inference.cpu_memory); for both decoders
        from msa_hf.inference.cpu_memory import keep_freed_memory

        keep_freed_memory()
    memory = PeakMemory(device)
    memory.start()
    model = build_model(params["model"], params["geometry"], params["size"]).to(device).eval()
    grid = model.config.vision_config.image_size // model.config.vision_config.patch_size
    channels = model.config.vision_config.output_channels
    if params["model"] == "msa+fallback":  # the adapted and the base embedding, each prompt decoded by both
        channels *= 2
    embedding = torch.randn(1, channels, grid, grid, device=device)
    points = torch.tensor([[[[0.4 * params["size"], 0.5 * params["size"]]]]], device=device)
    labels = torch.ones(1, 1, 1, dtype=torch.long, device=device)

    if params.get("fast"):  # what msa_hf's predictor and demo use
        from msa_hf.inference.click_decoder import click_decoder_for

        decoder = click_decoder_for(model)  # a fallback model's decodes with both of its decoders
        decoder.set_image_embedding(embedding)

        def click():
            with _autocast(device, params["dtype"]):
                return decoder(input_points=points, input_labels=labels, multimask_output=params["multimask"])

    else:

        @torch.no_grad()
        def click():
            with _autocast(device, params["dtype"]):
                return model(
                    image_embeddings=embedding, input_points=points, input_labels=labels,
                    multimask_output=params["multimask"],
                )  # fmt: skip

    timing = time_calls(click, device, params["repeats"], params["warmup"])
    return _row(params, timing, memory.peak_bytes())


CASES = {"encoder_forward": encoder_forward, "train_step": train_step, "decoder_click": decoder_click}


def run_in_child(case: str, params: dict[str, Any], results: Any) -> None:
    """Run one case in a forked child (`run.run_case_forked`) and send `("ok", row JSON)` through the
    connection `results`, or `("error", "Type: message", traceback)` where it raised."""
    import json
    import traceback

    try:
        results.send(("ok", json.dumps(CASES[case](params))))
    except BaseException as error:  # noqa: BLE001 - every failure is the case's, reported by the parent
        results.send(("error", f"{type(error).__name__}: {error}", traceback.format_exc()))
