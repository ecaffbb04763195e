"""Exporting a pretraining run as the shipped base: only through a passed gate, loadable by name."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import SamModel, SamProcessor

from msa_hf import SamAdapterModel
from msa_hf.base_model.pretraining import PretrainingConfig, pretrain_base
from msa_hf.base_model.shipped import export_base


def _gate(passed: bool) -> dict:
    synthetic = {"box": 0.9, "points1": 0.7, "points3": 0.8, "iterative": 0.8, "box_fill": 0.7}
    mri = {
        "training": {"steps": 3},
        "seeds": [0, 1],
        "pretrained": {"box": 0.4, "points1": 0.8},
        "random_init": {"box": 0.38, "points1": 0.5},
        "box_overlap": {"csf/grey_matter": 0.946, "csf/white_matter": 0.491},
        "box_fill": 0.6,
        "classes": {
            "csf": {"pretrained": {"points1": 0.7}, "random_init": {"points1": 0.4}, "box_fill": 0.1},
            "grey_matter": {
                "pretrained": {"points1": 0.9},
                "random_init": {"points1": 0.6},
                "box_fill": 0.65,
            },
        },
    }
    return {"synthetic": synthetic, "mri": mri, "verdict": {"all": passed}, "passed": passed}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    config = PretrainingConfig(
        total_images=16, batch_size=8, warmup_steps=1, eval_every=2, eval_samples=4, num_workers=0
    )
    pretrain_base(run, config)
    return run


def test_export_refuses_a_run_without_a_passed_gate(tiny_run, tmp_path):
    with pytest.raises(ValueError, match="base-gate"):
        export_base(tiny_run, tmp_path / "base")
    (tiny_run / "final" / "gate.json").write_text(json.dumps(_gate(False)))
    with pytest.raises(ValueError, match="failed its acceptance gate"):
        export_base(tiny_run, tmp_path / "base")
    assert not (tmp_path / "base").exists()


def test_exported_base_loads_into_sam_and_msa_with_equal_outputs(tiny_run, tmp_path):
    (tiny_run / "final" / "gate.json").write_text(json.dumps(_gate(True)))
    folder = export_base(tiny_run, tmp_path / "base", gate_history="The gate changed once, for a reason.")
    card = (folder / "README.md").read_text()
    assert (
        "| synthetic Dice, box | 0.900 | >= 0.85 |" in card
        and "pretrain-base --output-dir runs/base --total-images 16" in card
        and "over 2 seeds | 0.800 | >= random init + 0.05 |" in card
        and "| grey matter | 0.900 | 0.600 | 0.650 |" in card
        and "this base / random init | 0.400 / 0.380 |" in card
        and "as a user adapts SAM to one organ. The gate changed once, for a reason." in card
    )
    processor = SamProcessor.from_pretrained(folder)
    assert processor.image_processor.size["longest_edge"] == 128
    sam = SamModel.from_pretrained(folder).eval()
    msa = SamAdapterModel.from_pretrained(folder).eval()
    pixel_values = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    points = torch.tensor([[[[40.0, 50.0]]], [[[90.0, 20.0]]]])
    labels = torch.ones(2, 1, 1, dtype=torch.long)
    with torch.no_grad():
        expected = sam(pixel_values=pixel_values, input_points=points, input_labels=labels).pred_masks
        actual = msa(pixel_values=pixel_values, input_points=points, input_labels=labels).pred_masks
    assert torch.allclose(actual, expected, atol=1e-5) and expected.abs().max() > 0
