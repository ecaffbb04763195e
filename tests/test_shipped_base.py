"""The shipped small base (`msa_hf.TINY_BASE`): it loads as SAM and as MSA with equal outputs, passed its
gate, and segments fresh synthetic samples at the gate's level where a random-init twin of it does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import SamModel, SamProcessor

from msa_hf import TINY_BASE, SamAdapterModel
from msa_hf.base_model.gate import SYNTHETIC_GATE
from msa_hf.base_model.pretraining import (
    evaluate_prompted_segmentation,
    held_out_set,
    initialise_from_scratch,
)


@pytest.fixture(scope="module")
def fresh_samples():
    # seed 7: neither the training stream (seed 0) nor the gate's held-out set (seed 1)
    return held_out_set(200, seed=7)


def test_the_base_ships_with_its_gate_card_and_processor():
    folder = Path(TINY_BASE)
    gate = json.loads((folder / "gate.json").read_text())
    assert gate["passed"] and all(gate["verdict"].values())
    card = (folder / "README.md").read_text()
    assert f"| synthetic Dice, box | {gate['synthetic']['box']:.3f} | >= 0.85 |" in card
    processor = SamProcessor.from_pretrained(folder)
    assert processor.image_processor.size["longest_edge"] == 128


def test_sam_and_msa_load_the_base_with_equal_outputs():
    sam = SamModel.from_pretrained(TINY_BASE).eval()
    msa = SamAdapterModel.from_pretrained(TINY_BASE).eval()
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(2, 3, 128, 128, generator=generator)
    boxes = torch.tensor([[[20.0, 30.0, 90.0, 100.0]], [[5.0, 5.0, 60.0, 40.0]]])
    with torch.no_grad():
        expected = sam(pixel_values=pixel_values, input_boxes=boxes, multimask_output=False)
        actual = msa(pixel_values=pixel_values, input_boxes=boxes, multimask_output=False)
    assert torch.allclose(actual.pred_masks, expected.pred_masks, atol=1e-5)
    assert torch.allclose(actual.iou_scores, expected.iou_scores, atol=1e-5)
    # trained weights, not the near-zero default init: the embeddings carry signal
    embedding = sam.get_image_embeddings(pixel_values)
    assert embedding.std() > 0.1 and not torch.allclose(embedding[0], embedding[1], atol=1e-2)


def test_the_base_segments_fresh_synthetic_samples_and_a_random_twin_does_not(fresh_samples):
    images, masks = fresh_samples
    base = SamModel.from_pretrained(TINY_BASE)
    scores = evaluate_prompted_segmentation(base, images, masks)
    assert scores["box"] >= SYNTHETIC_GATE["box"] and scores["points1"] >= SYNTHETIC_GATE["points1"]
    assert scores["box"] > scores["box_fill"] + 0.1
    twin = initialise_from_scratch(SamModel(base.config), seed=0)
    twin_scores = evaluate_prompted_segmentation(twin, images, masks)
    assert twin_scores["box"] < scores["box_fill"] and twin_scores["points1"] < SYNTHETIC_GATE["points1"]


@pytest.mark.slow
def test_msa_on_the_base_learns_a_tissue_that_a_random_twin_barely_does(tmp_path):
    """The realistic base for a learning check: MSA adapters on it, 70 steps on the embedded MRI's CSF (a
    thin structure a click alone cannot outline), beat the base's zero-shot Dice and the same budget on a
    random-init twin, each by a stated margin. (Over training seeds 0, 1 and 2 the margins were 0.16, 0.18
    and 0.19 over zero-shot, 0.24, 0.27 and 0.27 over the twin; 100 steps gave 0.20-0.25 and 0.29-0.34
    in 40% more time.)"""
    from msa_hf import SamAdapterConfig
    from msa_hf.base_model.gate import mri_gate_tasks
    from msa_hf.data import build_mni152_tissue_dataset, read_class_names
    from msa_hf.training.prompted import AdapterTrainingConfig, evaluate_prompts, train_adapters

    build_mni152_tissue_dataset(tmp_path / "mni")
    csf = next(value for value, name in read_class_names(tmp_path / "mni").items() if name == "csf")
    train = mri_gate_tasks(tmp_path / "mni", 128, "train", train=True, class_id=csf)
    test = mri_gate_tasks(tmp_path / "mni", 128, "test", train=False, class_id=csf)
    training = AdapterTrainingConfig(steps=70)
    scores = {}
    for name in ("zero-shot", "adapted", "random twin"):
        if name == "random twin":
            model = initialise_from_scratch(
                SamAdapterModel(SamAdapterConfig.from_pretrained(TINY_BASE)), seed=0
            )
        else:
            model = SamAdapterModel.from_pretrained(TINY_BASE)
        if name != "zero-shot":
            torch.manual_seed(0)
            train_adapters(model.mark_only_adapters_as_trainable(), train, training)
        scores[name] = evaluate_prompts(model, test, ("points1",))["points1"]["dice"]
    assert scores["adapted"] > scores["zero-shot"] + 0.12, scores
    assert scores["adapted"] > scores["random twin"] + 0.05, scores


def test_a_missing_shipped_base_is_an_error_that_says_how_to_get_it(tmp_path, monkeypatch):
    import msa_hf.base_model.shipped
    from msa_hf.training.base_loading import BaseLoadError, resolve_base

    assert resolve_base("tiny") == TINY_BASE
    monkeypatch.setattr(msa_hf.base_model.shipped, "TINY_BASE", str(tmp_path / "gone"))
    with pytest.raises(BaseLoadError, match=r"missing from this installation.*reinstall.*another base"):
        resolve_base("tiny")
