"""msa-hf export-onnx: the decoder graph is SAM's ONNX interface over the model's own prompt encoder and
adapted decoder (equal to the model's forward for clicks, boxes and mask prompts), and onnxruntime on the CPU
matches PyTorch within 1e-3 on mask logits, for the shipped base and for an adapted model, 2-D and 3-D."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from msa_hf import SamAdapterConfig, SamAdapterModel  # noqa: E402
from msa_hf.inference.onnx_export import PromptDecoderGraph, export_onnx  # noqa: E402
from msa_hf.testing import randomize_adapter_weights, randomize_weights, tiny_sam_kwargs  # noqa: E402


def _adapted(**config) -> SamAdapterModel:
    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs(), **config)).eval()
    randomize_weights(model, seed=0, std=0.1)
    randomize_adapter_weights(model, seed=1)  # adapters that change the output, so a graph without them fails
    return model


def test_the_decoder_graph_is_the_models_own_forward_for_clicks_boxes_and_masks():
    model = _adapted()
    size = model.config.vision_config.image_size
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        embeddings = model.get_image_embeddings(pixels)
    graph = PromptDecoderGraph(model)
    h, w = embeddings.shape[-2:]
    clicks = torch.tensor([[[10.0, 20.0], [40.0, 33.0]]])
    box = torch.tensor([[[8.0, 9.0, 50.0, 44.0]]])
    mask = torch.randn(1, 1, 4 * h, 4 * w, generator=torch.Generator().manual_seed(3))
    cases = [  # (graph coords and labels, model prompts)
        (torch.cat([clicks, torch.zeros(1, 1, 2)], 1), torch.tensor([[1.0, 0.0, -1.0]]),
         {"input_points": clicks[:, None], "input_labels": torch.tensor([[[1, 0]]])}),
        (box.reshape(1, 2, 2), torch.tensor([[2.0, 3.0]]), {"input_boxes": box}),
        (torch.cat([clicks[:, :1], box.reshape(1, 2, 2)], 1), torch.tensor([[1.0, 2.0, 3.0]]),
         {"input_points": clicks[:, None, :1], "input_labels": torch.tensor([[[1]]]), "input_boxes": box}),
    ]  # fmt: skip
    for coords, labels, prompts in cases:
        for with_mask in (False, True):
            extra = {"input_masks": mask} if with_mask else {}
            with torch.no_grad():
                expected = model(image_embeddings=embeddings, multimask_output=True, **prompts, **extra)
                masks, scores = graph(
                    embeddings, coords, labels, mask, torch.ones(1) if with_mask else torch.zeros(1)
                )
            torch.testing.assert_close(masks, expected.pred_masks[:, 0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(scores, expected.iou_scores[:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["shipped base", "adapted", "adapted 3-D"])
def test_onnxruntime_matches_pytorch(kind, tmp_path):
    if kind == "shipped base":
        from msa_hf.inference.loading import load_for_inference

        model, _ = load_for_inference("tiny")
    else:
        model = _adapted(use_depth_branch=kind == "adapted 3-D", num_slices=2)
    report = export_onnx(model, tmp_path)
    assert (tmp_path / "image_encoder.onnx").is_file() and (tmp_path / "prompt_decoder.onnx").is_file()
    assert json.loads((tmp_path / "onnx_export.json").read_text())["check"] == report["check"]
    assert report["slices_per_window"] == (2 if kind == "adapted 3-D" else 1)
    checked = report["check"]
    assert {"masks (1 clicks)", "masks (5 clicks)", "masks (box)", "masks (box + mask)"} <= set(checked)
    assert all(value < 1e-3 for value in checked.values()), checked


def test_the_command_exports_and_refuses_to_overwrite(tiny_base, tmp_path, capsys):
    from msa_hf.cli import main

    assert main(["export-onnx", str(tiny_base), "--output-dir", str(tmp_path / "onnx")]) == 0
    printed = capsys.readouterr().out
    assert "prompt_decoder.onnx" in printed and "onnxruntime vs PyTorch" in printed
    assert main(["export-onnx", str(tiny_base), "--output-dir", str(tmp_path / "onnx")]) != 0
    assert "pass --overwrite" in capsys.readouterr().err
    import onnx

    graph = onnx.load(str(tmp_path / "onnx" / "prompt_decoder.onnx")).graph
    coords = next(i for i in graph.input if i.name == "point_coords")
    assert coords.type.tensor_type.shape.dim[1].dim_param == "points"  # any number of points
    assert np.isfinite(
        json.loads((tmp_path / "onnx" / "onnx_export.json").read_text())["check"]["image_embeddings"]
    )
