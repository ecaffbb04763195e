"""msa-hf export-onnx: the decoder graph is SAM's ONNX interface over the model's own prompt encoder and
adapted decoder (equal to the model's forward for clicks, boxes and mask prompts), and onnxruntime on the CPU
matches PyTorch within 1e-3 on mask logits, for the shipped base and for an adapted model, 2-D and 3-D, with
either of torch's exporters (torch.export's runs take 15-25 s each, so they are training-run tests)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from msa_hf import SamAdapterConfig, SamAdapterModel  # noqa: E402
from msa_hf.inference import onnx_export  # noqa: E402
from msa_hf.inference.onnx_export import PromptDecoderGraph, export_onnx, resolve_exporter  # noqa: E402
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


def _model(kind: str):
    if kind == "shipped base":
        from msa_hf.inference.loading import load_for_inference

        return load_for_inference("tiny")[0]
    return _adapted(use_depth_branch=kind == "adapted 3-D", num_slices=2)


def _check_export(report: dict, folder, kind: str, exporter: str) -> None:
    import onnx

    assert (folder / "image_encoder.onnx").is_file() and (folder / "prompt_decoder.onnx").is_file()
    assert json.loads((folder / "onnx_export.json").read_text())["check"] == report["check"]
    assert report["slices_per_window"] == (2 if kind == "adapted 3-D" else 1)
    assert report["exporter"] == exporter
    for name in ("image_encoder.onnx", "prompt_decoder.onnx"):
        (opset,) = [
            o.version
            for o in onnx.load(str(folder / name), load_external_data=False).opset_import
            if not o.domain
        ]
        assert opset == report["opset"] == {"torch.export": 18, "torchscript": 17}[exporter]
    checked = report["check"]
    assert {"masks (1 clicks)", "masks (5 clicks)", "masks (box)", "masks (box + mask)"} <= set(checked)
    # a 2-D encoder takes any batch; a depth-branch one exactly its window
    assert ("image_embeddings (batch of 2)" in checked) == (kind != "adapted 3-D")
    assert all(value < 1e-3 for value in checked.values()), checked
    assert (
        sorted(path.name for path in folder.iterdir() if path.name.startswith(".")) == []
    )  # no staging left


@pytest.mark.parametrize("kind", ["shipped base", "adapted", "adapted 3-D"])
def test_onnxruntime_matches_pytorch_through_the_tracer(kind, tmp_path):
    model = _model(kind)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = export_onnx(model, tmp_path, exporter="torchscript")
    _check_export(report, tmp_path, kind, "torchscript")
    # the tracer's notes on constants it records, and torch's notice about the older exporter, are not shown
    said = [f"{w.category.__name__}: {w.message}" for w in caught]
    assert not [m for m in said if "TracerWarning" in m or "legacy TorchScript" in m], said


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["adapted", "adapted 3-D"])
def test_onnxruntime_matches_pytorch_through_torch_export(kind, tmp_path, monkeypatch, caplog):
    model = _model(kind)
    if kind == "adapted 3-D":  # the weights beside the graph, as for a graph over protobuf's 2 GB (ViT-H)
        monkeypatch.setattr(onnx_export, "LARGE_GRAPH_BYTES", 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = export_onnx(model, tmp_path, exporter="torch.export")
    _check_export(report, tmp_path, kind, "torch.export")
    said = [str(w.message) for w in caught] + [record.getMessage() for record in caplog.records]
    assert not [m for m in said if "training mode" in m or "axis name" in m or "torchvision" in m], said
    weights_files = sorted(path.name for path in tmp_path.glob("*.data"))
    if kind == "adapted 3-D":  # named after the graph, not after the staging file it was written as
        assert weights_files == ["image_encoder.onnx.data", "prompt_decoder.onnx.data"]
    else:
        assert weights_files == []


def test_the_exporter_is_torch_export_where_it_can_run(monkeypatch):
    import importlib.util

    pytest.importorskip("onnxscript")
    monkeypatch.setattr(torch, "__version__", "2.9.0")  # the first torch whose own default it is
    assert resolve_exporter() == "torch.export"
    assert resolve_exporter("torchscript") == "torchscript"
    with pytest.raises(ValueError, match="choose one of torch.export, torchscript"):
        resolve_exporter("dynamo")
    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "onnxscript" else found(name)
    )
    assert resolve_exporter() == "torchscript"
    with pytest.raises(ValueError, match=r'needs onnxscript: pip install "msa_hf\[onnx\]"'):
        resolve_exporter("torch.export")
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "2.8.1+cpu")
    assert resolve_exporter() == "torchscript"
    with pytest.raises(ValueError, match="needs torch 2.9 or newer .* --exporter torchscript"):
        resolve_exporter("torch.export")


def test_the_command_exports_and_refuses_to_overwrite(tiny_base, tmp_path, capsys):
    from msa_hf.cli import main

    command = [
        "export-onnx",
        str(tiny_base),
        "--output-dir",
        str(tmp_path / "onnx"),
        "--exporter",
        "torchscript",
    ]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "prompt_decoder.onnx" in printed and "onnxruntime vs PyTorch" in printed
    assert "(torchscript, opset 17)" in printed
    assert main(command) != 0
    assert "pass --overwrite" in capsys.readouterr().err
    import onnx

    graph = onnx.load(str(tmp_path / "onnx" / "prompt_decoder.onnx")).graph
    coords = next(i for i in graph.input if i.name == "point_coords")
    assert coords.type.tensor_type.shape.dim[1].dim_param == "points"  # any number of points
    assert np.isfinite(
        json.loads((tmp_path / "onnx" / "onnx_export.json").read_text())["check"]["image_embeddings"]
    )
