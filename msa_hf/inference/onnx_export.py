# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""ONNX export: `msa-hf export-onnx MODEL OUT` writes the image encoder and the prompt decoder as two graphs.

As segment-anything's own export does, the expensive encoder runs once per image (on a server, or in the
browser with onnxruntime-web) and the small decoder runs per click:

- `image_encoder.onnx`: `pixel_values` `(B, 3, S, S)` (SAM-normalised, resized and padded as `MsaProcessor`
  does) -> `image_embeddings` `(B, C, h, w)`; the MSA adapters inside. A model with the depth branch takes a
  window of its D consecutive slices, `(D, 3, S, S)`, and gives D embeddings.
- `prompt_decoder.onnx`: `image_embeddings` `(1, C, h, w)`, `point_coords` `(1, N, 2)` (x, y in the model
  frame), `point_labels` `(1, N)`, `mask_input` `(1, 1, 4h, 4w)`, `has_mask_input` `(1,)` -> `masks`
  `(1, 3, 4h, 4w)` low-resolution logits and `iou_predictions` `(1, 3)`. N is dynamic. Labels follow SAM's
  ONNX convention: 1 positive click, 0 negative click, 2 and 3 a box's top-left and bottom-right corners,
  -1 padding (add one padding point `(0, 0)` with label -1 when there is no box, as SAM's prompt encoder
  does). The decoder adapters are inside; the prompt-conditioned one reads the same tokens.

Two exporters of torch write the graphs. `torch.export` (the default from torch 2.9, where torch made it its
own default; it needs onnxscript) captures the model with `torch.export` and writes opset 18; `torchscript`,
torch's older tracer, writes opset 17 and is the only one before torch 2.9. A graph of over 2 GB of weights
(ViT-H's encoder) keeps them beside it as `<graph>.onnx.data`, as protobuf requires.

`export_onnx` checks both graphs with onnxruntime against PyTorch before it returns (when onnxruntime is
installed), and writes `onnx_export.json` with the exporter, the shapes, the labels convention and the
largest differences.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from msa_hf.inference.placement import torch_is_at_least

ENCODER_FILE = "image_encoder.onnx"
DECODER_FILE = "prompt_decoder.onnx"
EXPORTERS = ("torch.export", "torchscript")
# the first torch whose `torch.onnx.export` captures with torch.export by default
TORCH_EXPORT_NEEDS_TORCH = "2.9"
# the opset each exporter writes: torch.export's translation starts at 18 (asked for 17, torch 2.13 still
# writes SAM's graphs at 18); the tracer's graphs have been checked at 17
OPSETS = {"torch.export": 18, "torchscript": 17}
# protobuf's limit on one file; a graph with more weights keeps them in a `.data` file beside it
LARGE_GRAPH_BYTES = 2 * 1024**3 - 64 * 1024**2


class ImageEncoderGraph(nn.Module):
    """`pixel_values` -> `image_embeddings`, with the depth branch's window of `num_slices` when it has one."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.num_slices = (
            model.config.num_slices if getattr(model.config, "use_depth_branch", False) else None
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.num_slices is None:
            return self.model.get_image_embeddings(pixel_values)
        return self.model.get_image_embeddings(pixel_values, num_slices=self.num_slices)


class PromptDecoderGraph(nn.Module):
    """SAM's ONNX decoder interface over the model's prompt encoder and (adapted) mask decoder."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`(1, N, 2)` coords and `(1, N)` labels (-1, 0, 1, 2, 3) -> sparse tokens `(1, 1, N, C)`, as the
        prompt encoder embeds points (labels 0/1) and box corners (2/3): position + the label's embedding."""
        encoder = self.model.prompt_encoder
        size = encoder.input_image_size
        embedding = encoder.shared_embedding((coords + 0.5)[:, None], (size, size))
        labels = labels[:, None, :, None]
        embedding = torch.where(labels == -1, encoder.not_a_point_embed.weight, embedding)
        for value in range(4):
            embedding = embedding + (labels == value) * encoder.point_embed[value].weight
        return embedding

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.model.prompt_encoder
        sparse = self.embed_points(point_coords, point_labels)
        height, width = image_embeddings.shape[-2:]
        no_mask = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, height, width)
        dense = (
            has_mask_input.reshape(1, 1, 1, 1) * encoder.mask_embed(mask_input)
            + (1 - has_mask_input.reshape(1, 1, 1, 1)) * no_mask
        )
        positions = self.model.get_image_wide_positional_embeddings()
        masks, iou = self.model.mask_decoder(
            image_embeddings=image_embeddings, image_positional_embeddings=positions,
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True,
        )  # fmt: skip
        return masks[:, 0], iou[:, 0]


def _example_inputs(model: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    vision = model.config.vision_config
    depth = model.config.num_slices if getattr(model.config, "use_depth_branch", False) else 1
    pixels = torch.randn(
        depth, 3, vision.image_size, vision.image_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        embeddings = model.get_image_embeddings(pixels, **({"num_slices": depth} if depth > 1 else {}))[:1]
    height, width = embeddings.shape[-2:]
    size = vision.image_size
    decoder = {
        "image_embeddings": embeddings,
        "point_coords": torch.tensor([[[0.3 * size, 0.4 * size], [0.6 * size, 0.5 * size], [0.0, 0.0]]]),
        "point_labels": torch.tensor([[1.0, 0.0, -1.0]]),
        "mask_input": torch.zeros(1, 1, 4 * height, 4 * width),
        "has_mask_input": torch.zeros(1),
    }
    return pixels, decoder


def resolve_exporter(exporter: str = "auto") -> str:
    """The exporter `export_onnx` uses: `torch.export` from torch `TORCH_EXPORT_NEEDS_TORCH` where onnxscript
    is installed, else `torchscript` (`"auto"`); a named one is checked.

    Raises:
        ValueError: an unknown name, or `torch.export` on an older torch or without onnxscript.
    """
    if exporter == "auto":
        usable = (
            torch_is_at_least(TORCH_EXPORT_NEEDS_TORCH) and importlib.util.find_spec("onnxscript") is not None
        )
        return "torch.export" if usable else "torchscript"
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter {exporter!r}: choose one of {', '.join(EXPORTERS)} (or auto).")
    if exporter == "torch.export":
        if not torch_is_at_least(TORCH_EXPORT_NEEDS_TORCH):
            raise ValueError(
                f"the torch.export exporter needs torch {TORCH_EXPORT_NEEDS_TORCH} or newer (this is "
                f"{torch.__version__}); upgrade torch, or export with --exporter torchscript."
            )
        if importlib.util.find_spec("onnxscript") is None:
            raise ValueError(
                'the torch.export exporter needs onnxscript: pip install "msa_hf[onnx]", or export with '
                "--exporter torchscript."
            )
    return exporter


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence what the exporters say that a user cannot act on: the tracer's warnings about Python values
    it records as constants (the shapes an export fixes on purpose), torch's notice that the tracer is the
    older exporter (chosen only where asked for or where torch.export is missing), and torch.export's
    notes on torchvision ops it skips (SAM uses none) and on an axis name two inputs share (the clicks'
    coordinates and labels: one axis, named as asked)."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings(
                "ignore", message="You are using the legacy TorchScript-based ONNX export"
            )
            warnings.filterwarnings(
                "ignore", message=".*isinstance\\(treespec, LeafSpec\\)", category=FutureWarning
            )
            warnings.filterwarnings("ignore", message="# The axis name: .* will not be used")
            yield
    finally:
        registration.setLevel(level)


def _write_graph(
    exporter: str,
    graph: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    output: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic: dict[str, dict[int, str]],
) -> None:
    """Export `graph` called on `inputs` to `output` (written whole or not at all), with the named inputs'
    axes in `dynamic` (`{input name: {axis: axis name}}`, output axes following) left free."""
    from msa_hf.output_files import atomic_file

    graph.eval()  # torch.export warns about a wrapper left in training mode (the model inside is in eval)
    if exporter == "torchscript":
        axes = dict(dynamic)
        if "pixel_values" in dynamic:
            axes["image_embeddings"] = dynamic["pixel_values"]
        with torch.no_grad(), _quiet_export(), atomic_file(output) as staging:
            torch.onnx.export(
                graph, inputs, str(staging), input_names=input_names, output_names=output_names,
                opset_version=OPSETS[exporter], dynamo=False, dynamic_axes=axes or None,
            )  # fmt: skip
        return
    # torch.export fixes an axis whose example is 1 (it cannot tell it from a broadcast), so a free batch is
    # traced on an example of two
    if "pixel_values" in dynamic and inputs[0].shape[0] == 1:
        inputs = (inputs[0].expand(2, -1, -1, -1).contiguous(), *inputs[1:])
    dims = {name: torch.export.Dim(name, min=1) for axes in dynamic.values() for name in axes.values()}
    shapes = tuple(
        {axis: dims[name] for axis, name in dynamic.get(input_name, {}).items()} or None
        for input_name in input_names
    )
    with torch.no_grad(), _quiet_export():
        program = torch.onnx.export(
            graph, inputs, None, input_names=input_names, output_names=output_names,
            opset_version=OPSETS[exporter], dynamo=True, dynamic_shapes=shapes, verbose=False,
        )  # fmt: skip
    import onnx_ir

    weight_bytes = sum(value.const_value.nbytes for value in program.model.graph.initializers.values())
    # the weights file is named after the graph's own name, not the staging file's, so it resolves after
    # the rename
    external = f"{output.name}.data" if weight_bytes > LARGE_GRAPH_BYTES else None
    with atomic_file(output) as staging:
        onnx_ir.save(program.model, staging, external_data=external)


def export_onnx(
    model: Any, output_dir: str | Path, check: bool = True, exporter: str = "auto"
) -> dict[str, Any]:
    """Write `image_encoder.onnx` and `prompt_decoder.onnx` for `model` (a `SamAdapterModel` or a `SamModel`,
    on the CPU, float32) into `output_dir` with `exporter` (`resolve_exporter`), check them with onnxruntime
    when `check`, and return the report also written as `onnx_export.json`."""
    from msa_hf.modeling.base_fallback import has_base_fallback

    exporter = resolve_exporter(exporter)
    if has_base_fallback(model):
        raise ValueError(
            "this model answers with its base where the adapted answer ignores the prompt (base_fallback): two "
            "encoders' embeddings and two decoders, which the two ONNX graphs do not carry. Export the adapted "
            "model alone: load it with SamAdapterModel.from_pretrained(MODEL, base_fallback=False) (the "
            "base's decoder weights are then left out) and export that."
        )
    model = model.float().cpu().eval()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pixels, decoder_inputs = _example_inputs(model)
    # a depth-branch model's encoder takes exactly its window of slices; any other takes any batch
    _write_graph(
        exporter, ImageEncoderGraph(model), (pixels,), output_dir / ENCODER_FILE, ["pixel_values"],
        ["image_embeddings"], {} if pixels.shape[0] > 1 else {"pixel_values": {0: "batch"}},
    )  # fmt: skip
    _write_graph(
        exporter, PromptDecoderGraph(model), tuple(decoder_inputs.values()), output_dir / DECODER_FILE,
        list(decoder_inputs), ["masks", "iou_predictions"],
        {"point_coords": {1: "points"}, "point_labels": {1: "points"}},
    )  # fmt: skip
    report: dict[str, Any] = {
        "exporter": exporter,
        "encoder": ENCODER_FILE,
        "decoder": DECODER_FILE,
        "image_size": model.config.vision_config.image_size,
        "slices_per_window": int(pixels.shape[0]),
        "image_embeddings": list(decoder_inputs["image_embeddings"].shape),
        "point_labels": {
            "1": "positive click",
            "0": "negative click",
            "2": "box top-left",
            "3": "box bottom-right",
            "-1": "padding (add one when there is no box)",
        },  # fmt: skip
        "opset": OPSETS[exporter],
    }
    if check:
        report["check"] = check_onnx(model, output_dir)
    (output_dir / "onnx_export.json").write_text(json.dumps(report, indent=2))
    return report


def check_onnx(
    model: Any, output_dir: str | Path, point_counts: tuple[int, ...] = (1, 2, 5)
) -> dict[str, float]:
    """The largest absolute differences between onnxruntime on the CPU and PyTorch: image embeddings (of one
    image and, where the batch is free, of two), and mask logits and scores of the decoder for several point
    counts, a box, and a mask prompt."""
    import onnxruntime

    output_dir = Path(output_dir)
    pixels, inputs = _example_inputs(model)
    encoder = onnxruntime.InferenceSession(str(output_dir / ENCODER_FILE), providers=["CPUExecutionProvider"])
    decoder = onnxruntime.InferenceSession(str(output_dir / DECODER_FILE), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = ImageEncoderGraph(model)(pixels)
    embeddings = encoder.run(None, {"pixel_values": pixels.numpy()})[0]
    differences = {"image_embeddings": float(np.abs(embeddings - expected.numpy()).max())}
    # the batch axis is free: two images too (with one, each exporter meets a batch other than the one it
    # traced; two, not more, keeps ViT-B's check within a laptop's memory)
    if pixels.shape[0] == 1:
        batch = torch.randn((2, *pixels.shape[1:]), generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            expected = ImageEncoderGraph(model)(batch)
        embeddings = encoder.run(None, {"pixel_values": batch.numpy()})[0]
        differences["image_embeddings (batch of 2)"] = float(np.abs(embeddings - expected.numpy()).max())
    rng = np.random.default_rng(0)
    size = model.config.vision_config.image_size
    cases = []
    for count in point_counts:
        coords = rng.uniform(0, size - 1, (1, count, 2)).astype(np.float32)
        labels = rng.integers(0, 2, (1, count)).astype(np.float32)
        cases.append((f"{count} clicks", np.concatenate([coords, np.zeros((1, 1, 2), np.float32)], 1),
                      np.concatenate([labels, -np.ones((1, 1), np.float32)], 1)))  # fmt: skip
    box = np.array([[[0.2 * size, 0.25 * size], [0.7 * size, 0.8 * size]]], np.float32)
    cases.append(("box", box, np.array([[2.0, 3.0]], np.float32)))
    graph = PromptDecoderGraph(model)
    for name, coords, labels in cases:
        for with_mask in (False, True):
            feed = dict(inputs, point_coords=torch.from_numpy(coords), point_labels=torch.from_numpy(labels))
            if with_mask:
                feed["mask_input"] = torch.randn(
                    feed["mask_input"].shape, generator=torch.Generator().manual_seed(1)
                )
                feed["has_mask_input"] = torch.ones(1)
            with torch.no_grad():
                masks, scores = graph(*feed.values())
            got = decoder.run(None, {key: value.numpy() for key, value in feed.items()})
            key = f"{name}{' + mask' if with_mask else ''}"
            differences[f"masks ({key})"] = float(np.abs(got[0] - masks.numpy()).max())
            differences[f"scores ({key})"] = float(np.abs(got[1] - scores.numpy()).max())
    return differences
